#!/usr/bin/python3
"""The training pipeline end to end on a handful of documents, in under two
minutes: raw mails -> prepare_data.py -> pretrain.py (and its resumption)
-> train.py -> export_model.py -> `winnow classify` -> evaluate.py.

Run by ctest as:
    /usr/bin/python3 tests/test_train_tiny.py --winnow build/winnow --workdir DIR

The mails are written by this test (no network): SpamAssassin's folder
layout, with MIME the parser must undo (multipart/alternative, base64,
quoted-printable, HTML with entities, an encoded Subject) and one
duplicate body. The model is 2 layers x 32 with pruning and the combining
module on, so the whole method is trained and exported. What is checked:
the parsing and de-duplication, disjoint splits, the batched pruning rule
against winnow_ref.prune, that MLM pretraining resumes where it stopped,
that fine-tuning lowers the loss on the training documents, and that the C
engine gives the PyTorch reference's labels on every document.
"""

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import quopri
import random
import shutil
import statistics
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)
PY = "/usr/bin/python3"
ARGS = None

HAM_WORDS = ("meeting schedule project review code patch build release kernel "
             "compiler thanks regards agenda minutes team report bug fix branch "
             "merge test server config debian package").split()
SPAM_WORDS = ("free money winner prize offer click cash credit viagra cheap "
              "unsubscribe guaranteed bonus casino loan discount urgent claim "
              "million dollars lottery deal limited act now").split()

# The encoder every pretraining of this test makes: 2 layers x 32.
TINY_PRETRAINING = ["--layers", "2", "--hidden", "32", "--heads", "2", "--intermediate", "64",
                    "--max-position", "64", "--seq-len", "32", "--batch-size", "8",
                    "--val-windows", "16", "--eval-every", "0", "--threads", "2"]


def mail(subject, body, kind="plain", msg_id=0):
    """One raw RFC 822 message."""
    head = (f"From: someone{msg_id}@example.org\nTo: you@example.org\n"
            f"Message-Id: <{msg_id}@example.org>\nSubject: {subject}\nMIME-Version: 1.0\n")
    if kind == "plain":
        return head + "Content-Type: text/plain; charset=us-ascii\n\n" + body + "\n"
    if kind == "base64":
        enc = base64.encodebytes(body.encode("utf-8")).decode()
        return (head + "Content-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: base64\n\n" + enc)
    if kind == "alternative":
        html = ("<html><head><style>p {color: red}</style></head><body><p>"
                + body.replace(" ", " &amp; ", 1) + "</p><br>&copy; 2002</body></html>")
        qp = quopri.encodestring(html.encode()).decode()
        return (head + 'Content-Type: multipart/alternative; boundary="XX"\n\n'
                "--XX\nContent-Type: text/plain; charset=us-ascii\n\n\n"
                "--XX\nContent-Type: text/html; charset=iso-8859-1\n"
                "Content-Transfer-Encoding: quoted-printable\n\n" + qp + "\n--XX--\n")
    raise ValueError(kind)


def write_fake_spamassassin(root):
    """SpamAssassin's layout: data/<group>/<id>.txt. Returns expectations."""
    rng = random.Random(7)
    groups = {"easy-ham-1": ("ham", 9), "easy-ham-2": ("ham", 3),
              "hard-ham-1": ("ham", 4), "spam-1": ("spam", 9), "spam-2": ("spam", 3)}
    kinds = ["plain", "base64", "alternative"]
    first_body = None
    n = 0
    for group, (kind_of, count) in groups.items():
        d = os.path.join(root, "data", group)
        os.makedirs(d, exist_ok=True)
        words = HAM_WORDS if kind_of == "ham" else SPAM_WORDS
        for k in range(count):
            n += 1
            body = " ".join(rng.choice(words) for _ in range(rng.randint(40, 160)))
            body = "\n".join(body[i:i + 70] for i in range(0, len(body), 70))
            subject = " ".join(rng.choice(words) for _ in range(4))
            if group == "spam-1" and k == 0:
                subject = "=?utf-8?b?" + base64.b64encode("Gratuit argent €".encode()).decode() + "?="
            raw = mail(subject, body, kinds[k % 3], n)
            if first_body is None:
                first_body = raw
            with open(os.path.join(d, f"{k + 1:05d}.{n:032x}.txt"), "w") as f:
                f.write(raw)
    # A duplicate body under other headers: must be dropped.
    dup = first_body.replace("Message-Id: <1@", "Message-Id: <999@")
    with open(os.path.join(root, "data", "easy-ham-2", "00099.dup.txt"), "w") as f:
        f.write(dup)
    return {"raw": n + 1, "documents": n}


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_jsonl(path):
    return [json.loads(x) for x in read_text(path).splitlines() if x.strip()]


def run(cmd, timeout=300, env=None):
    env = dict(os.environ, WINNOW_NO_PROGRESS="1", **(env or {}))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n"
                             f"{p.stderr.decode(errors='replace')[-3000:]}")
    return p.stdout.decode(), p.stderr.decode(errors="replace")


class TrainTiny(unittest.TestCase):
    """One pipeline, checked stage by stage (the tests run in name order
    and each stage needs the previous one)."""

    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        w = cls.w = os.path.abspath(ARGS.workdir)
        shutil.rmtree(w, ignore_errors=True)
        os.makedirs(w)
        cls.pkg = os.path.join(w, "fake-spamassassin")
        cls.expect = write_fake_spamassassin(cls.pkg)
        cls.data = os.path.join(w, "data")
        cls.splits = os.path.join(w, "splits")
        cls.runs = os.path.join(w, "runs")
        cls.archive = os.path.join(w, "archive")
        cls.common = ["--splits-dir", cls.splits, "--data-root", cls.data]

    def test_0_prune_batch_is_the_reference_rule(self):
        import torch
        from winnow_ref import prune
        from winnow_train.model import prune_batch
        rng = random.Random(3)
        for _ in range(60):
            b, n = 3, rng.randint(3, 40)
            kept = torch.zeros(b, n, dtype=torch.bool)
            scores = torch.full((b, n), float("nan"), dtype=torch.float64)
            last = []
            for i in range(b):
                length = rng.randint(2, n)
                last.append(length - 1)
                for j in [0, length - 1] + [j for j in range(1, length - 1) if rng.random() < .8]:
                    kept[i, j] = True
                    # Ties on purpose: equal scores leave later positions first.
                    scores[i, j] = rng.choice([.1, .2]) if rng.random() < .3 else rng.random()
            for p in (0.9, 0.6):
                for fuzzy, mode in ((False, "budget"), (True, "budget"), (True, "within")):
                    got = prune_batch(kept, scores, torch.tensor(last), p, fuzzy, mode)
                    for i in range(b):
                        pos = torch.nonzero(kept[i]).flatten().tolist()
                        s = {j: float(scores[i, j]) for j in pos}
                        want = set(pos) - set(prune.leaving_tokens(pos, s, 0, last[i], p, fuzzy, mode))
                        self.assertEqual(set(torch.nonzero(got[i]).flatten().tolist()), want)

    def test_0c_budget_rule_at_p09_is_ratio_pruning(self):
        """ours-PF-budget at p = 0.9 prunes as ours-P (so one training
        serves both, finetune.same_training_as); at p = 0.6 it does not."""
        import torch
        from winnow_ref import prune
        from winnow_train import finetune, tasks
        from winnow_train.model import prune_batch
        self.assertEqual(prune.budget_rule_binds_at(0.9, 512), 0)
        self.assertGreater(prune.budget_rule_binds_at(0.6, 512), 0)
        self.assertEqual(finetune.same_training_as(tasks.VARIANTS["ours-PF-budget"], 512), "ours-P")
        for v in ("ours-PF-within", "ours-PF-budget-p0.6", "ours-PFC-P2", "ours-P", "bert"):
            self.assertEqual(finetune.same_training_as(tasks.VARIANTS[v], 512), "", v)
        rng = random.Random(5)
        differs = 0
        for _ in range(150):
            b, n = 4, rng.choice([rng.randint(3, 24), rng.randint(24, 300)])
            kept = torch.zeros(b, n, dtype=torch.bool)
            scores = torch.full((b, n), float("nan"), dtype=torch.float64)
            last = []
            for i in range(b):
                length = rng.randint(2, n)
                last.append(length - 1)
                kept[i, :length] = True
                for j in range(length):  # ties and far-apart magnitudes on purpose
                    scores[i, j] = rng.choice([.1, .2, 1e-9, rng.random() ** 8])
            last = torch.tensor(last)
            self.assertTrue(torch.equal(prune_batch(kept, scores, last, 0.9, False, "budget"),
                                        prune_batch(kept, scores, last, 0.9, True, "budget")))
            differs += not torch.equal(prune_batch(kept, scores, last, 0.6, False, "budget"),
                                       prune_batch(kept, scores, last, 0.6, True, "budget"))
        self.assertGreater(differs, 0)

    def test_0a_training_windows(self):
        """Windows of a long document: consecutive, a short tail dropped
        (but never the first window), at most max_windows of them."""
        import numpy as np
        from winnow_train import batching
        ids = np.arange(25)
        cuts = lambda ws: [(int(w[0]), len(w)) for w in ws]
        self.assertEqual(cuts(batching.split_windows(ids, 10)), [(0, 10), (10, 10), (20, 5)])
        self.assertEqual(cuts(batching.split_windows(ids, 10, min_len=6)), [(0, 10), (10, 10)])
        self.assertEqual(cuts(batching.split_windows(ids, 10, max_windows=2)), [(0, 10), (10, 10)])
        self.assertEqual(cuts(batching.split_windows(ids, 10, max_windows=9)),
                         [(0, 10), (10, 10), (20, 5)])
        self.assertEqual(cuts(batching.split_windows(ids, 10, "first")), [(0, 10)])
        self.assertEqual(cuts(batching.split_windows(ids[:3], 10, min_len=6)), [(0, 3)])
        from winnow_train import tasks
        self.assertEqual((tasks.TASKS["spam2"].train_windows,
                          tasks.TASKS["spam2"].max_train_windows), ("all", 4))

    def test_0aa_schedule_follows_steps(self):
        """The learning-rate progress follows the steps, not the clock:
        a slow step (a busy neighbour) must not move it, or one seed gives
        two runs. The time budget only shortens the plan, once the speed
        measured over the first steps says the plan will not fit."""
        from winnow_train.runstate import Budget
        b = Budget(100, 10)                 # 100 steps, 600 s
        b.elapsed = 30.0                    # a slow first step
        self.assertEqual(b.progress(1), 0.01)
        b.replan(1)                         # too early to judge the speed
        self.assertEqual(b.planned_steps, 100)
        b.elapsed = 20 * 5.0                # 20 steps at 5 s: 120 fit in 600 s
        b.replan(20)
        self.assertEqual((b.planned_steps, b.progress(50)), (100, 0.5))
        b.elapsed = 20 * 10.0               # 20 steps at 10 s: 60 fit
        b.replan(20)
        self.assertEqual(b.planned_steps, 60)
        self.assertEqual(b.progress(30), 0.5)
        b.elapsed = 20 * 2.0                # faster again: the plan stays short
        b.replan(20)
        self.assertEqual(b.planned_steps, 60)
        self.assertFalse(b.done(59))
        self.assertTrue(b.done(60))
        resumed = Budget(100, 10)           # resumed: the shortened plan holds
        resumed.restore(b.state())
        self.assertEqual((resumed.planned_steps, resumed.elapsed), (60, 40.0))
        longer = Budget(200, 10)            # resumed with more steps: a new plan
        longer.restore(b.state())
        self.assertEqual(longer.planned_steps, 200)
        b.elapsed = 600.0                   # the budget is spent: stop
        self.assertTrue(b.done(40))
        t = Budget(None, 10)                # no step count: the clock
        t.elapsed = 150.0
        self.assertEqual(t.progress(7), 0.25)
        with self.assertRaises(ValueError):
            Budget(None, None)

    def test_0ab_budget_counts_compute_not_waiting(self):
        """The budget's clock is the run's compute time: a run stopped
        (SIGSTOP for a benchmark) or kept waiting does not spend it, so the
        plan does not depend on what else the machine did."""
        import time
        from winnow_train.runstate import Budget, compute_clock
        clock = compute_clock(2)
        b = Budget(100, 10, clock=clock)
        b.start()
        time.sleep(0.5)                     # waiting, as a stopped run does
        b.tick()
        self.assertLess(b.elapsed, 0.1)
        t0, end = clock(), time.process_time() + 0.4
        while time.process_time() < end:    # computing on one thread
            pass
        self.assertAlmostEqual(clock() - t0, 0.2, delta=0.05)  # over 2 threads
        fake = iter([0.0, 7.0])
        b = Budget(100, 10, clock=lambda: next(fake))
        b.start()
        b.tick()
        self.assertEqual(b.elapsed, 7.0)

    def test_0ac_shared_weights_note_agrees_in_number(self):
        """The results page's line for a variant trained as another's
        twin names its seeds with a verb that agrees: one seed carries,
        several carry."""
        from winnow_train.evaluation import shared_weights_note
        one = shared_weights_note("ours-PF-budget", [(2, "ours-P")])
        two = shared_weights_note("ours-PF-budget", [(1, "ours-P"), (2, "ours-P")])
        self.assertTrue(one.startswith("ours-PF-budget: seed 2 carries ours-P's weights"))
        self.assertTrue(two.startswith("ours-PF-budget: seeds 1, 2 carry ours-P's weights"))

    def test_0b_trainable_model_is_the_reference(self):
        """TrainableWinnow drops pruned tokens (gathers the kept rows) where
        the reference masks them: the logits must be the reference's."""
        import torch
        from winnow_ref.config import WinnowConfig
        from winnow_ref.model import WinnowForSequenceClassification
        from winnow_train.model import TrainableWinnow, init_bert_weights
        cases = [dict(keep_ratio=0.9, fuzzy=False), dict(keep_ratio=0.6),
                 dict(keep_ratio=0.6, fuzzy_mode="within"),
                 dict(keep_ratio=0.5, pooling="mean"),
                 dict(keep_ratio=0.6, combine_layer=2), dict(keep_ratio=1.0, combine_layer=1),
                 dict()]
        gen = torch.Generator().manual_seed(5)
        for over in cases:
            cfg = WinnowConfig(vocab_size=200, hidden_size=32, num_hidden_layers=3,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=64, labels=["a", "b", "c"],
                               **over).normalised().validate()
            torch.manual_seed(1)
            ref = WinnowForSequenceClassification(cfg)
            init_bert_weights(ref)
            ref.eval()
            fast = TrainableWinnow(cfg)
            fast.load_state_dict(ref.state_dict())
            fast.eval()
            lengths = [40, 7, 2, 33]
            ids = torch.randint(5, 200, (len(lengths), max(lengths)), generator=gen)
            mask = torch.zeros_like(ids)
            for i, t in enumerate(lengths):
                mask[i, :t] = 1
                ids[i, t:] = 0
            with torch.no_grad():
                want = ref(ids, mask)
                got = fast(ids, mask)
            self.assertTrue(torch.allclose(got, want, atol=2e-5, rtol=0),
                            f"{over}: max |diff| {float((got - want).abs().max()):.2e}")

    def test_1_prepare(self):
        out, _ = run([PY, os.path.join(SCRIPTS, "prepare_data.py"), "--corpora", "spamassassin",
                      "--spamassassin-dir", self.pkg, "--out", self.data,
                      "--splits-dir", self.splits, "--winnow", ARGS.winnow])
        report = json.loads(out)["spamassassin"]
        self.assertEqual(report["raw_messages"], self.expect["raw"])
        self.assertEqual(report["dropped"], {"duplicate body": 1})
        self.assertEqual(report["documents"], self.expect["documents"])
        docs = read_jsonl(os.path.join(self.data, "spamassassin", "docs.jsonl"))
        texts = "\n".join(d["text"] for d in docs)
        self.assertIn("Gratuit argent €", texts)       # encoded Subject decoded
        self.assertNotIn("<p>", texts)                  # HTML tags stripped
        self.assertNotIn("&amp;", texts)                # entities decoded
        self.assertIn(" & ", texts)
        self.assertIn("© 2002", texts)
        self.assertNotIn("color: red", texts)           # <style> skipped
        for d in docs:                                  # base64 decoded: real words
            self.assertRegex(d["text"].split("\n\n", 1)[1][:20], r"^[a-z]+ ")
        ids = {}
        for split in ("train", "validation", "test"):
            rows = [x.split("\t")[0] for x in
                    read_text(os.path.join(self.splits, "spamassassin", f"{split}.txt")).split("\n") if x]
            self.assertTrue(rows, split)
            ids[split] = set(rows)
        self.assertFalse(ids["train"] & ids["test"])
        self.assertFalse(ids["validation"] & ids["test"])
        self.assertFalse(ids["train"] & ids["validation"])
        self.assertEqual(sum(map(len, ids.values())), self.expect["documents"])
        # Prepared again: the committed manifests are checked, not redrawn.
        _, err = run([PY, os.path.join(SCRIPTS, "prepare_data.py"), "--corpora", "spamassassin",
                      "--spamassassin-dir", self.pkg, "--out", self.data,
                      "--splits-dir", self.splits, "--winnow", ARGS.winnow])
        self.assertNotIn("wrote split manifests", err)

    def test_1a_bow_baseline(self):
        # The fake mails' words tell ham from spam outright: the linear
        # floor of the table must get every test mail right, and count
        # exactly the test split's documents.
        out, _ = run([PY, os.path.join(SCRIPTS, "bow_baseline.py"), "--task", "spam2"]
                     + self.common)
        row = [x for x in out.splitlines() if x.startswith("| spam2 |")]
        self.assertEqual(len(row), 1, out)
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        n_test = len([x for x in read_text(os.path.join(
            self.splits, "spamassassin", "test.txt")).split("\n") if x])
        self.assertEqual(int(cells[5]), n_test)
        self.assertEqual(float(cells[3]), 100.0, out)

    def test_2_pretrain_resumes(self):
        out = os.path.join(self.runs, "pretrain")
        shape = TINY_PRETRAINING
        run([PY, os.path.join(SCRIPTS, "pretrain.py"), "--out", out, "--max-steps", "4"]
            + shape + self.common)
        first = read_json(os.path.join(out, "summary.json"))
        self.assertEqual(first["steps"], 4)
        _, err = run([PY, os.path.join(SCRIPTS, "pretrain.py"), "--out", out, "--max-steps", "8"]
                     + shape + self.common)
        self.assertIn("resuming at step 4", err)
        second = read_json(os.path.join(out, "summary.json"))
        self.assertEqual(second["steps"], 8)
        self.assertTrue(math.isfinite(second["validation_mlm_loss"]))
        self.assertTrue(os.path.isfile(os.path.join(out, "encoder", "pytorch_model.bin")))
        self.assertTrue(os.path.getsize(os.path.join(out, "loss.png")) > 1000)

    def test_2a_pretraining_is_reproducible(self):
        """Two pretrainings of one seed and step count give the same bytes:
        the build pretrains a step count so that a lost encoder can be
        made again (docs/training.md)."""
        shape = TINY_PRETRAINING + ["--max-steps", "5", "--max-minutes", "30"]
        digests = []
        for k in range(2):
            out = os.path.join(self.w, f"pretrain-again-{k}")
            run([PY, os.path.join(SCRIPTS, "pretrain.py"), "--out", out] + shape + self.common)
            with open(os.path.join(out, "encoder", "pytorch_model.bin"), "rb") as f:
                digests.append(hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(digests[0], digests[1])

    def test_3_finetune_lowers_loss(self):
        import torch
        import torch.nn.functional as F
        from winnow_ref import checkpoint
        from winnow_train import batching, splits, tasks
        from winnow_train.model import classifier_from_encoder
        from winnow_train.tokens import TokenStore
        run([PY, os.path.join(SCRIPTS, "train.py"), "--task", "spam2", "--variant", "ours-PFC-P3",
             "--seed", "1", "--runs", self.runs, "--epochs", "12", "--batch-size", "4",
             "--lr", "2e-3", "--warmup", "0.05", "--threads", "2"] + self.common)
        rdir = os.path.join(self.runs, "spam2", "ours-PFC-P3", "seed1")
        done = read_json(os.path.join(rdir, "done.json"))
        self.assertEqual(done["config"]["winnow_combine_layer"], 1)   # P = 3 of 6 -> 1 of 2
        self.assertEqual(done["config"]["winnow_keep_ratio"], 0.9)
        self.assertTrue(os.path.getsize(os.path.join(rdir, "loss.png")) > 1000)

        # The loss on the training documents, before and after, in eval mode.
        ckpt = checkpoint.load_checkpoint(os.path.join(rdir, "best"))
        trained = checkpoint.build_model(ckpt.config, ckpt.state)
        enc = checkpoint.load_state(os.path.join(self.runs, "pretrain", "encoder", "pytorch_model.bin"))
        initial = classifier_from_encoder(ckpt.config, enc, 1).eval()
        store = TokenStore.load(os.path.join(self.data, "spamassassin", "tokens.npz"))
        rows = splits.read_manifest(self.splits, "spamassassin", "train")
        task = tasks.TASKS["spam2"]
        wins = [store.get(i)[:ckpt.config.window_len - 2] for i, _ in rows]
        y = torch.tensor([task.labels.index(task.label_of(lab)) for _, lab in rows])
        ids, mask = batching.pad_windows(wins)
        with torch.no_grad():
            before = float(F.cross_entropy(initial(ids, mask), y))
            after = float(F.cross_entropy(trained(ids, mask), y))
        self.assertLess(after, 0.5 * before, f"loss {before:.3f} -> {after:.3f}")
        self.assertLess(after, 0.3)
        # Resuming a finished run does nothing.
        _, err = run([PY, os.path.join(SCRIPTS, "train.py"), "--task", "spam2", "--variant",
                      "ours-PFC-P3", "--seed", "1", "--runs", self.runs, "--epochs", "12",
                      "--lr", "2e-3"] + self.common)
        self.assertIn("is finished", err)
        # The task's own recipe (3 epochs at 1e-4) is another run: refused,
        # where it used to be skipped as finished.
        with self.assertRaises(AssertionError) as refused:
            run([PY, os.path.join(SCRIPTS, "train.py"), "--task", "spam2", "--variant",
                 "ours-PFC-P3", "--seed", "1", "--runs", self.runs] + self.common)
        self.assertIn("was trained with epochs 12, lr 0.002 (not 3, 0.0001)",
                      str(refused.exception))
        # ... but from another encoder it is another run: refused, not
        # passed off as done (the archive names a run by its encoder).
        other = os.path.join(self.w, "other-encoder")
        shutil.copytree(os.path.join(self.runs, "pretrain", "encoder"), other)
        with open(os.path.join(other, "pytorch_model.bin"), "ab") as f:
            f.write(b"\0")
        with self.assertRaises(AssertionError) as refused:
            run([PY, os.path.join(SCRIPTS, "train.py"), "--task", "spam2", "--variant",
                 "ours-PFC-P3", "--seed", "1", "--runs", self.runs, "--encoder", other]
                + self.common)
        self.assertIn("was trained from encoder", str(refused.exception))
        with open(os.path.join(self.runs, "pretrain", "encoder", "pytorch_model.bin"), "rb") as f:
            self.assertEqual(done["encoder_sha256"], hashlib.sha256(f.read()).hexdigest())

    def test_3a_shared_training(self):
        """ours-PF-budget (p = 0.9) takes ours-P's finished weights under
        its own configuration instead of training them again; not where
        ours-P's run was another training (cut short by its time budget)."""
        from winnow_ref import checkpoint
        import train as train_script
        from winnow_train import finetune
        common = ["--seed", "1", "--runs", self.runs, "--epochs", "2", "--batch-size", "4",
                  "--lr", "2e-3", "--threads", "2"] + self.common
        run([PY, os.path.join(SCRIPTS, "train.py"), "--task", "spam2", "--variant", "ours-P"]
            + common)
        _, err = run([PY, os.path.join(SCRIPTS, "train.py"), "--task", "spam2", "--variant",
                      "ours-PF-budget"] + common)
        self.assertIn("the weights of", err)
        base = os.path.join(self.runs, "spam2")
        plain = checkpoint.load_checkpoint(os.path.join(base, "ours-P", "seed1", "best"))
        shared = checkpoint.load_checkpoint(os.path.join(base, "ours-PF-budget", "seed1", "best"))
        self.assertEqual(sorted(plain.state), sorted(shared.state))
        for k in plain.state:
            self.assertTrue(plain.state[k].equal(shared.state[k]), k)
        self.assertTrue(shared.config.fuzzy)
        self.assertFalse(plain.config.fuzzy)
        done = read_json(os.path.join(base, "ours-PF-budget", "seed1", "done.json"))
        self.assertEqual((done["variant"], done["weights_of"]), ("ours-PF-budget", "ours-P"))
        self.assertTrue(done["config"]["winnow_fuzzy"])
        # A twin cut short by its time budget is not this run's training.
        fake = os.path.join(self.w, "share", "spam2")
        shutil.copytree(os.path.join(base, "ours-P"), os.path.join(fake, "ours-P"))
        twin_done = os.path.join(fake, "ours-P", "seed1", "done.json")
        d = read_json(twin_done)
        d["steps"] = d["max_steps"] - 1
        with open(twin_done, "w") as f:
            json.dump(d, f)
        args = train_script.parse_args(["--task", "spam2", "--variant", "ours-PF-budget"] + common)
        out = os.path.join(fake, "ours-PF-budget", "seed1")
        os.makedirs(out)
        cfg = checkpoint.load_checkpoint(os.path.join(base, "ours-PF-budget", "seed1", "best")).config
        self.assertFalse(finetune.share_weights(args, out, "ours-P", cfg, plain.vocab,
                                                done["encoder_sha256"],
                                                {"epochs": 2, "lr": 2e-3}))
        self.assertFalse(os.path.exists(os.path.join(out, "best")))

    def test_4_engine_agrees_with_pytorch(self):
        import torch
        from winnow_ref import checkpoint, document
        from winnow_train import engine
        rdir = os.path.join(self.runs, "spam2", "ours-PFC-P3", "seed1")
        wnn = os.path.join(self.w, "tiny-trained.wnn")
        run([PY, os.path.join(SCRIPTS, "export_model.py"), "--checkpoint",
             os.path.join(rdir, "best"), "--out", wnn, "--name", "tiny-trained"])
        docs = {}
        labels = {}
        for d in read_jsonl(os.path.join(self.data, "spamassassin", "docs.jsonl")):
            docs[d["id"]] = d["text"]
            labels[d["id"]] = d["label"]
        files = engine.write_documents(os.path.join(self.w, "files"), docs)
        res = engine.classify(ARGS.winnow, wnn, sorted(files), batch=4)
        self.assertEqual(res.errors, [])
        self.assertEqual(len(res.records), len(docs))
        self.assertTrue(res.trace and res.trace[1].combining, "layer 1 combines")
        self.assertLess(res.trace[1].tokens_in, res.trace[0].tokens_in, "layer 0 pruned")
        ckpt = checkpoint.load_checkpoint(os.path.join(rdir, "best"))
        model = checkpoint.build_model(ckpt.config, ckpt.state)
        vocab = {t: i for i, t in enumerate(ckpt.vocab)}
        from winnow_train.tokens import TokenStore
        store = TokenStore.load(os.path.join(self.data, "spamassassin", "tokens.npz"))
        correct = 0
        for path, doc_id in files.items():
            rec = res.records[path]
            ref = document.classify_document(model, store.get(doc_id).tolist(),
                                             vocab["[CLS]"], vocab["[SEP]"])
            self.assertEqual(rec["label"], ckpt.config.labels[ref.label], doc_id)
            self.assertEqual(rec["chunks"], ref.chunks, doc_id)
            for k, name in enumerate(ckpt.config.labels):
                self.assertAlmostEqual(rec["scores"][name], ref.probs[k], delta=1e-4)
            correct += rec["label"] == ("spam" if labels[doc_id] == "spam" else "ham")
        # The two vocabularies are disjoint: a trained model separates them.
        self.assertGreaterEqual(correct, 0.9 * len(docs))
        self.assertIsNotNone(torch)
        # The torch check's explanation of a document apart: the engine's
        # tokens entering each layer line up with the reference's |K_l|, so
        # that a flipped pruning decision shows as the first count apart.
        from winnow_train import evaluation
        path, doc_id = sorted(files.items())[0]
        ref = document.classify_document(model, store.get(doc_id).tolist(),
                                         vocab["[CLS]"], vocab["[SEP]"])
        self.assertEqual(len(ref.kept), 2)  # K_0, K_1: layer 1 combines
        self.assertLess(ref.kept[1], ref.kept[0])
        same = evaluation.explain_apart(doc_id, 0.0, ref.kept, ARGS.winnow, wnn, path)
        self.assertEqual(same["engine_kept"], ref.kept)
        self.assertIsNone(same["first_layer_apart"])
        flipped = evaluation.explain_apart(doc_id, 0.0, [ref.kept[0], ref.kept[1] + 1],
                                           ARGS.winnow, wnn, path)
        self.assertEqual(flipped["first_layer_apart"], 1)
        # Pruning only: K_0..K_L, the last from what the last layer keeps.
        pdir = os.path.join(self.runs, "spam2", "ours-P", "seed1")
        pruned = checkpoint.load_checkpoint(os.path.join(pdir, "best"))
        ref = document.classify_document(checkpoint.build_model(pruned.config, pruned.state),
                                         store.get(doc_id).tolist(), vocab["[CLS]"],
                                         vocab["[SEP]"])
        self.assertEqual(len(ref.kept), pruned.config.num_hidden_layers + 1)
        same = evaluation.explain_apart(doc_id, 0.0, ref.kept, ARGS.winnow,
                                        evaluation.export_run(pdir, "tiny-p", "1"), path)
        self.assertEqual(same["engine_kept"], ref.kept)

    def test_5_evaluate_writes_the_table(self):
        md = os.path.join(self.w, "results", "results.md")
        run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2", "--variant",
             "ours-PFC-P3,bert", "--seed", "1", "--runs", self.runs, "--winnow", ARGS.winnow,
             "--workdir", os.path.join(self.w, "eval"), "--markdown", md,
             "--torch-check", "5", "--archive", self.archive] + self.common)
        text = read_text(md)
        self.assertIn("| ours-PFC-P3 | 1 |", text)
        self.assertIn("5/5 labels", text)
        self.assertIn("Pretrained encoder: 2 layers x ", text)  # the runs' own, found by sha
        # Speeds say when and on which engine sources they were measured.
        self.assertRegex(text, r"Speeds measured \d{4}-\d\d-\d\d \d\d:\d\d to "
                               r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, engine at "
                               r"([0-9a-f]{7,}(\+changes)?|unknown), on ")
        self.assertTrue(os.path.isfile(os.path.join(self.w, "results", "results-tokens.png")))
        res = read_json(os.path.join(self.runs, "results.json"))
        self.assertEqual([r["variant"] for r in res["runs"]], ["ours-PFC-P3"])  # bert: not trained
        # The run's numbers are archived, without this machine's paths.
        archived = os.path.join(self.archive, "spam2", "ours-PFC-P3", "seed1.json")
        entry = read_json(archived)
        self.assertEqual(entry["accuracy"], res["runs"][0]["accuracy"])
        self.assertNotIn(self.w, read_text(archived))
        self.assertIn("encoder_sha256", entry["training"])
        # ... with its loss curve, which outlives the cache's loss.png.
        history = read_json(os.path.join(self.runs, "spam2", "ours-PFC-P3", "seed1",
                                         "history.json"))
        curve = entry["training"]["curve"]
        self.assertEqual(curve["val_step"], history["val_step"])
        self.assertEqual(len(curve["train_loss"]), len(history["val_step"]))
        self.assertAlmostEqual(curve["val_loss"][-1], history["val_loss"][-1], places=3)
        png = os.path.join(self.w, "curve.png")
        run([PY, os.path.join(SCRIPTS, "plot_run.py"), "--task", "spam2", "--variant",
             "ours-PFC-P3", "--seed", "1", "--archive", self.archive, "--out", png])
        self.assertGreater(os.path.getsize(png), 1000)

    def test_5a_archived_runs_join_the_table(self):
        """A run evaluated in an earlier session (only its archived numbers
        left) counts in the accuracy columns, not in the speed columns."""
        md = os.path.join(self.w, "results", "archive.md")
        entry = read_json(os.path.join(self.archive, "spam2", "ours-PFC-P3", "seed1.json"))
        entry.update(variant="bert", accuracy=0.5, macro_f1=0.25, micro_f1=0.5)
        entry.pop("speed", None)  # archived before speeds were
        entry["training"].update(steps=3, max_steps=6)  # its time budget ran out
        # Its PyTorch check found a document apart, explained by the counts.
        entry["torch_check"] = {"documents": 5, "same_label": 5, "max_prob_diff": 6e-4,
                                "apart": 1, "apart_documents": [{
                                    "document": "doc-x", "max_prob_diff": 6e-4,
                                    "engine_kept": [10, 7], "reference_kept": [10, 6],
                                    "first_layer_apart": 1}]}
        os.makedirs(os.path.join(self.archive, "spam2", "bert"), exist_ok=True)
        with open(os.path.join(self.archive, "spam2", "bert", "seed1.json"), "w") as f:
            json.dump(entry, f)
        for reuse in (["--reuse-archive"], []):
            run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2", "--variant",
                 "bert,ours-PFC-P3", "--seed", "1", "--runs", self.runs,
                 "--winnow", ARGS.winnow, "--workdir", os.path.join(self.w, "eval"),
                 "--markdown", md, "--torch-check", "0", "--speed-repeats", "1",
                 "--archive", self.archive] + reuse + self.common)
            rows = {line.split("|")[1].strip(): line for line in read_text(md).splitlines()
                    if line.startswith("| bert |") or line.startswith("| ours-PFC-P3 |")}
            self.assertIn("| 50.00 ± 0.00 |", rows["bert"])
            page = read_text(md)
            self.assertIn("bert: its time budget cut training short (seed 1: 3 of 6 steps)", page)
            self.assertNotIn("ours-PFC-P3: its time budget cut", page)
            self.assertEqual(rows["bert"].split("|")[6].strip(), "-")   # docs/s: not measured
            self.assertIn("5/5 labels, max Δp 6.0e-04; 1 apart by > 0.0001 (kept counts differ "
                          "entering layer 1)", rows["bert"])
            self.assertIn("bert: engine and PyTorch further apart than 0.0001 on 1 of 5 "
                          "documents; the kept sets' sizes |K_0| .. |K_P|, summed over the "
                          "windows: doc-x "
                          "(seed 1, Δp 6.0e-04): 10 / 7 in the engine, 10 / 6 in PyTorch.", page)
            self.assertNotEqual(rows["ours-PFC-P3"].split("|")[6].strip(), "-")  # measured here
            self.assertEqual(rows["ours-PFC-P3"].split("|")[7].strip(), "-")  # no bert to compare
            if reuse:  # taken as archived: the first evaluation's PyTorch check stays
                self.assertIn("5/5 labels", rows["ours-PFC-P3"])
        # A seed archived before the check explained its outliers (no "apart")
        # joins one that did: none apart when its largest difference is small.
        from winnow_train import evaluation
        older = json.loads(json.dumps(entry))
        older.update(seed=2, torch_check={"documents": 5, "same_label": 5,
                                          "max_prob_diff": 1e-6})
        row, = evaluation.aggregate([entry, older])
        self.assertEqual((row["torch_apart"], row["torch_apart_layers"]), (1, [1]))
        older["torch_check"]["max_prob_diff"] = 1e-3  # apart, but how many is unknown
        row, = evaluation.aggregate([entry, older])
        self.assertNotIn("torch_apart", row)

    def test_5b_shipped_section_keeps_the_page(self):
        md = os.path.join(self.w, "results", "results.md")
        with open(md, "a", encoding="utf-8") as f:
            f.write("\n## Reading the numbers\n\nHand-written.\n")
        model = os.path.join(self.runs, "spam2", "ours-PFC-P3", "seed1", "model.wnn")
        run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--shipped", model, "--shipped-variant",
             "ours-PFC-P3", "--seed", "1", "--runs", self.runs, "--winnow", ARGS.winnow,
             "--workdir", os.path.join(self.w, "eval"), "--markdown", md,
             "--archive", self.archive] + self.common)
        text = read_text(md)
        for part in ("| ours-PFC-P3 | 1 |", "Hand-written.", "## The shipped model",
                     "### Explanations", "same label as its f32 export on"):
            self.assertIn(part, text)
        # Each retained token is shown in bold inside its document's text.
        self.assertRegex(text, r"- `[^`]+` \(\d\.\d{3}\): .*\*\*.+\*\*")
        shipped = read_json(os.path.join(self.runs, "shipped.json"))
        self.assertEqual(shipped["same_label_as_f32"], shipped["documents"])
        # Run again: the blocks are replaced, not repeated.
        run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--shipped", model, "--shipped-variant",
             "ours-PFC-P3", "--seed", "1", "--runs", self.runs, "--winnow", ARGS.winnow,
             "--workdir", os.path.join(self.w, "eval"), "--markdown", md,
             "--archive", self.archive] + self.common)
        text = read_text(md)
        self.assertEqual(text.count("## The shipped model"), 1)
        self.assertEqual(text.count("Hand-written."), 1)

    def test_5c_pick_model_rule(self):
        sys.path.insert(0, SCRIPTS)
        import pick_model

        def row(v, acc, dps):
            return dict(task="spam2", variant=v, accuracy=acc, docs_per_second=dps)
        table = [row("bert", 0.975, 10.0), row("a", 0.972, 18.0), row("b", 0.970, 25.0),
                 row("c", 0.980, 30.0), row("d", 0.960, 40.0)]
        pick = lambda c: pick_model.choose(table, "spam2", "bert", c, 1.0, 2.0)  # noqa: E731
        self.assertEqual(pick(["a", "b"])[0], "b")       # a is too slow
        self.assertEqual(pick(["a", "b", "c"])[0], "c")  # the most accurate of those fast enough
        chosen, _, warning = pick(["a"])                  # none fast enough: within 1 point
        self.assertEqual((chosen, warning is not None), ("a", True))
        chosen, _, warning = pick(["d"])                  # none within 1 point either
        self.assertEqual((chosen, warning is not None), ("d", True))
        with self.assertRaises(ValueError):
            pick(["e"])

    @contextlib.contextmanager
    def archived_from_another_encoder(self):
        """spam2/bert/seed1 of the archive as if fine-tuned from another
        pretrained encoder (a lost cache, a new pretraining), for the
        duration of the block."""
        path = os.path.join(self.archive, "spam2", "bert", "seed1.json")
        kept = read_text(path)
        entry = json.loads(kept)
        entry["training"]["encoder_sha256"] = "ab" * 32
        try:
            with open(path, "w") as f:
                json.dump(entry, f)
            yield
        finally:
            with open(path, "w") as f:
                f.write(kept)

    def test_5d_runs_of_two_encoders_are_refused(self):
        """An archived run fine-tuned from another pretrained encoder
        cannot be averaged into the table."""
        with self.archived_from_another_encoder():
            with self.assertRaises(AssertionError) as refused:  # run(): a non-zero exit
                run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2", "--variant",
                     "bert,ours-PFC-P3", "--seed", "1", "--runs", self.runs,
                     "--winnow", ARGS.winnow, "--workdir", os.path.join(self.w, "eval"),
                     "--reuse-archive", "--markdown", os.path.join(self.w, "results", "mixed.md"),
                     "--torch-check", "0", "--speed-repeats", "1", "--archive", self.archive]
                    + self.common)
        err = str(refused.exception)
        self.assertIn("different pretrained encoders", err)
        self.assertIn("spam2/bert/seed1 (encoder abababababab)", err)
        self.assertIn("spam2/ours-PFC-P3/seed1", err)
        self.assertFalse(os.path.exists(os.path.join(self.w, "results", "mixed.md")))

    def test_5f_archive_of_another_encoder_is_left_alone(self):
        """A new machine's cache starts empty; a new pretraining that does
        not reproduce the archive's encoder must neither mix its runs into
        the archive nor let the table train for hours before saying so."""
        archived = os.path.join(self.archive, "spam2", "ours-PFC-P3", "seed1.json")
        before = read_text(archived)
        with self.archived_from_another_encoder():
            _, err = run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2",
                          "--variant", "ours-PFC-P3", "--seed", "1", "--runs", self.runs,
                          "--winnow", ARGS.winnow, "--workdir", os.path.join(self.w, "eval"),
                          "--markdown", "", "--torch-check", "0", "--speed-repeats", "0",
                          "--archive", self.archive] + self.common)
            self.assertIn("spam2/ours-PFC-P3/seed1 not archived: the archive", err)
            self.assertIn("holds runs of encoder abababababab (spam2/bert/seed1)", err)
            self.assertEqual(read_text(archived), before)
            with self.assertRaises(AssertionError) as refused:
                run(["bash", os.path.join(SCRIPTS, "run_table.sh"), "--seeds", "1",
                     "--tasks", "spam2", "--variants", "ours-C-P3",
                     "--encoder", os.path.join(self.runs, "pretrain", "encoder")],
                    env={"WINNOW_CACHE": self.w, "WINNOW_SPLITS": self.splits,
                         "WINNOW_ARCHIVE": self.archive})
            self.assertIn("run_table: the archive", str(refused.exception))
        # Refused before its first run: nothing was trained.
        self.assertFalse(os.path.exists(os.path.join(self.runs, "spam2", "ours-C-P3")))

    def test_5g_table_skips_what_its_archive_holds(self):
        """run_table.sh skips runs archived in WINNOW_ARCHIVE (it once
        looked in docs/results/runs whatever the archive was, and would
        have trained them again) and writes its page where --results says."""
        page = os.path.join(self.w, "results", "table.md")
        # A seed the repository's own archive has no run of.
        shutil.copy(os.path.join(self.archive, "spam2", "ours-PFC-P3", "seed1.json"),
                    os.path.join(self.archive, "spam2", "ours-PFC-P3", "seed7.json"))
        _, err = run(["bash", os.path.join(SCRIPTS, "run_table.sh"), "--seeds", "7",
                      "--tasks", "spam2", "--variants", "ours-PFC-P3", "--results", page,
                      "--encoder", os.path.join(self.runs, "pretrain", "encoder")],
                     env={"WINNOW_CACHE": self.w, "WINNOW_SPLITS": self.splits,
                          "WINNOW_ARCHIVE": self.archive})
        self.assertIn("spam2/ours-PFC-P3/seed7: archived, skipped", err)
        self.assertIn("| ours-PFC-P3 | 1 |", read_text(page))
        os.remove(os.path.join(self.archive, "spam2", "ours-PFC-P3", "seed7.json"))

    def test_5h_speed_ups_outlive_the_models(self):
        """A run's speed-up is measured against the task's speed reference
        (plain BERT from the runs' encoder, untrained head) and archived
        with the run, so that a page built after its model is gone (a
        new machine's empty cache) still has it."""
        encoder = os.path.join(self.runs, "pretrain", "encoder")
        run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2", "--variant",
             "ours-PFC-P3", "--seed", "1", "--runs", self.runs, "--winnow", ARGS.winnow,
             "--workdir", os.path.join(self.w, "eval"), "--markdown", "",
             "--torch-check", "0", "--speed-repeats", "2", "--encoder", encoder,
             "--archive", self.archive] + self.common)
        ref = os.path.join(self.runs, "spam2", "speed-reference")
        done = read_json(os.path.join(ref, "done.json"))
        self.assertEqual((done["steps"], done["config"]["winnow_keep_ratio"]), (0, 1.0))
        self.assertTrue(os.path.isfile(os.path.join(ref, "model.wnn")))
        speed = read_json(os.path.join(self.archive, "spam2", "ours-PFC-P3",
                                       "seed1.json"))["speed"]
        self.assertEqual(speed["against"], "speed reference")
        self.assertEqual(len(speed["seconds"]), 2)
        self.assertEqual(len(speed["against_seconds"]), 2)
        self.assertAlmostEqual(speed["speed_up"], statistics.median(speed["against_seconds"])
                               / statistics.median(speed["seconds"]))
        self.assertFalse(os.path.exists(os.path.join(self.archive, "spam2", "speed-reference")))
        # From the archive alone, in a cache without the run.
        md = os.path.join(self.w, "results", "speeds.md")
        run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2", "--variant",
             "ours-PFC-P3", "--seed", "1", "--runs", os.path.join(self.w, "empty-runs"),
             "--winnow", ARGS.winnow, "--workdir", os.path.join(self.w, "eval"),
             "--markdown", md, "--reuse-archive", "--speed-repeats", "0",
             "--archive", self.archive] + self.common)
        row = next(line for line in read_text(md).splitlines()
                   if line.startswith("| ours-PFC-P3 |"))
        self.assertEqual(row.split("|")[7].strip(), f"{speed['speed_up']:.2f}x")
        self.assertIn("speed-up over speed reference.", read_text(md))

    def test_5e_unfinished_run_is_left_out(self):
        """A run still training has a best/ checkpoint of its steps so far
        but no done.json: evaluate must leave it out, not evaluate and
        archive it (the table's page step once did, mid-run)."""
        import shutil
        done = os.path.join(self.runs, "spam2", "ours-PFC-P3", "seed1")
        busy = os.path.join(self.runs, "spam2", "ours-PFC-P2", "seed1")
        shutil.copytree(os.path.join(done, "best"), os.path.join(busy, "best"))
        try:
            out, err = run([PY, os.path.join(SCRIPTS, "evaluate.py"), "--task", "spam2",
                            "--variant", "ours-PFC-P3,ours-PFC-P2", "--seed", "1",
                            "--runs", self.runs, "--winnow", ARGS.winnow,
                            "--workdir", os.path.join(self.w, "eval"), "--markdown", "",
                            "--torch-check", "0", "--speed-repeats", "0",
                            "--archive", self.archive] + self.common)
        finally:
            shutil.rmtree(os.path.join(self.runs, "spam2", "ours-PFC-P2"))
        self.assertIn("spam2/ours-PFC-P2/seed1: not trained (or not finished), left out", err)
        self.assertFalse(os.path.exists(
            os.path.join(self.archive, "spam2", "ours-PFC-P2", "seed1.json")))

    def test_6_build_script_parses(self):
        out, _ = run(["bash", os.path.join(SCRIPTS, "build_default_model.sh"), "--help"])
        self.assertIn("--pretrain-minutes", out)
        self.assertIn("table", out)

    def test_6a_build_evaluate_keeps_the_page(self):
        """The default build's evaluate stage compares its three runs; it
        once wrote them as the page's whole table, replacing the table of
        every variant, task and seed the page carries."""
        page = os.path.join(self.w, "page.md")
        table = "# Results\n\nthe whole table\n"
        with open(page, "w") as f:
            f.write(table)
        run(["bash", os.path.join(SCRIPTS, "build_default_model.sh"), "--stages", "evaluate",
             "--winnow", ARGS.winnow, "--results", page],
            env={"WINNOW_CACHE": self.w, "WINNOW_SPLITS": self.splits,
                 "WINNOW_ARCHIVE": self.archive})
        self.assertEqual(read_text(page), table)
        self.assertIn("| ours-PFC-P3 | 1 |", read_text(os.path.join(self.runs, "build-results.md")))

    @classmethod
    def tearDownClass(cls):
        print(f"test_train_tiny: {time.monotonic() - cls.t0:.1f} s", file=sys.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--winnow", required=True, help="the winnow binary")
    ap.add_argument("--workdir", required=True, help="scratch directory (emptied first)")
    ARGS, rest = ap.parse_known_args()
    ARGS.winnow = os.path.abspath(ARGS.winnow)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
