"""Accuracy, macro-F1 and micro-F1 of single-label predictions."""

from typing import Dict, List, Sequence

import numpy as np


def scores(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> Dict[str, float]:
    """accuracy; macro-F1 (the unweighted mean of the per-class F1 over all
    n_classes; a class never predicted and never true would count 0, but
    every class has test documents here); micro-F1 (from the pooled counts:
    equal to accuracy for single-label data, reported because the paper's
    tables use it)."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    f1s = []
    tp_all = fp_all = fn_all = 0
    for c in range(n_classes):
        tp = int(((p == c) & (t == c)).sum())
        fp = int(((p == c) & (t != c)).sum())
        fn = int(((p != c) & (t == c)).sum())
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    micro_denom = 2 * tp_all + fp_all + fn_all
    return {"accuracy": float((t == p).mean()) if len(t) else 0.0,
            "macro_f1": float(np.mean(f1s)),
            "micro_f1": 2 * tp_all / micro_denom if micro_denom else 0.0,
            "per_class_f1": f1s}


def mean_std(values: List[float]):
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
