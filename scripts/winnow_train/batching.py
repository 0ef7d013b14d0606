"""Windows of token ids, length-bucketed batches and MLM masking.

A window is a numpy int32 array of text token ids (no [CLS]/[SEP]); a batch
is padded to its longest window only, and windows of similar length are
batched together (shuffled within buckets, then the batches shuffled), so
that short mails do not pay for 512 positions.
"""

import random
from typing import List, Sequence, Tuple

import numpy as np
import torch

# bert-base-uncased: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103;
# ids below 999 are [unusedN] and specials, never drawn as random tokens.
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
FIRST_REAL_TOKEN = 999


def special_ids(vocab: Sequence[str]):
    """(PAD, CLS, SEP, MASK) ids of a vocabulary."""
    index = {t: i for i, t in enumerate(vocab)}
    return index["[PAD]"], index["[CLS]"], index["[SEP]"], index["[MASK]"]


def split_windows(ids: np.ndarray, width: int, policy: str = "all",
                  min_len: int = 1, max_windows: int = 0) -> List[np.ndarray]:
    """Consecutive pieces of at most `width` tokens (PAPER.md 6's windows
    without overlap), at most max_windows of them (0: all); policy "first"
    keeps only the first (PAPER.md 7: the first 512 tokens). Pieces shorter
    than min_len are dropped, except the first (a short document is still a
    document)."""
    if policy == "first":
        return [ids[:width]]
    out = [ids[i:i + width] for i in range(0, max(1, len(ids)), width)]
    out = [w for k, w in enumerate(out) if k == 0 or len(w) >= min_len]
    return out[:max_windows] if max_windows else out


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                     bucket_batches: int = 50) -> List[List[int]]:
    """Index batches: shuffle, cut into pools of bucket_batches batches,
    sort each pool by length, batch it, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * bucket_batches
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i:i + pool], key=lambda k: lengths[k])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sequential_batches(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    """Deterministic batches for evaluation: sorted by length."""
    order = sorted(range(len(lengths)), key=lambda k: lengths[k])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]


def pad_windows(windows: List[np.ndarray], cls_id: int = CLS, sep_id: int = SEP,
                pad_id: int = PAD) -> Tuple[torch.Tensor, torch.Tensor]:
    """[CLS] w [SEP], right-padded: (input_ids, attention_mask) [B, n]."""
    n = max(len(w) for w in windows) + 2
    ids = torch.full((len(windows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), n), dtype=torch.long)
    for b, w in enumerate(windows):
        k = len(w)
        ids[b, 0] = cls_id
        ids[b, 1:k + 1] = torch.from_numpy(np.asarray(w, dtype=np.int64))
        ids[b, k + 1] = sep_id
        mask[b, :k + 2] = 1
    return ids, mask


def mask_tokens(ids: torch.Tensor, attention_mask: torch.Tensor, gen: torch.Generator,
                vocab_size: int, mask_id: int = MASK, rate: float = 0.15):
    """BERT's masking: `rate` of the text tokens (not [CLS]/[SEP]/padding,
    at least one per window) are predicted; of those 80% become [MASK], 10%
    a random token, 10% stay. Returns (masked ids, labels with -100 where
    nothing is predicted)."""
    b, n = ids.shape
    lengths = attention_mask.sum(dim=1)
    pos = torch.arange(n)[None, :]
    text = (pos >= 1) & (pos < (lengths - 1)[:, None])
    chosen = (torch.rand((b, n), generator=gen) < rate) & text
    # At least one prediction per window with any text.
    none = ~chosen.any(dim=1) & text.any(dim=1)
    if none.any():
        pick = (torch.rand((b, n), generator=gen) * text).argmax(dim=1)
        chosen[none, pick[none]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand((b, n), generator=gen)
    out = ids.clone()
    out[chosen & (roll < 0.8)] = mask_id
    rnd = chosen & (roll >= 0.8) & (roll < 0.9)
    out[rnd] = torch.randint(FIRST_REAL_TOKEN, vocab_size, (int(rnd.sum()),), generator=gen)
    return out, labels
