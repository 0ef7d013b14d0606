"""The pruning decision of one window in one layer (PAPER.md 2), in plain
Python floats (IEEE doubles), one window at a time.

Written as a list of small steps that follow PAPER.md's text, so that the C
engine's model/prune.c can be checked against it line by line. The inputs
are the importance scores s(j) of the tokens still kept (computed by
model.importance_scores, in double from the f32 attention probabilities);
the output is the positions that leave the kept set.
"""

import math
from typing import Dict, List, Sequence

# Alpha-cuts of the fuzzy sets (PAPER.md 2: I at 0.01, U at 0.9).
ALPHA_IMPORTANT = 0.01
ALPHA_UNIMPORTANT = 0.9


def keep_count(t: int, p: float) -> int:
    """keep(t, p) = floor(t * p + 1e-6), in double (PAPER.md 2, Budget): the
    epsilon makes e.g. keep(90, 0.7) = 63 where floor(90 * 0.7) gives 62."""
    return math.floor(float(t) * float(p) + 1e-6)


def quantile(values: Sequence[float], q: float) -> float:
    """Quantile with linear interpolation between order statistics, the
    default of numpy.quantile and torch.quantile (PAPER.md 2, Fuzzy sets)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (pos - lo) * (xs[hi] - xs[lo])


def importance_membership(s: float, a: float, b: float) -> float:
    """Importance(s), PAPER Eq. 6; the a = b limit is 1[s >= b]."""
    if s >= b:
        return 1.0
    if s <= a:
        return 0.0
    return (s - a) / (b - a)


def unimportance_membership(s: float, a: float, b: float) -> float:
    """Unimportance(s), PAPER Eq. 7; the a = b limit is 1[s <= a]."""
    if s <= a:
        return 1.0
    if s >= b:
        return 0.0
    return (b - s) / (b - a)


def fuzzy_candidates(candidates: List[int], scores: Dict[int, float]) -> List[int]:
    """The pruning candidates under the fuzzy rule: (I - U)^c, where
    a = Q(0.25) and b = Q(0.75) of the candidates' scores (PAPER.md 2).
    Tokens in I - U (clearly important) are protected."""
    if not candidates:
        return []
    vals = [scores[j] for j in candidates]
    a, b = quantile(vals, 0.25), quantile(vals, 0.75)
    out = []
    for j in candidates:
        s = scores[j]
        in_i = importance_membership(s, a, b) >= ALPHA_IMPORTANT
        in_u = unimportance_membership(s, a, b) >= ALPHA_UNIMPORTANT
        if not (in_i and not in_u):
            out.append(j)
    return out


def budget_rule_binds_at(p: float, max_kept: int) -> int:
    """The smallest kept count t (3 <= t <= max_kept) at which reading A's
    fuzzy rule could let fewer tokens leave than ours-P at the same p; 0 if
    there is none, and then ours-PF-budget prunes exactly as ours-P does.

    Why: every candidate scored at or below a = Q(0.25) has Unimportance 1
    >= ALPHA_UNIMPORTANT, so it is never protected, and of c candidates at
    least floor((c - 1) / 4) + 1 lie there (the interpolated quantile is at
    least the order statistic at floor((c - 1) / 4)). The protected tokens
    are an upper set of the scores (Importance rises with s, Unimportance
    falls), so whenever that many reach ours-P's number of leavers, ours-P's
    lowest-scored leavers are all fuzzy candidates, in the same order. At p
    = 0.9 and windows of up to 512 tokens, that is every t.
    """
    if p >= 1.0:
        return 0
    for t in range(3, max_kept + 1):
        c = t - 2  # all but [CLS] and [SEP]
        leave = min(t - keep_count(t, p), c)
        if (c - 1) // 4 + 1 < leave:
            return t
    return 0


def lowest_first(positions: List[int], scores: Dict[int, float]) -> List[int]:
    """Positions by rising score; equal scores: the later position first
    (PAPER.md 2, "the later position leaves first")."""
    return sorted(positions, key=lambda j: (scores[j], -j))


def leaving_tokens(kept: List[int], scores: Dict[int, float], first: int,
                   last: int, p: float, fuzzy: bool, fuzzy_mode: str) -> List[int]:
    """The positions that leave K_l after layer l (K_{l+1} = K_l minus them).

    kept: the positions of K_l (embedded tokens only, combination tokens are
    never pruned); scores: s(j) for each j in kept; first, last: the
    positions of the window's [CLS] and [SEP], never pruned; p: the keep
    ratio; fuzzy/fuzzy_mode: the rule (PAPER.md 2).
    """
    t = len(kept)
    if p >= 1.0:
        return []  # PAPER.md 2: p = 1.0 disables pruning
    candidates = [j for j in kept if j != first and j != last]
    if not fuzzy:
        # ours-P: every non-special kept token is a candidate, same budget.
        n_leave = min(t - keep_count(t, p), len(candidates))
    elif fuzzy_mode == "budget":
        # Reading A: the ratio budget, spent only on (I - U)^c.
        candidates = fuzzy_candidates(candidates, scores)
        n_leave = min(t - keep_count(t, p), len(candidates))
    elif fuzzy_mode == "within":
        # Reading B: the ratio applied inside (I - U)^c.
        candidates = fuzzy_candidates(candidates, scores)
        c = len(candidates)
        n_leave = c - keep_count(c, p)
    else:
        raise ValueError(f"unknown fuzzy mode '{fuzzy_mode}'")
    return lowest_first(candidates, scores)[:n_leave]
