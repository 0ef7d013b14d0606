#!/usr/bin/python3
"""End-to-end tests of the `winnow` command-line tool through its interface.

Run by ctest as:
    /usr/bin/python3 tests/test_cli.py --winnow build/winnow --workdir DIR

Builds a tiny random model with the project's own scripts, then checks what a
user sees: the output schema of `winnow classify`, windows over long
documents, and clear errors (never a crash) for a missing, truncated or
corrupt model, invalid UTF-8, an empty document and a 10 MB document.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
ARGS = None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def run(cmd, stdin=b"", check=None):
    """Runs cmd; returns (exit code, stdout, stderr) as bytes/str."""
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    if check is not None:
        assert p.returncode == check, (
            f"{' '.join(cmd)} exited {p.returncode}, expected {check}\n"
            f"stderr: {p.stderr.decode(errors='replace')}")
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def tiny_model(workdir):
    """A 2-layer, hidden-32 random model with the real vocabulary."""
    path = os.path.join(workdir, "tiny.wnn")
    if not os.path.exists(path):
        ckpt = os.path.join(workdir, "tiny")
        run([PY, os.path.join(ROOT, "scripts/make_random_checkpoint.py"),
             "--out", ckpt, "--layers", "2", "--hidden", "32", "--heads", "2",
             "--label-names", "ham,spam", "--max-position", "64", "--seed", "3"],
            check=0)
        run([PY, os.path.join(ROOT, "scripts/export_model.py"),
             "--checkpoint", ckpt, "--out", path, "--name", "tiny",
             "--model-version", "0.1"], check=0)
    return path


class Cli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(ARGS.workdir, exist_ok=True)
        cls.model = tiny_model(ARGS.workdir)
        cls.w = ARGS.winnow

    def path(self, name, data):
        p = os.path.join(ARGS.workdir, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def classify(self, *files, stdin=b"", check=0):
        rc, out, err = run([self.w, "classify", "--model", self.model, *files],
                           stdin=stdin, check=check)
        return [json.loads(line) for line in out.decode().splitlines()], err

    def test_classify_schema(self):
        doc = self.path("doc.txt", b"Win a FREE prize now!!! Click http://x.example/")
        (rec,), _ = self.classify(doc)
        self.assertEqual(set(rec), {"id", "label", "confidence", "scores",
                                    "retained", "chunks", "tokens", "model",
                                    "source"})
        self.assertEqual(rec["id"], doc)
        self.assertEqual(set(rec["scores"]), {"ham", "spam"})
        self.assertAlmostEqual(sum(rec["scores"].values()), 1.0, places=4)
        best = max(rec["scores"], key=rec["scores"].get)
        self.assertEqual(rec["label"], best)
        self.assertAlmostEqual(rec["confidence"], rec["scores"][best], places=5)
        self.assertEqual(rec["chunks"], 1)
        self.assertEqual(rec["model"], "tiny 0.1")
        # tokens = WordPiece tokens of the document, without [CLS]/[SEP]
        _, ids, _ = run([self.w, "tokenize", "--model", self.model],
                        stdin=read(doc), check=0)
        self.assertEqual(rec["tokens"], len(ids.split()) - 2)

    def test_default_model_is_winnow_model_env(self):
        env = dict(os.environ, WINNOW_MODEL=self.model)
        p = subprocess.run([self.w, "classify"], input=b"hello world", env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["model"], "tiny 0.1")
        env["WINNOW_MODEL"] = os.path.join(ARGS.workdir, "no-such.wnn")
        p = subprocess.run([self.w, "classify"], input=b"hello", env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stdout, b"")
        self.assertIn("no-such.wnn", p.stderr.decode())

    def test_shipped_model_is_the_default_and_knows_spam(self):
        """Without --model and $WINNOW_MODEL the tool uses the shipped
        model/weights/spam.wnn (docs/models.md): it must load, carry the
        model card's settings, and label the sample mails as a person
        would; each retained token's span must hold that token's text."""
        env = {k: v for k, v in os.environ.items() if k != "WINNOW_MODEL"}
        p = subprocess.run([self.w, "inspect"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        info = dict(l.split(": ", 1) for l in p.stdout.decode().splitlines() if ": " in l)
        self.assertEqual(info["model"], "winnow-spam 1")
        self.assertTrue(info["file"].endswith("model/weights/spam.wnn"), info["file"])
        self.assertEqual((info["layers"], info["combine_layer"], info["combine_tokens"],
                          info["keep_ratio"]), ("6", "2", "8", "0.9"))
        self.assertLess(os.path.getsize(os.path.join(ROOT, "model/weights/spam.wnn")),
                        20 * 1000 * 1000)
        samples = os.path.join(ROOT, "tests/fixtures/samples")
        files = sorted(os.path.join(samples, f) for f in os.listdir(samples))
        self.assertGreaterEqual(len(files), 4)
        p = subprocess.run([self.w, "classify", "--top-k", "3"] + files, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        for rec in map(json.loads, p.stdout.splitlines()):
            want = os.path.basename(rec["id"]).split("-")[0]
            self.assertEqual(rec["label"], want, rec)
            self.assertGreater(rec["confidence"], 0.9, rec)
            text = read(rec["id"]).decode().lower().encode()
            self.assertEqual(len(rec["retained"]), 3)
            for t in rec["retained"]:
                piece = text[t["start"]:t["end"]].decode()
                self.assertEqual(piece, t["token"].removeprefix("##"), (rec["id"], t))

    def test_trace_accounts_for_every_layer(self):
        """--trace on the shipped model (pruning in layers 0-1, combining at
        2, m = 8): one row per layer; each layer receives what the one before
        kept; the layers after the combining module run on m tokens per
        window."""
        samples = os.path.join(ROOT, "tests/fixtures/samples")
        files = sorted(os.path.join(samples, f) for f in os.listdir(samples))
        _, out, err = run([self.w, "classify", "--model",
                           os.path.join(ROOT, "model/weights/spam.wnn"), "--trace"] + files,
                          check=0)
        recs = [json.loads(x) for x in out.splitlines()]
        windows = sum(r["chunks"] for r in recs)
        rows = [l.split() for l in err.splitlines() if l.strip()[:1].isdigit()]
        self.assertEqual([int(r[0]) for r in rows], list(range(6)))
        tokens_in = [int(r[2]) for r in rows]
        kept = [int(r[3]) for r in rows]
        self.assertTrue(all(int(r[1]) == windows for r in rows), rows)
        # [CLS] and [SEP] of each window enter layer 0 with the text.
        self.assertEqual(tokens_in[0], sum(r["tokens"] for r in recs) + 2 * windows)
        for l in range(1, 6):
            self.assertEqual(tokens_in[l], kept[l - 1], rows)
        self.assertLess(kept[0], tokens_in[0])  # p = 0.9 prunes
        self.assertIn("(combining)", " ".join(rows[2]))
        for l in (3, 4, 5):
            self.assertEqual((tokens_in[l], kept[l]), (8 * windows, 8 * windows), rows[l])
            self.assertIn("(combined tokens)", " ".join(rows[l]))

    def test_stdin_is_one_document(self):
        (rec,), _ = self.classify(stdin=b"hello\nworld\n")
        self.assertEqual(rec["id"], "-")
        self.assertEqual(rec["tokens"], 2)

    def test_long_document_windows_are_mean_of_window_probs(self):
        # max_seq_len 64: 62 text tokens per window; 150 words -> 3 windows.
        words = " ".join(f"w{i % 7}" for i in range(150)).encode()
        doc = self.path("long.txt", words)
        (rec,), _ = self.classify(doc)
        _, ids, _ = run([self.w, "tokenize", "--model", self.model],
                        stdin=words, check=0)
        toks = ids.split()[1:-1]
        self.assertEqual(rec["tokens"], len(toks))
        n_windows = math.ceil(len(toks) / 62)
        self.assertEqual(rec["chunks"], n_windows)
        windows = [b" ".join([b"101", *toks[i:i + 62], b"102"])
                   for i in range(0, len(toks), 62)]
        _, logits, _ = run([self.w, "logits", "--model", self.model,
                            "--batch", "2"], stdin=b"\n".join(windows) + b"\n",
                           check=0)
        probs = []
        for line in logits.decode().splitlines():
            v = [float(x) for x in line.split()]
            m = max(v)
            e = [math.exp(x - m) for x in v]
            probs.append([x / sum(e) for x in e])
        mean = [sum(p[j] for p in probs) / len(probs) for j in range(2)]
        self.assertAlmostEqual(rec["scores"]["ham"], mean[0], places=5)
        self.assertAlmostEqual(rec["scores"]["spam"], mean[1], places=5)

    def test_missing_model(self):
        rc, _, err = run([self.w, "classify", "--model", "/nonexistent.wnn"],
                         stdin=b"x")
        self.assertEqual(rc, 2)
        self.assertIn("cannot load model '/nonexistent.wnn': No such file", err)

    def test_truncated_and_corrupt_model(self):
        data = read(self.model)
        for cut in (0, 7, 100, 256, 5000, len(data) // 2, len(data) - 1):
            bad = self.path("cut.wnn", data[:cut])
            rc, out, err = run([self.w, "classify", "--model", bad], stdin=b"x")
            self.assertEqual(rc, 2, err)
            self.assertEqual(out, b"")
            self.assertIn(f"cannot load model '{bad}': ", err)
        flipped = bytearray(data)
        flipped[len(data) - 100] ^= 1
        bad = self.path("flip.wnn", bytes(flipped))
        rc, _, err = run([self.w, "classify", "--model", bad], stdin=b"x")
        self.assertEqual(rc, 2)
        self.assertIn("body_crc32", err)

    def test_invalid_utf8_and_empty_documents_do_not_stop_the_rest(self):
        good = self.path("good.txt", b"an ordinary message")
        bad = self.path("bad.txt", b"caf\xc3 au lait")
        empty = self.path("empty.txt", b"")
        blank = self.path("blank.txt", b" \t\n\x0b")
        recs, err = self.classify(good, bad, empty, blank, good, check=1)
        self.assertEqual([r["id"] for r in recs], [good, good])
        self.assertIn(f"{bad}: invalid UTF-8 at byte 3", err)
        self.assertIn(f"{empty}: empty document", err)
        self.assertIn(f"{blank}: document has no tokens", err)

    def test_tokenize_invalid_utf8_line_keeps_alignment(self):
        rc, out, err = run([self.w, "tokenize", "--model", self.model],
                           stdin=b"hello\n\xff\xfe\nworld\n")
        self.assertEqual(rc, 1)
        self.assertEqual(out.decode().splitlines(), ["101 7592 102", "", "101 2088 102"])
        self.assertIn("line 2: invalid UTF-8 at byte 0", err)

    def test_ten_megabyte_document(self):
        line = b"Subject: quarterly report -- see the attached figures.\n"
        data = line * (10 * 1024 * 1024 // len(line) + 1)
        doc = self.path("big.txt", data)
        (rec,), _ = self.classify(doc)
        self.assertEqual(rec["tokens"], 11 * (len(data) // len(line)))
        self.assertEqual(rec["chunks"], math.ceil(rec["tokens"] / 62))
        self.assertAlmostEqual(sum(rec["scores"].values()), 1.0, places=4)

    def test_tokenize_conformance_corpus(self):
        corpus = os.path.join(ROOT, "tests/fixtures/tokenizer/corpus.txt")
        expected = os.path.join(ROOT, "tests/fixtures/tokenizer/corpus.ids")
        _, out, _ = run([self.w, "tokenize", "--vocab",
                         os.path.join(ROOT, "model/weights/vocab.txt")],
                        stdin=read(corpus), check=0)
        got = out.decode().splitlines()
        want = read(expected).decode().splitlines()
        self.assertEqual(len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g, w, f"corpus line {i + 1}")

    def test_inspect_reports_blas_and_kernels(self):
        _, out, _ = run([self.w, "inspect", "--model", self.model], check=0)
        text = out.decode()
        self.assertRegex(text, r"blas: OpenBLAS core \w+, \d+ threads")
        self.assertRegex(text, r"kernels: (avx512|portable)")
        self.assertIn("labels: 2 (ham, spam)", text)

    def test_unknown_command_and_bad_option(self):
        rc, _, err = run([self.w, "frobnicate"])
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'frobnicate'", err)
        rc, _, err = run([self.w, "classify", "--model", self.model,
                          "--batch", "0"])
        self.assertEqual(rc, 2)
        self.assertIn("'--batch' takes an integer", err)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--winnow", required=True, help="path of the built winnow binary")
    ap.add_argument("--workdir", required=True, help="scratch directory")
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
