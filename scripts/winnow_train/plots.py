"""Plots (matplotlib, Agg backend: no display needed)."""

import os
from typing import Dict, List, Optional

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def smooth(values: List[float], k: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if k <= 1 or len(v) < k:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([v[:k - 1].cumsum() / np.arange(1, k), out])


def loss_curve(path: str, title: str, train_steps: List[int], train_loss: List[float],
               val_steps: List[int], val_loss: List[float],
               extra: Optional[Dict[str, tuple]] = None, ylabel: str = "loss") -> None:
    """Training loss (raw, faint, and a moving average) and validation loss
    against the optimiser step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train_loss:
        ax.plot(train_steps, train_loss, color="tab:blue", alpha=0.25, lw=0.8)
        k = max(1, len(train_loss) // 40)
        ax.plot(train_steps, smooth(train_loss, k), color="tab:blue",
                label=f"train (moving average of {k} steps)" if k > 1 else "train")
    if val_loss:
        ax.plot(val_steps, val_loss, "o-", color="tab:red", label="validation")
    for name, (xs, ys) in (extra or {}).items():
        ax.plot(xs, ys, "s--", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
