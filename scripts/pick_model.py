#!/usr/bin/python3
"""Choose the model to ship from evaluated runs (scripts/evaluate.py's
results.json), by the targets of the shipped model:

  1. candidates within --max-drop accuracy points of the baseline and at
     least --min-speedup times its engine throughput: the most accurate
     (ties: the faster);
  2. if none meets both, the most accurate of those within --max-drop,
     with a warning;
  3. if none is even that, the most accurate, with a warning.

Prints the chosen variant on stdout and the reasons on stderr.

Example:
  /usr/bin/python3 scripts/pick_model.py --task spam2 --baseline bert \\
      --candidates ours-PFC-P3,ours-PFC-P2
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import paths  # noqa: E402


def _measured(x) -> bool:
    return x is not None and x == x  # not None, not NaN


def speed_ratio(row, base) -> float:
    """row's speed over base's: the ratio of their speed-ups over the speed
    reference when both have one (each measured side by side with it),
    else of their docs/s (measured side by side with each other)."""
    if _measured(row.get("speed_up")) and _measured(base.get("speed_up")):
        return row["speed_up"] / base["speed_up"]
    return row["docs_per_second"] / base["docs_per_second"]


def choose(table, task, baseline, candidates, max_drop, min_speedup):
    rows = {r["variant"]: r for r in table if r["task"] == task}
    if baseline not in rows:
        raise ValueError(f"no evaluated '{baseline}' run for task '{task}'")
    base = rows[baseline]
    found = [rows[c] for c in candidates if c in rows]
    if not found:
        raise ValueError(f"none of {', '.join(candidates)} evaluated for task '{task}'")
    notes, scored = [], []
    for r in found:
        drop = 100 * (base["accuracy"] - r["accuracy"])
        speedup = speed_ratio(r, base)
        notes.append(f"{r['variant']}: accuracy {100 * r['accuracy']:.2f}% "
                     f"({-drop:+.2f} points vs {baseline}), {speedup:.2f}x {baseline}'s speed")
        scored.append((r, drop, speedup))

    def best(rs):
        return max(rs, key=lambda x: (x[0]["accuracy"], x[2]))[0]["variant"]
    both = [x for x in scored if x[1] <= max_drop and x[2] >= min_speedup]
    if both:
        return best(both), notes, None
    close = [x for x in scored if x[1] <= max_drop]
    if close:
        return best(close), notes, f"no candidate reaches {min_speedup}x {baseline}'s speed"
    return best(scored), notes, f"no candidate is within {max_drop} points of {baseline}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--results", metavar="FILE",
                    help="results.json (default ${WINNOW_CACHE:-~/.cache/winnow}/runs/results.json)")
    ap.add_argument("--task", default="spam2")
    ap.add_argument("--baseline", default="bert")
    ap.add_argument("--candidates", required=True, help="comma-separated variants")
    ap.add_argument("--max-drop", type=float, default=1.0,
                    help="accuracy points below the baseline allowed (default 1)")
    ap.add_argument("--min-speedup", type=float, default=2.0,
                    help="engine throughput over the baseline's required (default 2)")
    args = ap.parse_args(argv)
    path = args.results or os.path.join(paths.cache_root(), "runs", "results.json")
    with open(path) as f:
        table = json.load(f)["table"]
    try:
        variant, notes, warning = choose(table, args.task, args.baseline,
                                         [c for c in args.candidates.split(",") if c],
                                         args.max_drop, args.min_speedup)
    except ValueError as e:
        print(f"pick_model: {e}", file=sys.stderr)
        return 1
    for n in notes:
        print(f"pick_model: {n}", file=sys.stderr)
    if warning:
        print(f"pick_model: warning: {warning}", file=sys.stderr)
    print(f"pick_model: shipping {variant}", file=sys.stderr)
    print(variant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
