"""Peak memory of one training step of each variant, the quantity the
paper's Table 3 reports (0.61x of BERT for ours-PFC at its layer 7), for
docs/performance.md:

    cd scripts && /usr/bin/python3 -m winnow_train.memory [--batch 8 --seq 512]

Each variant runs in a fresh process (peak RSS cannot be reset): the model
(bert-base shape by default, random weights), AdamW, then one step
(forward, backward, optimiser) on random ids of the full length. Printed
per variant: the resident set after building the model, the peak after the
step, their difference (activations and gradients and optimiser state, of
which the activations differ between variants), and both as a ratio to
dense BERT. The engine's inference memory is a different question
(docs/performance.md, Memory): there only the largest layer's activations
are alive at once.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = [
    # name, config overrides (12 layers: the paper's placements, 0-based)
    ("bert", {}),
    ("ours-P", dict(keep_ratio=0.9, fuzzy=False)),
    ("ours-PF", dict(keep_ratio=0.9)),
    ("ours-C (layer 10)", dict(combine_layer=10)),
    ("ours-PFC (layer 10)", dict(keep_ratio=0.9, combine_layer=10)),
    ("ours-PFC (layer 6)", dict(keep_ratio=0.9, combine_layer=6)),
]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def one(args) -> dict:
    import torch
    import torch.nn.functional as F

    from winnow_train import batching
    from winnow_train.mlm import Shape
    from winnow_train.model import TrainableWinnow, init_bert_weights

    torch.set_num_threads(args.threads)
    name, over = VARIANTS[args.one]
    shape = Shape(args.layers, args.hidden, args.heads, args.intermediate)
    cfg = shape.config(30522, attention_probs_dropout_prob=0.0, combine_tokens=8, **over)
    torch.manual_seed(0)
    model = TrainableWinnow(cfg)
    init_bert_weights(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    ids = torch.randint(batching.FIRST_REAL_TOKEN, 30522, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    y = torch.randint(0, 2, (args.batch,))
    base = rss_mb()
    loss = F.cross_entropy(model(ids, mask), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB -> MB (approx.)
    return {"variant": name, "base_mb": base, "peak_mb": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=3072)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args)))
        return 0

    print(f"one training step, {args.layers}x{args.hidden} ({args.heads} heads), "
          f"batch {args.batch} x {args.seq}, {args.threads} threads, m = 8")
    print(f"{'variant':22s} {'model MB':>9s} {'peak MB':>9s} {'step MB':>9s} "
          f"{'peak/bert':>10s} {'step/bert':>10s}")
    bert = None
    for k in range(len(VARIANTS)):
        cmd = [sys.executable, "-m", "winnow_train.memory", "--one", str(k)]
        for opt in ("batch", "seq", "threads", "layers", "hidden", "heads", "intermediate"):
            cmd += [f"--{opt}", str(getattr(args, opt))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        step = r["peak_mb"] - r["base_mb"]
        if bert is None:
            bert = (r["peak_mb"], step)
        print(f"{r['variant']:22s} {r['base_mb']:9.0f} {r['peak_mb']:9.0f} {step:9.0f} "
              f"{r['peak_mb'] / bert[0]:10.2f} {step / bert[1]:10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    from winnow_train import procenv
    procenv.ensure()
    sys.exit(main())
