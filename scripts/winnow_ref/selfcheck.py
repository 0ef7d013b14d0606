"""Self-checks of the reference model, runnable alone:

    cd scripts && /usr/bin/python3 -m winnow_ref.selfcheck

They prove the reference against things it does not share code with:
  * the dense path against torch.nn.TransformerEncoderLayer (post-LN, erf
    GELU), i.e. against an independent BERT layer (PAPER.md 4: p = 1.0, no
    combining, cls pooling must be plain BERT);
  * pruning by masking keys against physically dropping the pruned tokens
    (PAPER.md 2, "OURS, the engine's speed"), with every rule variant and
    the combining module;
  * padded batches against windows run alone;
  * the small rules of PAPER.md 2-3 (keep(t, p), fuzzy sets, ties);
  * a training step: gradients reach every parameter the configuration uses;
  * windows, document scores and explanations (PAPER.md 5-6).
Exits non-zero on the first failure.
"""

import dataclasses
import sys
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import document, names, prune
from .config import WinnowConfig
from .model import WinnowForSequenceClassification
from .random_checkpoint import random_state

SMALL = WinnowConfig(vocab_size=200, hidden_size=32, num_hidden_layers=4,
                     num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=64, labels=["a", "b", "c"])


def make_model(cfg: WinnowConfig, seed: int = 0) -> WinnowForSequenceClassification:
    model = WinnowForSequenceClassification(cfg)
    # Large weights give peaked attention: clear pruning decisions, no
    # near-ties that rounding could flip between the two implementations.
    model.load_checkpoint_state(random_state(cfg, seed=seed, std=0.3, bias_std=0.1))
    return model.eval()


def random_windows(gen: torch.Generator, lengths, vocab_size: int):
    """Windows [CLS] x.. [SEP] with ids in 5..vocab_size-1 (101/102 as
    [CLS]/[SEP], as BERT's vocabulary has them)."""
    out = []
    for t in lengths:
        body = torch.randint(105, vocab_size, (t,), generator=gen).tolist()
        out.append([101] + body + [102])
    return out


pad = document.pad


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


# ---------------------------------------------------------------------------
# Dense path vs torch.nn.TransformerEncoderLayer
# ---------------------------------------------------------------------------


def independent_dense_logits(cfg: WinnowConfig, sd: dict, ids, mask, pooling: str):
    """BERT for sequence classification from torch's own encoder layer."""
    d, eps = cfg.hidden_size, cfg.layer_norm_eps
    n = ids.shape[1]
    x = (sd["bert.embeddings.word_embeddings.weight"][ids]
         + sd["bert.embeddings.token_type_embeddings.weight"][0]
         + sd["bert.embeddings.position_embeddings.weight"][:n])
    h = F.layer_norm(x, (d,), sd["bert.embeddings.LayerNorm.weight"],
                     sd["bert.embeddings.LayerNorm.bias"], eps)
    for l in range(cfg.num_hidden_layers):
        p = f"bert.encoder.layer.{l}."
        layer = nn.TransformerEncoderLayer(
            d, cfg.num_attention_heads, cfg.intermediate_size, dropout=0.0,
            activation="gelu", layer_norm_eps=eps, batch_first=True,
            norm_first=False).eval()
        w = {
            "self_attn.in_proj_weight": torch.cat([sd[p + f"attention.self.{x}.weight"]
                                                   for x in ("query", "key", "value")]),
            "self_attn.in_proj_bias": torch.cat([sd[p + f"attention.self.{x}.bias"]
                                                 for x in ("query", "key", "value")]),
            "self_attn.out_proj.weight": sd[p + "attention.output.dense.weight"],
            "self_attn.out_proj.bias": sd[p + "attention.output.dense.bias"],
            "linear1.weight": sd[p + "intermediate.dense.weight"],
            "linear1.bias": sd[p + "intermediate.dense.bias"],
            "linear2.weight": sd[p + "output.dense.weight"],
            "linear2.bias": sd[p + "output.dense.bias"],
            "norm1.weight": sd[p + "attention.output.LayerNorm.weight"],
            "norm1.bias": sd[p + "attention.output.LayerNorm.bias"],
            "norm2.weight": sd[p + "output.LayerNorm.weight"],
            "norm2.bias": sd[p + "output.LayerNorm.bias"],
        }
        layer.load_state_dict(w)
        # torch may take its fused fast path here, which returns padded
        # rows as zeros: harmless, the heads below never read them.
        h = layer(h, src_key_padding_mask=(mask == 0))
    if pooling == "cls":
        pooled = torch.tanh(F.linear(h[:, 0], sd["bert.pooler.dense.weight"],
                                     sd["bert.pooler.dense.bias"]))
    else:
        wm = mask[:, :, None].to(h.dtype)
        pooled = (h * wm).sum(1) / wm.sum(1)
    return F.linear(pooled, sd["classifier.weight"], sd["classifier.bias"])


def check_dense_matches_torch() -> None:
    gen = torch.Generator().manual_seed(1)
    for pooling in ("cls", "mean"):
        cfg = dataclasses.replace(SMALL, pooling=pooling)
        model = make_model(cfg)
        ids, mask = pad(random_windows(gen, [1, 5, 30, 60], cfg.vocab_size))
        with torch.no_grad():
            ours = model(ids, mask)
            theirs = independent_dense_logits(cfg, model.state_dict(), ids, mask, pooling)
        diff = (ours - theirs).abs().max().item()
        check(diff < 2e-5, f"dense {pooling}: differs from nn.TransformerEncoderLayer "
                           f"by {diff:g}")
        print(f"ok   dense path ({pooling}) = nn.TransformerEncoderLayer BERT, "
              f"max diff {diff:.2g}")


# ---------------------------------------------------------------------------
# Masking keys vs physically dropping tokens
# ---------------------------------------------------------------------------


def compact_forward(model: WinnowForSequenceClassification, window):
    """One window, pruned tokens removed from the sequence (the engine's
    way): returns (logits [labels], kept sets as position lists)."""
    cfg = model.config
    n = len(window)
    rows = model.bert.embeddings(torch.tensor([window]))
    if cfg.has_combiner:
        rows = torch.cat([rows, model.winnow.combine.tokens[None]], dim=1)
    pos = list(range(n))
    kept_sets = [list(pos)]
    for layer in model.bert.encoder.layer[:cfg.num_pruned_layers]:
        rows, probs = layer(rows, None)
        s = probs[0].double().mean(dim=1).mean(dim=0)  # over rows, then heads
        scores = {j: float(s[k]) for k, j in enumerate(pos)}
        leaving = set(prune.leaving_tokens(pos, scores, 0, n - 1, cfg.keep_ratio,
                                           cfg.fuzzy, cfg.fuzzy_mode))
        keep = [k for k, j in enumerate(pos) if j not in leaving]
        keep += list(range(len(pos), rows.shape[1]))  # combination tokens
        rows = rows[:, keep]
        pos = [j for j in pos if j not in leaving]
        kept_sets.append(list(pos))
    t = len(pos)
    if cfg.has_combiner:
        c = model.winnow.combine(rows[:, t:], rows[:, :t], torch.ones(1, t, dtype=torch.bool))
        for layer in model.bert.encoder.layer[cfg.combine_layer + 1:]:
            c, _ = layer(c)
        pooled = c.mean(dim=1)
    elif cfg.pooling == "cls":
        pooled = model.bert.pooler(rows)
    else:
        pooled = rows.mean(dim=1)
    return model.classifier(pooled)[0], kept_sets


VARIANTS = [
    dict(keep_ratio=0.7, fuzzy=False, pooling="mean"),
    dict(keep_ratio=0.7, fuzzy=True, fuzzy_mode="budget", pooling="mean"),
    dict(keep_ratio=0.5, fuzzy=True, fuzzy_mode="budget", pooling="cls"),
    dict(keep_ratio=0.6, fuzzy=True, fuzzy_mode="within", pooling="mean"),
    dict(keep_ratio=0.8, fuzzy=True, fuzzy_mode="budget", combine_layer=2, combine_tokens=3),
    dict(keep_ratio=0.6, fuzzy=False, combine_layer=3, combine_tokens=5),
    dict(keep_ratio=1.0, combine_layer=1, combine_tokens=4),
]


def check_masking_equals_dropping() -> None:
    gen = torch.Generator().manual_seed(2)
    windows = random_windows(gen, [0, 1, 2, 3, 9, 25, 61], SMALL.vocab_size)
    ids, mask = pad(windows)
    for v in VARIANTS:
        cfg = dataclasses.replace(SMALL, **v).validate()
        model = make_model(cfg, seed=3)
        with torch.no_grad():
            out = model(ids, mask, return_details=True)
            worst = 0.0
            for b, w in enumerate(windows):
                logits, kept = compact_forward(model, w)
                check(out.kept_positions(b) == kept,
                      f"{v}: window {b}: masked kept sets {out.kept_positions(b)} "
                      f"!= dropped {kept}")
                worst = max(worst, (out.logits[b] - logits).abs().max().item())
        check(worst < 2e-5, f"{v}: masking and dropping differ by {worst:g}")
        sizes = [len(k) for k in out.kept_positions(len(windows) - 1)]
        print(f"ok   masking = dropping for {v}: kept sizes of the longest window "
              f"{sizes}, max diff {worst:.2g}")


def check_kept_set_rules() -> None:
    """Nested sets, [CLS]/[SEP] always kept, the ratio budget respected."""
    gen = torch.Generator().manual_seed(4)
    windows = random_windows(gen, [0, 4, 17, 40, 62], SMALL.vocab_size)
    ids, mask = pad(windows)
    for v in VARIANTS:
        cfg = dataclasses.replace(SMALL, **v).validate()
        with torch.no_grad():
            out = make_model(cfg, seed=5)(ids, mask, return_details=True)
        for b, w in enumerate(windows):
            sets = out.kept_positions(b)
            check(len(sets) == cfg.num_pruned_layers + 1, "one kept set per layer + 1")
            check(sets[0] == list(range(len(w))), "K_0 is the whole window")
            for before, after in zip(sets, sets[1:]):
                check(set(after) <= set(before), "kept sets only shrink")
                check(0 in after and len(w) - 1 in after, "[CLS]/[SEP] are kept")
                if not cfg.fuzzy or cfg.fuzzy_mode == "budget":
                    check(len(after) >= prune.keep_count(len(before), cfg.keep_ratio),
                          "at most t - keep(t, p) leave")
    print("ok   kept sets nest, keep [CLS]/[SEP] and respect the budget")


# ---------------------------------------------------------------------------
# Padding, rules, combiner ties, training
# ---------------------------------------------------------------------------


def check_padding_invariance() -> None:
    gen = torch.Generator().manual_seed(6)
    windows = random_windows(gen, [50, 0, 7, 33, 61, 2], SMALL.vocab_size)
    for v in VARIANTS[:1] + VARIANTS[4:5] + [dict(pooling="cls")]:
        cfg = dataclasses.replace(SMALL, **v).validate()
        model = make_model(cfg, seed=7)
        with torch.no_grad():
            batch = model(*pad(windows), return_details=True)
            for b, w in enumerate(windows):
                alone = model(*pad([w]), return_details=True)
                diff = (batch.logits[b] - alone.logits[0]).abs().max().item()
                check(diff < 1e-5, f"{v}: window {b} padded differs by {diff:g}")
                check(batch.kept_positions(b) == alone.kept_positions(0),
                      f"{v}: window {b}: padding changed the kept sets")
    print("ok   padded batches = windows alone (logits and kept sets)")


def check_rules() -> None:
    check(prune.keep_count(90, 0.7) == 63, "keep(90, 0.7) must be 63")
    for t in range(0, 513):
        for p10k in range(1, 10001, 37):
            p = p10k / 10000
            exact = (Fraction(t) * Fraction(p10k, 10000)).__floor__()
            check(prune.keep_count(t, p) == exact, f"keep({t}, {p}) != {exact}")
    check(prune.quantile([1.0, 2.0, 3.0, 4.0], 0.25) == 1.75, "quantile interpolation")
    # a = b: I - U = {s > a}; only scores above the common quartile are safe.
    s = {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.9}
    check(prune.fuzzy_candidates([1, 2, 3, 4], s) == [1, 2, 3], "a = b limit")
    # Fuzzy sets, against numpy's quantiles and the algebra of PAPER.md 2:
    # (I - U)^c = {s <= a + 0.1 (b - a)} when a < b.
    rng = np.random.default_rng(0)
    for size in (2, 3, 4, 7, 50, 300):
        vals = rng.random(size)
        a, b = np.quantile(vals, 0.25), np.quantile(vals, 0.75)
        cut = a + 0.1 * (b - a)
        want = [j for j in range(size) if vals[j] <= cut]
        got = prune.fuzzy_candidates(list(range(size)), dict(enumerate(vals.tolist())))
        check(got == want, f"fuzzy candidates of {size} scores: {got} != {want}")
    # Ties: the later position leaves first.
    s = {0: 9.0, 1: 0.1, 2: 0.1, 3: 0.1, 4: 9.0}
    check(prune.leaving_tokens([0, 1, 2, 3, 4], s, 0, 4, 0.6, False, "budget") == [3, 2],
          "equal scores: later position leaves first")
    # within: c - keep(c, p) of the candidates leave.
    s = {j: float(j) for j in range(12)}
    left = prune.leaving_tokens(list(range(12)), s, 0, 11, 0.9, True, "within")
    cands = prune.fuzzy_candidates(list(range(1, 11)), s)
    check(len(left) == len(cands) - prune.keep_count(len(cands), 0.9), "within count")
    print("ok   keep(t, p) exact for 4-decimal p, quantiles, fuzzy cut, a = b, ties, within")


def check_budget_reading_is_ratio_pruning_at_09() -> None:
    """PAPER.md 2, reading A at p = 0.9 is ours-P, for every window.

    Why it must hold: (I - U)^c is a lower set of the scores that holds every
    candidate with s <= a = Q(0.25), at least floor((c - 1) / 4) + 1 of the
    c = t - 2 candidates; the budget t - keep(t, 0.9) never exceeds that for
    t >= 3. So the budget is spent on the same lowest-scored tokens with or
    without the fuzzy rule. The results table relies on it (its
    ours-PF-budget row repeats ours-P's computation, docs/results.md); ties
    and tiny windows are where a counting slip would show."""
    rng = np.random.default_rng(9)
    for t in range(3, 513):
        for trial in range(4):
            if trial == 0:
                vals = np.full(t, 0.5)           # all equal: a = b
            elif trial == 1:
                vals = rng.integers(0, 3, t) / 4.0  # heavy ties
            else:
                vals = rng.random(t)
            s = dict(enumerate(vals.tolist()))
            kept = list(range(t))
            plain = prune.leaving_tokens(kept, s, 0, t - 1, 0.9, False, "budget")
            fuzzy = prune.leaving_tokens(kept, s, 0, t - 1, 0.9, True, "budget")
            check(plain == fuzzy, f"t = {t}, trial {trial}: reading A at p = 0.9 left "
                  f"{fuzzy}, ours-P {plain}")
    print("ok   reading A at p = 0.9 prunes as ours-P does, every t in 3..512, ties included")


def check_combiner_ties() -> None:
    cfg = dataclasses.replace(SMALL, combine_layer=2, combine_tokens=4).validate()
    comb = make_model(cfg).winnow.combine
    with torch.no_grad():
        comb.q.weight.zero_()
        comb.q.bias.zero_()  # all logits 0: every token ties
        c, e = torch.randn(1, 4, 32), torch.randn(1, 6, 32)
        ha = comb.hard_assignment(comb.assignment_logits(c, e))
        check(ha[0, 0].sum().item() == 6 and ha[0, 1:].sum().item() == 0,
              "ties must go to the lowest combination token")
        out = comb(c, e, torch.ones(1, 6, dtype=torch.bool))
        empty = c[0, 1:] + comb.o.bias
        check(torch.allclose(out[0, 1:], empty, atol=1e-6),
              "an empty group adds only Wo's bias")
    print("ok   combiner: ties to the lowest i, empty groups add Wo's bias")


def check_training_step() -> None:
    cfg = dataclasses.replace(SMALL, keep_ratio=0.7, combine_layer=2,
                              combine_tokens=3).validate()
    model = make_model(cfg).train()
    torch.manual_seed(8)
    ids, mask = pad(random_windows(torch.Generator().manual_seed(9), [5, 30], cfg.vocab_size))
    loss = F.cross_entropy(model(ids, mask), torch.tensor([0, 2]))
    loss.backward()
    grads = dict(model.named_parameters())
    for name in names.required_hf_names(cfg):
        g = grads[name].grad
        check(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0,
              f"training: no gradient reaches '{name}'")
    print("ok   training step: Gumbel + straight-through, gradients reach every used tensor")


def check_documents() -> None:
    tokens = list(range(1000, 1037))
    for overlap in (0, 3):
        ws = document.make_windows(tokens, 10, 101, 102, overlap=overlap)
        check(all(w.ids[0] == 101 and w.ids[-1] == 102 and len(w.ids) <= 10 for w in ws),
              "windows are [CLS] ..8 tokens.. [SEP]")
        check([w.start for w in ws] == list(range(0, 37 - overlap - 1, 8 - overlap)),
              f"window starts with overlap {overlap}")
        seen = [t for w in ws for t in w.ids[1:-1]]
        check(sorted(set(seen)) == tokens, "windows cover every token")
        check(overlap or seen == tokens, "without overlap each token once, in order")
    check([w.ids for w in document.make_windows([], 10, 101, 102)] == [[101, 102]],
          "an empty document is one window [CLS] [SEP]")

    cfg = dataclasses.replace(SMALL, keep_ratio=0.7, max_seq_len=20).validate()
    model = make_model(cfg, seed=10)
    gen = torch.Generator().manual_seed(11)
    doc = torch.randint(105, cfg.vocab_size, (45,), generator=gen).tolist()
    res = document.classify_document(model, doc, 101, 102, top_k=None)
    check(res.chunks == 3 and not res.truncated, "45 tokens make 3 windows of 18")
    ws = document.make_windows(doc, 20, 101, 102)
    with torch.no_grad():
        probs = [torch.softmax(model(torch.tensor([w.ids]))[0], -1) for w in ws]
    mean = torch.stack(probs).mean(0)
    check(torch.allclose(torch.tensor(res.probs), mean, atol=1e-6), "document = mean of windows")
    check(all(0 <= i < 45 for i, _ in res.retained), "retained tokens are text tokens")
    scores = [s for _, s in res.retained]
    check(scores == sorted(scores, reverse=True), "retained tokens best first")
    check(len(res.retained) < 45, "pruning leaves fewer retained tokens than text tokens")
    cut = document.classify_document(model, doc, 101, 102, truncate=True, top_k=1)
    check(cut.chunks == 1 and cut.truncated and len(cut.retained) == 1, "truncation, top_k")
    print(f"ok   documents: windows, overlap, mean of windows, {len(res.retained)} retained "
          f"tokens ranked, truncation reported")


def main() -> int:
    torch.set_num_threads(2)
    checks = [check_rules, check_budget_reading_is_ratio_pruning_at_09,
              check_dense_matches_torch, check_padding_invariance,
              check_masking_equals_dropping, check_kept_set_rules,
              check_combiner_ties, check_training_step, check_documents]
    for c in checks:
        try:
            c()
        except AssertionError as e:
            print(f"FAIL {c.__name__}: {e}", file=sys.stderr)
            return 1
    print(f"selfcheck: {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
