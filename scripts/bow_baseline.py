#!/usr/bin/python3
"""A bag-of-words floor for the results table: tf-idf + logistic regression.

What a linear model over word counts reaches on the same committed splits
tells how much of a task the transformer rows are getting: a BERT row
below it is undertrained, not a finding about pruning. Words are runs of
letters, lower-cased, kept if at least 2 training documents have them;
each document is a sublinear tf-idf vector (1 + log tf) of unit length,
the whole document (no windows). The L2 weight is chosen on the
validation split from a small grid; the test split is read once, for the
chosen weight. Deterministic: full-batch L-BFGS from zero weights.

Example:
  /usr/bin/python3 scripts/bow_baseline.py --task all
"""

import collections
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import cli, evaluation, metrics, splits, tasks  # noqa: E402

WORD = re.compile(r"[a-z]+")
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
SCALE = 10.0  # unit-length inputs: logits of a useful size at a small weight


def parse_args(argv=None):
    ap = cli.parser(__doc__)
    ap.add_argument("--task", default="all", help="comma-separated tasks or 'all' (default all)")
    cli.add_data_args(ap, vocab=False)
    args = ap.parse_args(argv)
    try:
        args.tasks = tasks.parse_list(args.task, tasks.TASKS, "task")
    except ValueError as e:
        ap.error(str(e))
    cli.default_dirs(args)
    return args


def words(text: str):
    return WORD.findall(text.lower())


class TfIdf:
    """The vocabulary and idf of the training documents."""

    def __init__(self, train_texts):
        df = collections.Counter()
        for t in train_texts:
            df.update(set(words(t)))
        kept = sorted(w for w, c in df.items() if c >= 2)
        self.index = {w: k for k, w in enumerate(kept)}
        n = len(train_texts)
        self.idf = torch.tensor([math.log(n / df[w]) for w in kept])

    def vectors(self, texts) -> torch.Tensor:
        """Sparse rows: a spam split is 40,000 words wide."""
        rows, cols, vals = [], [], []
        for row, t in enumerate(texts):
            entries = [(self.index[w], (1.0 + math.log(c)) * float(self.idf[self.index[w]]))
                       for w, c in collections.Counter(words(t)).items() if w in self.index]
            norm = math.sqrt(sum(v * v for _, v in entries)) or 1.0
            for k, v in entries:
                rows.append(row)
                cols.append(k)
                vals.append(v / norm)
        return torch.sparse_coo_tensor([rows, cols], vals, (len(texts), len(self.index)),
                                       dtype=torch.float32).coalesce()


def fit(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float):
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(SCALE * torch.sparse.mm(x, w) + b, y)
                + l2 * (w ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return lambda z: (SCALE * torch.sparse.mm(z, w) + b).argmax(1).detach()


def run_task(args, task: tasks.Task) -> dict:
    texts = evaluation.load_docs(args.data_root, task.corpus)
    part = {}
    for name in ("train", "validation", "test"):
        rows = splits.read_manifest(args.splits_dir, task.corpus, name)
        part[name] = ([texts[i] for i, _ in rows],
                      torch.tensor([task.labels.index(task.label_of(lab)) for _, lab in rows]))
    tfidf = TfIdf(part["train"][0])
    x = {name: tfidf.vectors(t) for name, (t, _) in part.items()}
    y = {name: lab for name, (_, lab) in part.items()}
    n = len(task.labels)
    best = None
    for l2 in L2_GRID:
        predict = fit(x["train"], y["train"], n, l2)
        val = metrics.scores(y["validation"], predict(x["validation"]), n)
        if best is None or val["macro_f1"] > best[1]["macro_f1"]:
            best = (l2, val, predict)
    l2, val, predict = best
    test = metrics.scores(y["test"], predict(x["test"]), n)
    return dict(task=task.name, words=len(tfidf.index), l2=l2, validation=val, test=test,
                test_documents=len(y["test"]))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    print("| task | words | L2 (from validation) | accuracy % | macro-F1 % | test documents |")
    print("|---|---|---|---|---|---|")
    for name in args.tasks:
        r = run_task(args, tasks.TASKS[name])
        t = r["test"]
        print(f"| {name} | {r['words']:,} | {r['l2']:g} | {100 * t['accuracy']:.2f} | "
              f"{100 * t['macro_f1']:.2f} | {r['test_documents']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
