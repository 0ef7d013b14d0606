#!/usr/bin/python3
"""Engine vs reference for every variant of the method (PAPER.md 8): the C
engine must keep the same tokens as the PyTorch reference on at least 99%
of the windows (every window with p = 1.0 and no combining module) and give
the same logits within 1e-4 (absolute) on every window whose kept sets
agree.

The variants, on one random checkpoint of 4 layers x 64 hidden, 2 heads,
256 feed-forward, 128 positions (so windows of at most 128 tokens), with
make_random_checkpoint's default weights (std 0.02), each exported by
scripts/export_model.py:

  plain      p = 1.0, no combining module (plain BERT): every window agrees
  P          plain ratio pruning (ours-P, --no-fuzzy), p = 0.7
  PF budget  fuzzy rule, reading A, p = 0.9 and p = 0.5; at 0.5 the fuzzy
             rule must be seen to bind (fewer tokens leave than the ratio
             budget), which the test checks in the reference's kept sets
  PF within  fuzzy rule, reading B, p = 0.9 and p = 0.5
  C          combining only: p = 1.0, combining module at layer 2, m = 4
  PFC        p = 0.7, fuzzy budget, m = 4, combining at layer 1 (early) and
             layer 3 (late)

plain, P and PF run with both heads, `cls` and `mean` pooling (PAPER.md 4).
The corpus is deterministic: sentences drawn from a fixed word list with a
seeded RNG, from 0 words ([CLS] [SEP] alone) and 1 word to a few windows
long, turned into ids by
`winnow tokenize` and cut into windows of max_seq_len - 2 text tokens, each
with its own [CLS]/[SEP] (PAPER.md 6), then shuffled so that every batch
mixes lengths.

For each variant the test runs
  * the reference, scripts/ref_logits.py --model F.wnn --batch 1
    --kept-out FILE (one window at a time: no padding in the truth), which
    gives the logits and the kept sets K_0..K_P of each window;
  * the engine, winnow logits --model F.wnn --batch N --retained, at
    batch 8 (ragged batches) and batch 1, which gives the logits and the
    retained positions, K_P less [CLS] and [SEP];
and compares per window. It prints one line per variant and batch: windows,
% of windows whose kept sets agree, max |logit diff| over those windows,
mean |K_P| (the reference's, [CLS]/[SEP] included) against the mean window
length. It fails, naming the windows, if a variant is below its agreement
threshold or a window whose sets agree has logits beyond the tolerance.

    /usr/bin/python3 tests/test_method_equivalence.py --winnow build/winnow --workdir DIR
    ... --bert-base     also a 12 x 768 PFC model (12 heads, 3072; p = 0.9,
                        m = 8, combining at layer 6, fuzzy budget) on 50
                        windows of up to 512 tokens: minutes, not for CI
                        (scripts/equivalence_base.sh)
    ... --only NAME     only the variants whose name contains NAME

Run by ctest as `equivalence_method`.
"""

import argparse
import json
import math
import os
import random
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_ref.prune import keep_count  # noqa: E402  (stdlib only, no torch)
from equivalence_common import run_side  # noqa: E402

PYTHON = "/usr/bin/python3"  # Debian's: the only one with torch
MIN_AGREE = 0.99             # PAPER.md 8: same kept sets on >= 99% of windows
BATCHES = [8, 1]             # engine batch sizes; 8 = ragged batches
REF_BATCH = 1                # the reference one window at a time
MAX_LISTED = 10              # windows listed per problem


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    labels: int
    max_position: int
    ref_threads: int  # torch threads of the reference


    @property
    def window_len(self) -> int:
        """max_seq_len: the export's default, min(512, positions)."""
        return min(512, self.max_position)


@dataclass(frozen=True)
class Variant:
    name: str
    keep_ratio: float
    fuzzy: bool = True
    fuzzy_mode: str = "budget"
    combine_layer: Optional[int] = None   # None: no combining module
    combine_tokens: int = 4
    pooling: Optional[str] = None          # cls/mean without combining
    must_spare: bool = False  # the fuzzy rule must be seen to bind

    @property
    def exact(self) -> bool:
        """p = 1.0 without combining: plain BERT, every window agrees."""
        return self.keep_ratio >= 1.0 and self.combine_layer is None

    def export_flags(self) -> List[str]:
        f = ["--keep-ratio", repr(self.keep_ratio),
             "--fuzzy" if self.fuzzy else "--no-fuzzy", "--fuzzy-mode", self.fuzzy_mode]
        if self.combine_layer is None:
            f += ["--combine-layer", "none", "--pooling", self.pooling]
        else:
            f += ["--combine-layer", str(self.combine_layer),
                  "--combine-tokens", str(self.combine_tokens)]
        return f


# The tiny model's reference runs on one thread: its operations are far too
# small to share, and two OpenMP threads on a busy 2-core machine make it 7x
# slower (they spin waiting for each other).
TINY = Shape("4x64", layers=4, hidden=64, heads=2, intermediate=256, labels=3,
             max_position=128, ref_threads=1)
BERT_BASE = Shape("12x768", layers=12, hidden=768, heads=12, intermediate=3072,
                  labels=3, max_position=512, ref_threads=2)


def tiny_variants() -> List[Variant]:
    v = []
    for pooling in ("cls", "mean"):
        v += [
            Variant(f"plain-{pooling}", 1.0, pooling=pooling),
            Variant(f"P-0.7-{pooling}", 0.7, fuzzy=False, pooling=pooling),
            Variant(f"PF-budget-0.9-{pooling}", 0.9, pooling=pooling),
            Variant(f"PF-budget-0.5-{pooling}", 0.5, pooling=pooling, must_spare=True),
            Variant(f"PF-within-0.9-{pooling}", 0.9, fuzzy_mode="within", pooling=pooling),
            Variant(f"PF-within-0.5-{pooling}", 0.5, fuzzy_mode="within", pooling=pooling),
        ]
    v += [
        Variant("C-L2-m4", 1.0, combine_layer=2),
        Variant("PFC-early-L1-0.7", 0.7, combine_layer=1),
        Variant("PFC-late-L3-0.7", 0.7, combine_layer=3),
    ]
    return v


@dataclass(frozen=True)
class Corpus:
    texts: int
    max_words: int
    log_uniform: bool          # word counts log-uniform, else uniform
    limit: Optional[int] = None  # windows kept after shuffling


BASE_VARIANT = Variant("base-PFC-L6-m8-0.9", 0.9, combine_layer=6, combine_tokens=8)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--winnow", required=True, metavar="PATH",
                    help="the built command-line tool (build/winnow)")
    ap.add_argument("--workdir", required=True, metavar="DIR",
                    help="where checkpoints, .wnn files, windows and outputs are written "
                         "(kept for inspection)")
    ap.add_argument("--bert-base", action="store_true",
                    help="also the 12 x 768 PFC model on 50 windows of up to 512 tokens "
                         "(minutes, not for CI)")
    ap.add_argument("--only", metavar="NAME",
                    help="run only the variants whose name contains NAME")
    ap.add_argument("--texts", type=int, default=240, metavar="N",
                    help="texts of the tiny models' corpus (default 240)")
    ap.add_argument("--base-windows", type=int, default=50, metavar="N",
                    help="windows of the --bert-base corpus (default 50)")
    ap.add_argument("--tolerance", type=float, default=1e-4, metavar="X",
                    help="largest |logit difference| allowed where the kept sets agree "
                         "(default 1e-4, PAPER.md 8)")
    ap.add_argument("--std", type=float, default=0.02, metavar="X",
                    help="standard deviation of the random weights (default 0.02, "
                         "make_random_checkpoint's)")
    ap.add_argument("--seed", type=int, default=20231, metavar="S",
                    help="seed of the weights and the corpus (default 20231)")
    ap.add_argument("--timeout", type=float, default=900, metavar="SEC",
                    help="time limit of one engine or reference run (default 900)")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------
# Set-up: checkpoints, models, corpus
# ---------------------------------------------------------------------------


def run(cmd, what, timeout=None, **kw):
    """Runs a set-up command; exits with its output if it fails."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        sys.exit(f"test_method_equivalence: {what} did not finish in {timeout:g} s")
    if r.returncode != 0:
        sys.exit(f"test_method_equivalence: {what} failed (exit {r.returncode}):\n"
                 f"  {' '.join(shlex.quote(c) for c in cmd)}\n{r.stderr}")
    return r


def vocab_args():
    """The real vocabulary when it is there (the corpus is words), else a
    synthetic one."""
    real = os.path.join(REPO, "model", "weights", "vocab.txt")
    return ["--vocab", real] if os.path.isfile(real) else ["--synthetic-vocab", "30522"]


def make_checkpoint(workdir, shape: Shape, combine_tokens: int, args) -> str:
    """One random checkpoint per shape, with winnow.combine.* for m
    combination tokens; variants without combining export without them."""
    out = os.path.join(workdir, f"ck-{shape.name}")
    run([PYTHON, os.path.join(SCRIPTS, "make_random_checkpoint.py"), "--out", out,
         "--layers", str(shape.layers), "--hidden", str(shape.hidden),
         "--heads", str(shape.heads), "--intermediate", str(shape.intermediate),
         "--labels", str(shape.labels), "--max-position", str(shape.max_position),
         "--seed", str(args.seed), "--std", repr(args.std),
         "--combine-layer", str(shape.layers // 2), "--combine-tokens", str(combine_tokens)]
        + vocab_args(), f"make_random_checkpoint ({shape.name})", timeout=args.timeout)
    return out


def export(ckpt_dir, wnn_path, variant: Variant, timeout):
    run([PYTHON, os.path.join(SCRIPTS, "export_model.py"), "--checkpoint", ckpt_dir,
         "--out", wnn_path] + variant.export_flags(), f"export_model ({variant.name})",
        timeout=timeout)


# A fixed word list: common words, words that WordPiece splits into several
# pieces, punctuation, numbers, accents and CJK (one token per character).
WORDS = """
the of and to in is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their
has would when if so no what up out more about who can some time very than
only other into could may then do first any my now such like our over man me
even most made after also did many before must through back years where much
your way well down should because each just those people how too little state
good very make world still own see men work long get here between both life
being under never day same another know while last might us great old year
off come since against go came right used take three invoice payment account
password verify urgent free winner prize click offer limited meeting report
schedule quarterly revenue engineering deployment kubernetes unbelievable
tokenization winnowing antidisestablishmentarianism cryptocurrency
photosynthesis misunderstanding interoperability hyperparameter Kafka zstd
OpenBLAS Debian , . ! ? ; : ( ) - " ' 2023 3.14 42 1,000,000 #1 @home café
naïve résumé Zürich São_Paulo 日本 東京 😀 http://example.com/a?b=c
""".split()


def make_texts(n: int, max_words: int, seed: int, log_uniform: bool) -> List[str]:
    """n deterministic texts: first the edge cases of 0 words ([CLS] [SEP]
    alone), 1 and 2 words, then word counts in 1..max_words, log-uniform
    (mostly short texts, as mail is) or uniform (mostly long windows)."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        if i < 3:
            count = i
        elif log_uniform:
            count = max(1, round(math.exp(rng.uniform(0, math.log(max_words)))))
        else:
            count = rng.randint(1, max_words)
        words = [rng.choice(WORDS) for _ in range(count)]
        if words:
            words[0] = words[0].capitalize()
        texts.append(" ".join(words) + ("." if count > 3 else ""))
    return texts


def tokenize(winnow, wnn_path, texts, timeout) -> List[List[int]]:
    r = run([winnow, "tokenize", "--model", wnn_path], "winnow tokenize",
            timeout=timeout, input="".join(t + "\n" for t in texts))
    lines = r.stdout.splitlines()
    if len(lines) != len(texts):
        sys.exit(f"test_method_equivalence: winnow tokenize printed {len(lines)} lines "
                 f"for {len(texts)} texts")
    return [[int(x) for x in line.split()] for line in lines]


def cut_windows(id_lines, window_len) -> List[List[int]]:
    """Each id line ([CLS] text [SEP]) cut into windows of at most
    window_len - 2 text tokens, each with its own [CLS]/[SEP] (PAPER.md 6)."""
    out, step = [], window_len - 2
    for ids in id_lines:
        cls, text, sep = ids[0], ids[1:-1], ids[-1]
        for start in range(0, max(len(text), 1), step):
            out.append([cls] + text[start:start + step] + [sep])
    return out


def make_corpus(args, winnow_wnn, shape: Shape, corpus: Corpus):
    """The windows of the corpus's texts, shuffled; at most corpus.limit."""
    texts = make_texts(corpus.texts, corpus.max_words, args.seed, corpus.log_uniform)
    windows = cut_windows(tokenize(args.winnow, winnow_wnn, texts, args.timeout),
                          shape.window_len)
    random.Random(args.seed + 1).shuffle(windows)
    windows = windows[:corpus.limit] if corpus.limit else windows
    with open(os.path.join(args.workdir, f"texts-{shape.name}.txt"), "w") as f:
        f.write("".join(t + "\n" for t in texts))
    return windows


# ---------------------------------------------------------------------------
# The two sides
# ---------------------------------------------------------------------------


def parse_logits(text, n_labels, where):
    try:
        vals = [float(x) for x in text.split()]
    except ValueError:
        raise RuntimeError(f"{where}: not numbers: {text[:80]!r}") from None
    if len(vals) != n_labels or not all(math.isfinite(v) for v in vals):
        raise RuntimeError(f"{where}: should hold {n_labels} finite logits: {text[:80]!r}")
    return vals


@dataclass
class Reference:
    logits: List[List[float]]
    kept: List[List[List[int]]]  # per window: K_0..K_P as position lists


def run_reference(wnn_path, text, n_windows, shape, timeout, stem) -> Reference:
    kept_path = stem + "-ref-kept.jsonl"
    cmd = [PYTHON, os.path.join(SCRIPTS, "ref_logits.py"), "--model", wnn_path,
           "--batch", str(REF_BATCH), "--threads", str(shape.ref_threads),
           "--kept-out", kept_path]
    lines, _ = run_side(cmd, text, timeout, stem + "-ref-logits.txt")
    if len(lines) != n_windows:
        raise RuntimeError(f"ref_logits printed {len(lines)} lines for {n_windows} windows")
    logits = [parse_logits(l, shape.labels, f"ref_logits line {i + 1}")
              for i, l in enumerate(lines)]
    with open(kept_path) as f:
        kept = [json.loads(line)["kept"] for line in f]
    if len(kept) != n_windows:
        raise RuntimeError(f"ref_logits wrote {len(kept)} kept sets for {n_windows} windows")
    return Reference(logits, kept)


def run_engine(winnow, wnn_path, text, n_windows, shape, batch, timeout, stem):
    """Returns (logits, retained position sets, seconds)."""
    cmd = [winnow, "logits", "--model", wnn_path, "--batch", str(batch), "--retained"]
    lines, secs = run_side(cmd, text, timeout, f"{stem}-engine-b{batch}.txt")
    if len(lines) != n_windows:
        raise RuntimeError(f"winnow logits printed {len(lines)} lines for {n_windows} windows")
    logits, retained = [], []
    for i, line in enumerate(lines):
        if "\t" not in line:
            raise RuntimeError(f"winnow logits line {i + 1} has no TAB (retained "
                               f"positions): {line[:80]!r}")
        left, right = line.split("\t", 1)
        logits.append(parse_logits(left, shape.labels, f"winnow logits line {i + 1}"))
        retained.append([int(x) for x in right.split()])
    return logits, retained, secs


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


def fuzzy_spared(variant: Variant, kept_lists):
    """From the reference's kept sets: the pruning decisions where fewer
    tokens left than the ratio alone would remove (min(t - keep(t, p),
    t - 2), PAPER.md 2), i.e. where the fuzzy rule spared tokens. Returns
    (decisions, spared decisions, windows with one, tokens spared)."""
    decisions = spared_decisions = windows = tokens = 0
    for kept in kept_lists:
        hit = False
        for before, after in zip(kept, kept[1:]):
            t = len(before)
            ratio_leave = min(t - keep_count(t, variant.keep_ratio), max(t - 2, 0))
            left = t - len(after)
            decisions += 1
            if left < ratio_leave:
                spared_decisions += 1
                tokens += ratio_leave - left
                hit = True
        windows += hit
    return decisions, spared_decisions, windows, tokens


def fmt(logits) -> str:
    return "[" + " ".join("%.9g" % x for x in logits) + "]"


def set_diff(ref_set, got_set) -> str:
    only_ref = sorted(set(ref_set) - set(got_set))
    only_got = sorted(set(got_set) - set(ref_set))
    return f"reference only {only_ref[:8]}, engine only {only_got[:8]}"


def test_variant(args, shape, ckpt_dir, variant, windows, failures):
    stem = os.path.join(args.workdir, f"{shape.name}-{variant.name}")
    wnn_path = stem + ".wnn"
    export(ckpt_dir, wnn_path, variant, args.timeout)
    text = "".join(" ".join(map(str, w)) + "\n" for w in windows)
    try:
        ref = run_reference(wnn_path, text, len(windows), shape, args.timeout, stem)
    except RuntimeError as e:
        failures.append(f"{variant.name}: reference: {e}")
        print(f"FAIL {variant.name}: reference: {e}", flush=True)
        return
    # Retained = K_P less its first and last position ([CLS], [SEP]).
    ref_retained = [k[-1][1:-1] for k in ref.kept]
    mean_kp = sum(len(k[-1]) for k in ref.kept) / len(windows)
    mean_len = sum(map(len, windows)) / len(windows)

    need = 1.0 if variant.exact else MIN_AGREE
    for batch in BATCHES:
        label = f"{variant.name} batch {batch}"
        try:
            got, retained, secs = run_engine(args.winnow, wnn_path, text, len(windows),
                                             shape, batch, args.timeout, stem)
        except RuntimeError as e:
            failures.append(f"{label}: {e}")
            print(f"FAIL {label}: {e}", flush=True)
            continue
        agree, worst, bad_sets, bad_logits = 0, 0.0, [], []
        for i in range(len(windows)):
            if retained[i] != ref_retained[i]:
                bad_sets.append(i)
                continue
            agree += 1
            d = max(abs(a - b) for a, b in zip(ref.logits[i], got[i]))
            worst = max(worst, d)
            if d > args.tolerance:
                bad_logits.append((i, d))
        frac = agree / len(windows)
        ok = frac >= need and not bad_logits
        print(f"{'ok  ' if ok else 'FAIL'} {variant.name:24s} b{batch}  {len(windows):4d}  "
              f"{100 * frac:7.2f}%  {worst:10.3g}  {mean_kp:6.1f} / {mean_len:5.1f}  "
              f"{secs:6.2f} s", flush=True)
        for i in bad_sets[:MAX_LISTED]:
            print(f"       window {i + 1} ({len(windows[i])} tokens): kept sets differ: "
                  f"{set_diff(ref_retained[i], retained[i])}", flush=True)
        if frac < need:
            failures.append(
                f"{label}: kept sets agree on {agree} of {len(windows)} windows "
                f"({100 * frac:.2f}%), PAPER.md 8 asks for {100 * need:g}%; first: window "
                f"{bad_sets[0] + 1}, {set_diff(ref_retained[bad_sets[0]], retained[bad_sets[0]])}")
        for i, d in bad_logits[:MAX_LISTED]:
            failures.append(f"{label}: window {i + 1} ({len(windows[i])} tokens), same kept "
                            f"set: |logit diff| {d:.3g} > {args.tolerance:g}; reference "
                            f"{fmt(ref.logits[i])}, engine {fmt(got[i])}")
        if len(bad_logits) > MAX_LISTED:
            failures.append(f"{label}: ... and {len(bad_logits) - MAX_LISTED} more windows "
                            f"beyond the tolerance")
    if variant.fuzzy and variant.keep_ratio < 1.0:
        dec, sp_dec, sp_win, sp_tok = fuzzy_spared(variant, ref.kept)
        print(f"       the fuzzy rule spared {sp_tok} tokens in {sp_dec} "
              f"of {dec} pruning decisions ({sp_win} of {len(windows)} windows): fewer "
              f"left than the ratio budget", flush=True)
        if variant.must_spare and sp_dec == 0:
            failures.append(f"{variant.name}: the fuzzy rule never bound at p = "
                            f"{variant.keep_ratio} in the reference, so this variant "
                            f"does not test it")


def test_shape(args, shape: Shape, variants, corpus: Corpus, failures):
    variants = [v for v in variants if not args.only or args.only in v.name]
    if not variants:
        return
    m = max(v.combine_tokens for v in variants)
    ckpt_dir = make_checkpoint(args.workdir, shape, m, args)
    # Any of the shape's models tokenizes: they share the vocabulary.
    first = os.path.join(args.workdir, f"{shape.name}-tokenizer.wnn")
    export(ckpt_dir, first, Variant("tok", 1.0, pooling="cls"), args.timeout)
    windows = make_corpus(args, first, shape, corpus)
    with open(os.path.join(args.workdir, f"windows-{shape.name}.txt"), "w") as f:
        f.write("".join(" ".join(map(str, w)) + "\n" for w in windows))
    lengths = sorted(map(len, windows))
    print(f"\n{shape.name} ({shape.layers} layers x {shape.hidden}, {shape.heads} heads, "
          f"std {args.std:g}): {corpus.texts} texts -> {len(windows)} windows of "
          f"{lengths[0]}..{lengths[-1]} tokens (median {lengths[len(lengths) // 2]})")
    print(f"     {'variant':24s} batch  win   agree   max|dlogit|  mean|K_P| / len  engine")
    for v in variants:
        test_variant(args, shape, ckpt_dir, v, windows, failures)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    failures = []
    t0 = time.monotonic()
    # Up to 300 words, mostly short: most texts fit one window of 126 text
    # tokens, the longest take two or three.
    test_shape(args, TINY, tiny_variants(), Corpus(args.texts, 300, True), failures)
    if args.bert_base:
        # Up to 700 words, uniform: mostly long windows, up to 512 tokens.
        test_shape(args, BERT_BASE, [BASE_VARIANT],
                   Corpus(40, 700, False, args.base_windows), failures)
    secs = time.monotonic() - t0
    if failures:
        print(f"\ntest_method_equivalence: FAILED, {len(failures)} problem(s) "
              f"(files in {args.workdir}):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"\ntest_method_equivalence: every variant agrees (kept sets on >= "
          f"{100 * MIN_AGREE:g}% of windows, all with p = 1.0 and no combining; logits "
          f"within {args.tolerance:g}) ({secs:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
