#!/usr/bin/python3
"""Engine vs reference: the C engine's logits must equal the PyTorch
reference's within 1e-4 (absolute) on every window (PAPER.md 8: with
p = 1.0 every document must agree).

For each configuration (random checkpoints of 2 layers x 64 hidden, 2 heads,
and 4 x 256, 4 heads; `cls` and `mean` pooling; p = 1.0, no combining
module) the test
  1. writes a random checkpoint (scripts/make_random_checkpoint.py) and
     exports it (scripts/export_model.py, f32);
  2. makes windows [CLS] x.. [SEP] of 1, 2, 7, 64, 127, 300 and 510 random
     text ids (no special ids), two of each, shuffled so that batches mix
     lengths;
  3. runs `winnow logits --model FILE.wnn --batch N` with N = 1 and N = 8
     (stdin: one window of ids per line; stdout: one line of "%.9g" logits
     per window), and the reference in-process, one window at a time;
  4. prints the largest |difference| per configuration and batch size, and
     fails naming every window beyond the tolerance.

    /usr/bin/python3 tests/test_equivalence.py --winnow build/winnow --workdir DIR
    ... --bert-base          also 12 x 768 (12 heads, 3072): slow, not for CI
    ... --engine-cmd 'CMD'   any command with the same contract instead of
                             winnow; {model}, {checkpoint} and {batch} are
                             substituted (e.g. scripts/ref_logits.py, to test
                             this test)

Run by ctest as `equivalence_dense`.
"""

import argparse
import math
import os
import random
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from winnow_ref import checkpoint, wnn  # noqa: E402
from equivalence_common import run_side  # noqa: E402

PYTHON = "/usr/bin/python3"
TEXT_LENGTHS = [1, 2, 7, 64, 127, 300, 510]
WINDOWS_PER_LENGTH = 2
BATCHES = [1, 8]

# name, layers, hidden, heads, intermediate, labels
SHAPES = [("2x64", 2, 64, 2, 256, 2), ("4x256", 4, 256, 4, 1024, 5)]
BERT_BASE = ("12x768", 12, 768, 12, 3072, 3)
POOLINGS = ["cls", "mean"]
MAX_LISTED = 20  # failures printed in full


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    eng = ap.add_mutually_exclusive_group(required=True)
    eng.add_argument("--winnow", metavar="PATH",
                     help="the built command-line tool (build/winnow); runs "
                          "'winnow logits --model FILE --batch N'")
    eng.add_argument("--engine-cmd", metavar="CMD",
                     help="command to test instead, with {model}, {checkpoint}, {batch} "
                          "placeholders, e.g. \"/usr/bin/python3 scripts/ref_logits.py "
                          "--checkpoint {checkpoint} --batch {batch}\"")
    ap.add_argument("--workdir", required=True, metavar="DIR",
                    help="where checkpoints, .wnn files, windows and outputs are written "
                         "(kept for inspection)")
    ap.add_argument("--bert-base", action="store_true",
                    help="also test the 12 x 768 shape (12 heads, 3072): minutes, not for CI")
    ap.add_argument("--only", metavar="SHAPE",
                    help="test only this shape (2x64, 4x256 or 12x768)")
    ap.add_argument("--tolerance", type=float, default=1e-4, metavar="X",
                    help="largest |logit difference| allowed (default 1e-4, PAPER.md 8)")
    ap.add_argument("--dtype", choices=sorted(wnn.DTYPES), default="f32",
                    help="storage of the exported weights (default f32; f16/bf16 need a "
                         "looser --tolerance, the reference stays f32)")
    ap.add_argument("--seed", type=int, default=1234, metavar="S",
                    help="seed of the weights and the windows (default 1234)")
    ap.add_argument("--timeout", type=float, default=600, metavar="SEC",
                    help="time limit of one engine run (default 600)")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------
# Set-up: checkpoints, models, windows
# ---------------------------------------------------------------------------


def run(cmd, what, **kw):
    """Runs a set-up command; exits with its output if it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"test_equivalence: {what} failed (exit {r.returncode}):\n"
                 f"  {' '.join(shlex.quote(c) for c in cmd)}\n{r.stderr}")
    return r


def vocab_args():
    """The real vocabulary when it is there, else a synthetic one: the
    test is about arithmetic, not words."""
    real = os.path.join(REPO, "model", "weights", "vocab.txt")
    return ["--vocab", real] if os.path.isfile(real) else ["--synthetic-vocab", "30522"]


def make_checkpoint(workdir, shape, seed):
    """A random checkpoint with the pooler (either pooling exports from
    it). std 1/sqrt(d) rather than BERT's 0.02: peaked attention and logits
    of order 1, so that a wrong term shows in the logits far above 1e-4."""
    name, layers, hidden, heads, inter, labels = shape
    out = os.path.join(workdir, f"ck-{name}")
    run([PYTHON, os.path.join(SCRIPTS, "make_random_checkpoint.py"), "--out", out,
         "--layers", str(layers), "--hidden", str(hidden), "--heads", str(heads),
         "--intermediate", str(inter), "--labels", str(labels), "--seed", str(seed),
         "--std", repr(1 / math.sqrt(hidden))] + vocab_args(), "make_random_checkpoint")
    return out


def export(ckpt_dir, wnn_path, pooling, dtype):
    run([PYTHON, os.path.join(SCRIPTS, "export_model.py"), "--checkpoint", ckpt_dir,
         "--out", wnn_path, "--pooling", pooling, "--keep-ratio", "1.0",
         "--combine-layer", "none", "--dtype", dtype], "export_model")


def make_windows(vocab, seed):
    """Two windows per text length, shuffled; ids drawn from the whole
    vocabulary except the special tokens."""
    tok = wnn.TokenizerSettings.from_vocab(vocab)
    special = {tok.cls_id, tok.sep_id, tok.pad_id, tok.unk_id, tok.mask_id}
    pool = [i for i in range(len(vocab)) if i not in special]
    rng = random.Random(seed)
    windows = [[tok.cls_id] + [rng.choice(pool) for _ in range(t)] + [tok.sep_id]
               for t in TEXT_LENGTHS for _ in range(WINDOWS_PER_LENGTH)]
    rng.shuffle(windows)
    return windows


def reference_logits(ckpt_dir, pooling, windows):
    """The reference, one window at a time (no padding in the truth)."""
    ck = checkpoint.load_checkpoint(ckpt_dir)
    cfg = ck.config.with_overrides(pooling=pooling, keep_ratio=1.0, combine_layer=-1)
    model = checkpoint.build_model(cfg, ck.state)
    with torch.no_grad():
        return [model(torch.tensor([w]))[0].tolist() for w in windows]


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------


def engine_command(args, wnn_path, ckpt_dir, batch):
    if args.winnow:
        return [args.winnow, "logits", "--model", wnn_path, "--batch", str(batch)]
    return shlex.split(args.engine_cmd.format(model=wnn_path, checkpoint=ckpt_dir,
                                              batch=batch))


def run_engine(cmd, windows_text, n_windows, n_labels, timeout, save_as):
    """Runs the engine; returns (logits per window, seconds) or raises
    RuntimeError with a message that says what was wrong."""
    shown = " ".join(shlex.quote(c) for c in cmd)
    lines, seconds = run_side(cmd, windows_text, timeout, save_as)
    if len(lines) != n_windows:
        raise RuntimeError(f"'{shown}' printed {len(lines)} lines for {n_windows} windows")
    out = []
    for i, line in enumerate(lines):
        try:
            vals = [float(x) for x in line.split()]
        except ValueError:
            raise RuntimeError(f"'{shown}': output line {i + 1} is not numbers: "
                               f"{line[:80]!r}") from None
        if len(vals) != n_labels or not all(math.isfinite(v) for v in vals):
            raise RuntimeError(f"'{shown}': output line {i + 1} should hold {n_labels} "
                               f"finite logits: {line[:80]!r}")
        out.append(vals)
    return out, seconds


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


def compare(ref, got, windows, tol):
    """Largest difference, and the windows beyond tol as (index, length,
    diff)."""
    worst, bad = 0.0, []
    for i, (r, g) in enumerate(zip(ref, got)):
        d = max(abs(a - b) for a, b in zip(r, g))
        worst = max(worst, d)
        if d > tol:
            bad.append((i, len(windows[i]), d))
    return worst, bad


def fmt(logits) -> str:
    return "[" + " ".join("%.7g" % x for x in logits) + "]"


def test_shape(args, shape, failures):
    name = shape[0]
    ckpt_dir = make_checkpoint(args.workdir, shape, args.seed)
    vocab = checkpoint.read_vocab(os.path.join(ckpt_dir, "vocab.txt"))
    windows = make_windows(vocab, args.seed)
    text = "".join(" ".join(map(str, w)) + "\n" for w in windows)
    with open(os.path.join(args.workdir, f"windows-{name}.txt"), "w") as f:
        f.write(text)
    for pooling in POOLINGS:
        config = f"{name}-{pooling}"
        wnn_path = os.path.join(args.workdir, f"{config}.wnn")
        export(ckpt_dir, wnn_path, pooling, args.dtype)
        ref = reference_logits(ckpt_dir, pooling, windows)
        for batch in BATCHES:
            cmd = engine_command(args, wnn_path, ckpt_dir, batch)
            save = os.path.join(args.workdir, f"logits-{config}-b{batch}.txt")
            try:
                got, secs = run_engine(cmd, text, len(windows), shape[5], args.timeout, save)
            except RuntimeError as e:
                failures.append(f"{config} batch {batch}: {e}")
                print(f"FAIL {config:12s} batch {batch}: {e}", flush=True)
                continue
            worst, bad = compare(ref, got, windows, args.tolerance)
            status = "ok  " if not bad else "FAIL"
            print(f"{status} {config:12s} batch {batch}: max |logit diff| {worst:.3g} over "
                  f"{len(windows)} windows of {min(map(len, windows))}..{max(map(len, windows))}"
                  f" tokens ({secs:.1f} s)", flush=True)
            for i, length, d in bad:
                failures.append(f"{config} batch {batch}: window {i + 1} ({length} tokens): "
                                f"|diff| {d:.3g} > {args.tolerance:g}; reference "
                                f"{fmt(ref[i])}, engine {fmt(got[i])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    torch.set_num_threads(2)
    shapes = SHAPES + ([BERT_BASE] if args.bert_base else [])
    if args.only:
        shapes = [s for s in shapes + [BERT_BASE] if s[0] == args.only]
        if not shapes:
            sys.exit(f"test_equivalence: unknown shape '{args.only}'")
    failures = []
    t0 = time.monotonic()
    for shape in shapes:
        test_shape(args, shape, failures)
    if failures:
        print(f"\ntest_equivalence: FAILED, {len(failures)} problem(s) "
              f"(tolerance {args.tolerance:g}, files in {args.workdir}):", file=sys.stderr)
        for f in failures[:MAX_LISTED]:
            print(f"  {f}", file=sys.stderr)
        if len(failures) > MAX_LISTED:
            print(f"  ... and {len(failures) - MAX_LISTED} more", file=sys.stderr)
        return 1
    print(f"test_equivalence: all windows within {args.tolerance:g} "
          f"({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
