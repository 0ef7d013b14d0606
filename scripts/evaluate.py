#!/usr/bin/python3
"""Evaluate trained runs on the test split through the C engine, and write
the results page (docs/results.md and its plots).

For every (task, variant, seed) run that scripts/train.py has finished:
export its best checkpoint to RUN/model.wnn, classify every test document
with `winnow classify --trace` (the engine's tokenizer, windows and
pruning), and report accuracy, macro-F1 and micro-F1, the engine's
throughput and the tokens entering each layer. --torch-check documents,
spread over the test split, are also classified by the PyTorch reference;
the table shows on how many the two gave the same label (PAPER.md 8: only
a near-tie of two importance scores may differ) and the largest
probability difference. Runs not trained yet are left out (and named).

Examples:
  /usr/bin/python3 scripts/evaluate.py --task spam2 --variant bert,ours-PFC-P3 --seed 1
  /usr/bin/python3 scripts/evaluate.py --task all --variant all --seed 1,2,3
"""

import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import cli, evaluation, paths, procenv, tasks  # noqa: E402


def parse_args(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--task", default="all", help="comma-separated tasks or 'all' (default all)")
    ap.add_argument("--variant", default="all", help="comma-separated variants or 'all' (default all)")
    ap.add_argument("--seed", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    ap.add_argument("--runs", metavar="DIR",
                    help="run directories (default ${WINNOW_CACHE:-~/.cache/winnow}/runs)")
    cli.add_data_args(ap, vocab=False)
    ap.add_argument("--winnow", default=paths.DEFAULT_WINNOW, metavar="BIN",
                    help="the winnow binary (default build/winnow)")
    ap.add_argument("--workdir", metavar="DIR",
                    help="where test documents are written as files "
                         "(default ${WINNOW_CACHE:-~/.cache/winnow}/eval)")
    ap.add_argument("--batch", type=int, default=16, help="engine windows per pass (default 16)")
    ap.add_argument("--torch-check", type=int, default=100, metavar="N",
                    help="test documents (spread over the split) also classified by the PyTorch "
                         "reference, whose labels the engine must match (default 100; 0: none)")
    ap.add_argument("--speed-repeats", type=int, default=3, metavar="N",
                    help="rounds of the side-by-side throughput measurement, every model of a "
                         "task and its speed reference in turn per round, median counted "
                         "(default 3; 0: none, speeds only from the archive)")
    ap.add_argument("--encoder", default=paths.ENCODER, metavar="DIR",
                    help="the runs' pretrained encoder, from which each task's speed "
                         "reference (plain BERT, untrained head) is made (default "
                         "scripts/encoder, the table's; '' for none: speed-ups then only "
                         "against bert runs measured in the same rounds)")
    ap.add_argument("--speed-seed", type=int, metavar="S",
                    help="measure the throughput of seed S's runs only (one model per "
                         "variant: a page of every seed stays minutes, not hours; default: "
                         "every evaluated run)")
    ap.add_argument("--shipped", metavar="FILE",
                    help="instead of the table: this model file (the shipped one) on the test set "
                         "of --shipped-task against the f32 export of the run of --shipped-variant "
                         "(first --seed), and its explanations -> the page's 'shipped' section")
    ap.add_argument("--shipped-task", default=tasks.DEFAULT_TASK, metavar="TASK",
                    help=f"(with --shipped) default {tasks.DEFAULT_TASK}")
    ap.add_argument("--shipped-variant", default=tasks.DEFAULT_VARIANT, metavar="VARIANT",
                    help=f"(with --shipped) default {tasks.DEFAULT_VARIANT}")
    ap.add_argument("--max-test-docs", type=int, default=0, metavar="N",
                    help="evaluate on a seeded sample of N test documents (quick looks)")
    ap.add_argument("--markdown", default=os.path.join(paths.ROOT, "docs", "results.md"),
                    metavar="FILE", help="results page to write (default docs/results.md; '' for none)")
    ap.add_argument("--plot-prefix", default="results", metavar="NAME",
                    help="plots are written beside the page as NAME-*.png (default results)")
    ap.add_argument("--results-json", metavar="FILE",
                    help="all numbers (default RUNS/results.json)")
    ap.add_argument("--archive", default=paths.ARCHIVE, metavar="DIR",
                    help="committed per-run numbers: each evaluated run is written there, and "
                         "runs of the selection found only there join the table (default "
                         "docs/results/runs; '' for neither)")
    ap.add_argument("--reuse-archive", action="store_true",
                    help="take archived runs' numbers as they are instead of evaluating them "
                         "again (their speed is measured again when their model is here)")
    args = ap.parse_args(argv)
    cli.parse_selection(ap, args)
    if not os.access(args.winnow, os.X_OK):
        ap.error(f"no winnow binary at '{args.winnow}' (cmake --build build --target winnow)")
    cli.default_dirs(args)
    if args.shipped:
        args.shipped = os.path.abspath(args.shipped)
    args.encoder = os.path.abspath(args.encoder) if args.encoder else None
    args.workdir = args.workdir or os.path.join(paths.cache_root(), "eval")
    args.results_json = args.results_json or os.path.join(args.runs, "results.json")
    args.command = "/usr/bin/python3 scripts/evaluate.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    return args


if __name__ == "__main__":
    procenv.ensure()
    sys.exit(evaluation.run(parse_args()))
