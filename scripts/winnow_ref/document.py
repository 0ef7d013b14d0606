"""Documents: windows, per-document scores and explanations (PAPER.md 5-6),
in the reference.

A document is its WordPiece ids without [CLS]/[SEP] (the tokenizer's
output). It is cut into windows of at most max_seq_len - 2 text tokens, each
wrapped in its own [CLS] ... [SEP] and classified alone; the document's
scores are the mean (or the max) of the windows' probabilities. Its
explanation is the retained tokens of every window (the last kept set less
[CLS]/[SEP]), ranked by their importance in the last pruned layer.

Token positions here are document token indices (0 = the first text token),
which the caller maps to byte spans with the tokenizer's offsets.
"""

from dataclasses import dataclass, field
from typing import List, Optional

import torch

from .model import WinnowForSequenceClassification

AGGREGATIONS = ("mean", "max")


@dataclass
class Window:
    start: int        # document index of the window's first text token
    ids: List[int]    # [CLS] text.. [SEP]


def make_windows(tokens: List[int], max_seq_len: int, cls_id: int, sep_id: int,
                 overlap: int = 0, truncate: bool = False) -> List[Window]:
    """Windows of at most max_seq_len - 2 text tokens, consecutive windows
    sharing `overlap` tokens (default none); with truncate, only the first
    (PAPER.md 6: never truncated silently, so the caller reports it). An
    empty document is one window [CLS] [SEP]."""
    width = max_seq_len - 2
    if width < 1:
        raise ValueError(f"max_seq_len {max_seq_len} leaves no room for text")
    if not 0 <= overlap < width:
        raise ValueError(f"overlap {overlap} must be in 0..{width - 1}")
    stride = width - overlap
    windows, start = [], 0
    while True:
        body = tokens[start:start + width]
        windows.append(Window(start, [cls_id] + body + [sep_id]))
        if truncate or start + width >= len(tokens):
            return windows
        start += stride


@dataclass
class DocumentResult:
    probs: List[float]                 # the document's scores, one per label
    label: int                         # argmax of probs, lowest index on ties
    window_probs: List[List[float]]
    retained: List[tuple] = field(default_factory=list)  # (doc index, score), best first
    chunks: int = 0
    truncated: bool = False            # True when tokens were left unread
    kept: List[int] = field(default_factory=list)  # |K_l| for l = 0..P, summed over windows


def classify_document(model: WinnowForSequenceClassification, tokens: List[int],
                      cls_id: int, sep_id: int, *, overlap: int = 0,
                      aggregate: str = "mean", truncate: bool = False,
                      top_k: Optional[int] = None, batch: int = 8) -> DocumentResult:
    """Classifies one document with the reference (in eval mode)."""
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{aggregate}'")
    windows = make_windows(tokens, model.config.window_len, cls_id, sep_id, overlap, truncate)
    window_probs, retained, kept = [], {}, []
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            chunk = windows[i:i + batch]
            out = model(*pad([w.ids for w in chunk]), return_details=True)
            window_probs += torch.softmax(out.logits, dim=-1).tolist()
            counts = [int(k.sum()) for k in out.kept]  # padding is never in K_l
            kept = [a + b for a, b in zip(kept, counts)] if kept else counts
            for b, w in enumerate(chunk):
                for index, score in window_retained(out, b, w):
                    # Overlapping windows see a token twice: keep its best score.
                    retained[index] = max(score, retained.get(index, score))
    probs = _aggregate(window_probs, aggregate)
    ranked = sorted(retained.items(), key=lambda kv: (-kv[1], kv[0]))
    return DocumentResult(
        probs=probs, label=max(range(len(probs)), key=lambda k: (probs[k], -k)),
        window_probs=window_probs, retained=ranked[:top_k] if top_k else ranked,
        chunks=len(windows), kept=kept,
        truncated=windows[-1].start + len(windows[-1].ids) - 2 < len(tokens))


def window_retained(out, b: int, w: Window) -> List[tuple]:
    """PAPER.md 5: the last kept set less [CLS] and [SEP], with the last
    pruned layer's importance, as (document index, score)."""
    last_kept = out.kept_positions(b)[-1]
    scores = out.scores[-1][b]
    n = len(w.ids)
    return [(w.start + j - 1, float(scores[j])) for j in last_kept if 0 < j < n - 1]


def _aggregate(window_probs: List[List[float]], how: str) -> List[float]:
    """Mean of the windows' probabilities, or their per-label max (not
    renormalised)."""
    cols = list(zip(*window_probs))
    if how == "mean":
        return [sum(c) / len(c) for c in cols]
    return [max(c) for c in cols]


def pad(windows: List[List[int]]):
    """A batch of windows of token ids -> (ids, attention mask), padded with
    id 0 to the longest window."""
    n = max(len(w) for w in windows)
    ids = torch.zeros(len(windows), n, dtype=torch.long)
    mask = torch.zeros(len(windows), n, dtype=torch.long)
    for b, w in enumerate(windows):
        ids[b, :len(w)] = torch.tensor(w)
        mask[b, :len(w)] = 1
    return ids, mask
