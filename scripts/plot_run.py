#!/usr/bin/python3
"""Draw an archived run's loss curve again.

Each fine-tuning run draws RUNS/TASK/VARIANT/seedS/loss.png as it trains,
but that lives in the cache, which a new machine does not have. The
archive (docs/results/runs/TASK/VARIANT/seedS.json, committed) keeps the
curve in small: every validation point and the mean training loss of the
steps before it (evaluation.loss_curve_summary). This draws that.

Example:
  /usr/bin/python3 scripts/plot_run.py --task brown --variant bert --seed 1 --out loss.png
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import paths, plots, runstate  # noqa: E402
from winnow_train.archive import archive_path  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--archive", default=paths.ARCHIVE, metavar="DIR",
                    help="the run archive (default docs/results/runs, or $WINNOW_ARCHIVE)")
    ap.add_argument("--out", required=True, metavar="FILE", help="the PNG to write")
    args = ap.parse_args()

    path = archive_path(args.archive, args.task, args.variant, args.seed)
    if not os.path.isfile(path):
        print(f"plot_run: cannot open '{path}': no such archived run", file=sys.stderr)
        return 1
    curve = runstate.read_json(path).get("training", {}).get("curve")
    if not curve or not curve.get("val_step"):
        print(f"plot_run: '{path}' has no loss curve (archived before 2026-12-07)",
              file=sys.stderr)
        return 1
    train = [(s, x) for s, x in zip(curve["val_step"], curve["train_loss"]) if x is not None]
    plots.loss_curve(args.out, f"{args.task} / {args.variant} / seed {args.seed}",
                     [], [], curve["val_step"], curve["val_loss"],
                     extra={"train (mean since the last validation)":
                            ([s for s, _ in train], [x for _, x in train])})
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
