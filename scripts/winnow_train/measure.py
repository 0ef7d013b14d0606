"""Time training steps of the chosen shape on this machine (the figures in
docs/training.md come from here):

    cd scripts && /usr/bin/python3 -m winnow_train.measure [--steps 3]

For each case: the median wall time of a training step (forward, backward,
AdamW) after one warm-up step, and the CPU time per step divided by the
threads, which is what the step would take on an idle machine when the
neighbours slow the wall clock down. The load average is printed too.
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from winnow_train import batching, procenv, runstate  # noqa: E402
from winnow_train.mlm import Shape  # noqa: E402
from winnow_train.model import BertForMaskedLM, TrainableWinnow, init_bert_weights  # noqa: E402

CASES = [
    # name, kind, batch, seq, overrides
    ("MLM pretraining", "mlm", 32, 128, {}),
    ("fine-tune bert", "cls", 16, 512, {}),
    ("fine-tune ours-PF (p 0.9)", "cls", 16, 512, dict(keep_ratio=0.9)),
    ("fine-tune ours-PFC-P3", "cls", 16, 512, dict(keep_ratio=0.9, combine_layer=3)),
    ("fine-tune ours-PFC-P5", "cls", 16, 512, dict(keep_ratio=0.9, combine_layer=5)),
    ("fine-tune bert, seq 256", "cls", 16, 256, {}),
]


def time_case(shape: Shape, kind, batch, seq, over, steps, threads):
    cfg = shape.config(30522, attention_probs_dropout_prob=0.0, **over)
    torch.manual_seed(0)
    model = BertForMaskedLM(cfg) if kind == "mlm" else TrainableWinnow(cfg)
    init_bert_weights(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)  # as training
    ids = torch.randint(batching.FIRST_REAL_TOKEN, 30522, (batch, seq))
    mask = torch.ones_like(ids)
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (batch,))
    walls, cpus = [], []
    for i in range(steps + 1):
        t0, c0 = time.monotonic(), runstate.cpu_seconds()
        if kind == "mlm":
            m_ids, labels = batching.mask_tokens(ids, mask, gen, 30522)
            loss, _ = model(m_ids, mask, labels)
        else:
            loss = F.cross_entropy(model(ids, mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up allocators and OpenBLAS
            walls.append(time.monotonic() - t0)
            cpus.append((runstate.cpu_seconds() - c0) / threads)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--layers", type=int, default=Shape.layers)
    ap.add_argument("--hidden", type=int, default=Shape.hidden)
    ap.add_argument("--heads", type=int, default=Shape.heads)
    ap.add_argument("--intermediate", type=int, default=Shape.intermediate)
    ap.add_argument("--cases", default="all", help="comma-separated case numbers (1-based) or all")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = Shape(args.layers, args.hidden, args.heads, args.intermediate)
    pick = range(len(CASES)) if args.cases == "all" else [int(x) - 1 for x in args.cases.split(",")]
    print(f"shape {shape.layers}x{shape.hidden} ({shape.heads} heads, ffn {shape.intermediate}), "
          f"{args.threads} threads, load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'case':30s} {'batch':>9s} {'wall s/step':>12s} {'cpu/threads':>12s}")
    for k in pick:
        name, kind, batch, seq, over = CASES[k]
        wall, cpu = time_case(shape, kind, batch, seq, over, args.steps, args.threads)
        print(f"{name:30s} {batch:>4d}x{seq:<4d} {wall:12.2f} {cpu:12.2f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    procenv.ensure()
    sys.exit(main())
