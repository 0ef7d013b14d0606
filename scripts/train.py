#!/usr/bin/python3
"""Fine-tune winnow classifiers: one run per (task, variant, seed).

Tasks: spam2 (SpamAssassin ham/spam), spam3 (easy-ham/hard-ham/spam), brown
(15 genres). Variants: bert, ours-P, ours-PF-budget, ours-PF-within (and
their -p0.6 versions), ours-C-P3/P5, ours-PFC-P3/P5 (winnow_train/tasks.py).
Training follows PAPER.md 7 (docs/training.md says where and why it
deviates). Each run lives in RUNS/<task>/<variant>/seed<S>/ with best/ (the
checkpoint of the lowest validation loss, ready for export_model.py),
loss.png and done.json; an interrupted run resumes, a finished one is
skipped (--force trains it again). ours-PF-budget at p = 0.9 trains as
ours-P to the bit (its fuzzy rule cannot bind, winnow_ref/prune.py), so
its run takes ours-P's finished weights under its own configuration
(--train-shared trains it all the same).

Examples:
  /usr/bin/python3 scripts/train.py --task spam2 --variant ours-PFC-P3 --seed 1
  /usr/bin/python3 scripts/train.py --task all --variant all --seed 1,2,3
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import cli, finetune, procenv, progress, tasks  # noqa: E402


def parse_args(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--task", default=tasks.DEFAULT_TASK,
                    help=f"comma-separated tasks or 'all' ({', '.join(tasks.TASKS)}; "
                         f"default {tasks.DEFAULT_TASK})")
    ap.add_argument("--variant", default=tasks.DEFAULT_VARIANT,
                    help=f"comma-separated variants or 'all' (default {tasks.DEFAULT_VARIANT})")
    ap.add_argument("--seed", default="1", help="comma-separated seeds (default 1)")
    ap.add_argument("--runs", metavar="DIR",
                    help="root of the run directories (default ${WINNOW_CACHE:-~/.cache/winnow}/runs)")
    ap.add_argument("--out", metavar="DIR",
                    help="run directory for a single run (default RUNS/TASK/VARIANT/seedS)")
    ap.add_argument("--encoder", metavar="DIR",
                    help="pretrained encoder checkpoint (default RUNS/pretrain/encoder; "
                         "'none' trains from random weights)")
    cli.add_data_args(ap)
    ap.add_argument("--epochs", type=int,
                    help="epochs (default: the task's, winnow_train/tasks.py: 3; brown 8)")
    ap.add_argument("--max-minutes", type=float, metavar="M",
                    help="training-time budget per run, in compute minutes (CPU time over the "
                         "threads: a busy or paused machine does not spend it); the "
                         "schedule is shortened to fit")
    ap.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16, PAPER.md 7)")
    ap.add_argument("--eval-batch-size", type=int, default=32, help="validation batch (default 32)")
    ap.add_argument("--lr", type=float,
                    help="peak learning rate (default: the task's, winnow_train/tasks.py: "
                         "1e-4; brown 3e-4; PAPER.md 7 has 2e-5 for BERT-base)")
    ap.add_argument("--warmup", type=float, default=0.1, metavar="F",
                    help="fraction of training spent warming up (default 0.1)")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    ap.add_argument("--dropout", type=float, default=0.1, help="hidden dropout (default 0.1)")
    ap.add_argument("--attention-dropout", type=float, default=0.0,
                    help="attention dropout (default 0, as in pretraining)")
    ap.add_argument("--max-seq-len", type=int, metavar="N",
                    help="window length incl. [CLS]/[SEP] (default min(512, max position))")
    ap.add_argument("--eval-every", type=int, default=0, metavar="N",
                    help="validate every N steps as well as after each epoch (default 0)")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0, metavar="M",
                    help="save the resumable state every M minutes (default 5)")
    ap.add_argument("--max-train-docs", type=int, default=0, metavar="N",
                    help="train on a seeded sample of N documents (quick runs, tests)")
    ap.add_argument("--max-val-docs", type=int, default=0, metavar="N",
                    help="validate on a seeded sample of N documents")
    cli.add_shape_args(ap, when="with --encoder none: ")
    ap.add_argument("--force", action="store_true", help="train again even if finished")
    ap.add_argument("--train-shared", action="store_true",
                    help="train a run whose training is another variant's to the bit "
                         "(ours-PF-budget at p = 0.9 is ours-P's) instead of taking that "
                         "run's weights")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="torch threads (default: all cores)")
    args = ap.parse_args(argv)
    cli.parse_selection(ap, args)
    cli.default_dirs(args)
    if args.encoder is None:
        args.encoder = os.path.join(args.runs, "pretrain", "encoder")
    if args.encoder.lower() == "none":
        args.encoder = None
    else:  # done.json records it, and evaluate.py may run from elsewhere
        args.encoder = os.path.abspath(args.encoder)
    if args.encoder and not os.path.isfile(os.path.join(args.encoder, "pytorch_model.bin")):
        ap.error(f"no pretrained encoder in '{args.encoder}' (run scripts/pretrain.py, "
                 f"or --encoder none)")
    n = len(args.tasks) * len(args.variants) * len(args.seeds)
    if args.out and n != 1:
        ap.error("--out names one run; give one task, variant and seed")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Seed-major: a whole table of one seed is finished before the next seed starts.
    jobs = [(t, v, s) for s in args.seeds for t in args.tasks for v in args.variants]
    for k, (t, v, s) in enumerate(jobs, 1):
        if len(jobs) > 1:
            progress.log(f"== run {k}/{len(jobs)}: {t}/{v}/seed{s}")
        a = argparse.Namespace(**vars(args))
        a.task, a.variant, a.seed = t, v, s
        task = tasks.TASKS[t]
        a.epochs = task.epochs if args.epochs is None else args.epochs
        a.lr = task.lr if args.lr is None else args.lr
        a.out = args.out or finetune.run_dir(args.runs, t, v, s)
        rc = finetune.run(a)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    procenv.ensure()
    sys.exit(main())
