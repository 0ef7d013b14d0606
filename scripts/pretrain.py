#!/usr/bin/python3
"""Pretrain winnow's BERT encoder with masked language modelling.

Text: the train splits of SpamAssassin and Brown and the State of the Union
addresses (scripts/prepare_data.py must have run); never a validation or
test document. The run stops when its budget (--max-minutes of training
time and/or --max-steps) is spent; it saves its state every
--checkpoint-minutes and resumes from it when run again with the same
--out (a larger budget continues a finished run). The result is OUT/encoder/,
a checkpoint directory that scripts/train.py fine-tunes, plus OUT/loss.png.

Example (the default build's stage; docs/training.md):
  /usr/bin/python3 scripts/pretrain.py --max-minutes 40
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import cli, mlm, paths, procenv  # noqa: E402


def parse_args(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--out", metavar="DIR",
                    help="run directory (default ${WINNOW_CACHE:-~/.cache/winnow}/runs/pretrain)")
    cli.add_data_args(ap)
    ap.add_argument("--max-minutes", type=float, metavar="M",
                    help="training-time budget in compute minutes (CPU time over the "
                         "threads), summed over resumptions")
    ap.add_argument("--max-steps", type=int, metavar="N", help="optimiser-step budget")
    cli.add_shape_args(ap)
    ap.add_argument("--seq-len", type=int, default=128, metavar="N",
                    help="window length incl. [CLS]/[SEP] (default 128, BERT's first phase)")
    ap.add_argument("--batch-size", type=int, default=32, metavar="B", help="windows per step (default 32)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    ap.add_argument("--warmup", type=float, default=0.06, metavar="F",
                    help="fraction of the budget spent warming up (default 0.06)")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    ap.add_argument("--dropout", type=float, default=0.1, help="hidden dropout (default 0.1)")
    ap.add_argument("--attention-dropout", type=float, default=0.0,
                    help="attention dropout (default 0: it costs a fifth of a step on CPU)")
    ap.add_argument("--eval-every", type=int, default=200, metavar="N",
                    help="validation MLM loss every N steps (default 200; 0: only at the end)")
    ap.add_argument("--val-windows", type=int, default=256, metavar="N",
                    help="validation windows (default 256)")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0, metavar="M",
                    help="save the resumable state every M minutes (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="torch threads (default: all cores)")
    args = ap.parse_args(argv)
    if not args.max_minutes and not args.max_steps:
        ap.error("give --max-minutes and/or --max-steps")
    args.out = args.out or os.path.join(paths.cache_root(), "runs", "pretrain")
    args.data_root = args.data_root or os.path.join(paths.cache_root(), "data")
    return args


if __name__ == "__main__":
    procenv.ensure()
    sys.exit(mlm.run(parse_args()))
