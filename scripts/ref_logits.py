#!/usr/bin/python3
"""Print the reference model's logits for windows of token ids.

stdin: one window per line, token ids separated by spaces, [CLS] first and
[SEP] last. stdout: one line per window, its logits separated by spaces,
each "%.9g". The same contract as `winnow logits --model FILE --batch N`,
so that tests/test_equivalence.py can compare the two.

The model is a checkpoint directory (--checkpoint) or a .wnn file
(--model, read through the validating reader; f16/bf16 tensors are widened
to f32 as the engine does). Windows are run in eval mode in batches of
--batch, right-padded, with attention masks.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from winnow_ref import checkpoint, document, wnn  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR",
                     help="checkpoint directory (pytorch_model.bin, config.json, vocab.txt)")
    src.add_argument("--model", metavar="FILE",
                     help="a .wnn model file instead of a checkpoint")
    ap.add_argument("--batch", type=int, default=8, metavar="N",
                    help="windows per forward pass, padded to the longest (default 8)")
    ap.add_argument("--threads", type=int, default=2, metavar="T",
                    help="torch intra-op threads (default 2)")
    ap.add_argument("--kept-out", metavar="FILE",
                    help="also write one JSON line per window: the kept sets K_0..K_P "
                         "as position lists and the last pruned layer's scores")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error("--batch must be at least 1")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    return args


def load_model(args):
    if args.checkpoint:
        ckpt = checkpoint.load_checkpoint(args.checkpoint)
        return checkpoint.build_model(ckpt.config, ckpt.state)
    m = wnn.read_wnn(args.model)
    state = {k: torch.from_numpy(v) for k, v in m.checkpoint_state().items()}
    return checkpoint.build_model(m.config, state)


def read_windows(lines, vocab_size: int, max_len: int):
    """Parses stdin; raises ValueError naming the line on bad input."""
    windows = []
    for lineno, line in enumerate(lines, 1):
        try:
            ids = [int(x) for x in line.split()]
        except ValueError:
            raise ValueError(f"line {lineno}: not a list of integers") from None
        if len(ids) < 2:
            raise ValueError(f"line {lineno}: a window needs at least [CLS] and [SEP]")
        if len(ids) > max_len:
            raise ValueError(f"line {lineno}: {len(ids)} tokens, the model has "
                             f"{max_len} positions")
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(f"line {lineno}: id {bad[0]} is outside the vocabulary "
                             f"(0..{vocab_size - 1})")
        windows.append(ids)
    return windows


def batches(windows, size):
    for start in range(0, len(windows), size):
        yield document.pad(windows[start:start + size])


def format_logits(row) -> str:
    return " ".join("%.9g" % float(x) for x in row)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args)
        cfg = model.config
        windows = read_windows(sys.stdin, cfg.vocab_size, cfg.max_position_embeddings)
    except (OSError, ValueError, KeyError) as e:
        print(f"ref_logits: {e}", file=sys.stderr)
        return 1
    kept_out = open(args.kept_out, "w") if args.kept_out else None
    with torch.no_grad():
        for ids, mask in batches(windows, args.batch):
            out = model(ids, mask, return_details=True)
            for b, row in enumerate(out.logits):
                print(format_logits(row))
                if kept_out:
                    last = out.scores[-1][b] if out.scores else None
                    kept_out.write(json.dumps({
                        "kept": out.kept_positions(b),
                        "scores": [] if last is None else
                        [float(last[j]) for j in out.kept_positions(b)[-1]],
                    }) + "\n")
    if kept_out:
        kept_out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
