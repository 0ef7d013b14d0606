"""The models as they are trained: the reference classifier with a batched
pruning decision, BERT's initialisation, and the masked-language-model head
for pretraining.

TrainableWinnow is winnow_ref's WinnowForSequenceClassification (same
modules, same state_dict names, same forward: PAPER.md 1-4) with two
changes for speed:

* the pruning decision of a layer is taken for the whole batch at once in
  torch (f32 importance, vectorised fuzzy sets and ranking) instead of
  window by window in Python doubles. It is the same rule (prune_batch is
  checked against winnow_ref.prune on random scores by
  tests/test_train_tiny.py); the two can differ only where f32 and f64
  importance order two nearly equal scores differently, which matters for
  the engine-equivalence tests (they use the reference itself) but not for
  training. With p = 1.0 no importance is computed at all.
* pruned tokens are dropped, as the C engine drops them (PAPER.md 2, OURS):
  after each decision the kept rows of every window are gathered to the
  front, in position order, and the following layers run on that many rows
  (the most any window of the batch kept). A pruned token is no key, and
  its own state is never read again, so this changes no kept token's state
  (tests/test_train_tiny.py compares the logits with the reference's); it
  makes a pruned layer's training step cost what its kept tokens cost,
  where masking cost the full length.
"""

import os
import sys
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from winnow_ref import prune as ref_prune  # noqa: E402
from winnow_ref.config import WinnowConfig  # noqa: E402
from winnow_ref.model import BertModel, WinnowForSequenceClassification  # noqa: E402

# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: normal(0, 0.02) matrices and embeddings, zero
    biases, LayerNorm 1/0; the combination tokens like embeddings."""
    for name, mod in module.named_modules():
        if isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, 0.0, std)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.Embedding):
            nn.init.normal_(mod.weight, 0.0, std)
        elif isinstance(mod, nn.LayerNorm):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    for name, p in module.named_parameters():
        if name.endswith("combine.tokens"):
            nn.init.normal_(p, 0.0, std)


# ---------------------------------------------------------------------------
# Batched pruning (PAPER.md 2)
# ---------------------------------------------------------------------------


def importance_f32(probs: torch.Tensor, present: torch.Tensor, n: int) -> torch.Tensor:
    """s(j) (PAPER.md 2) in f32 without materialising probs * mask:
    mean over heads and over the present query rows. [B, n], NaN where j is
    not present."""
    rows = present.to(probs.dtype)
    col = torch.einsum("bhij,bi->bj", probs[..., :n], rows)
    s = col / (probs.shape[1] * rows.sum(dim=1, keepdim=True))
    return torch.where(present[:, :n], s, torch.full_like(s, float("nan")))


def prune_batch(kept: torch.Tensor, scores: torch.Tensor, last: torch.Tensor,
                p: float, fuzzy: bool, fuzzy_mode: str) -> torch.Tensor:
    """K_{l+1} for a batch: winnow_ref.prune.leaving_tokens, vectorised.

    kept [B, n] bool; scores [B, n] (any float, NaN off K_l); last [B] the
    position of each window's [SEP] ([CLS] is at 0)."""
    if p >= 1.0:
        return kept
    b, n = kept.shape
    s = scores.to(torch.float64)
    cand = kept.clone()
    cand[:, 0] = False
    cand[torch.arange(b), last] = False
    t = kept.sum(dim=1)
    keep_t = torch.floor(t.to(torch.float64) * p + 1e-6).to(torch.long)
    if fuzzy:
        x = torch.where(cand, s, torch.full_like(s, float("nan")))
        a = torch.nanquantile(x, 0.25, dim=1, keepdim=True)
        bq = torch.nanquantile(x, 0.75, dim=1, keepdim=True)
        span = bq - a
        imp = torch.where(s >= bq, torch.ones_like(s),
                          torch.where(s <= a, torch.zeros_like(s), (s - a) / span))
        unimp = torch.where(s <= a, torch.ones_like(s),
                            torch.where(s >= bq, torch.zeros_like(s), (bq - s) / span))
        protected = (imp >= ref_prune.ALPHA_IMPORTANT) & ~(unimp >= ref_prune.ALPHA_UNIMPORTANT)
        cand = cand & ~protected
    c = cand.sum(dim=1)
    if fuzzy and fuzzy_mode == "within":
        n_leave = c - torch.floor(c.to(torch.float64) * p + 1e-6).to(torch.long)
    elif not fuzzy or fuzzy_mode == "budget":
        n_leave = torch.minimum(t - keep_t, c)
    else:
        raise ValueError(f"unknown fuzzy mode '{fuzzy_mode}'")
    # Rising score, equal scores: the later position first. Sort positions
    # descending, then stably by score.
    key = torch.where(cand, s, torch.full_like(s, float("inf")))
    rev = torch.arange(n - 1, -1, -1, device=kept.device)
    order = rev[torch.sort(key[:, rev], dim=1, stable=True).indices]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=kept.device).expand(b, n).contiguous())
    leave = cand & (rank < n_leave[:, None])
    return kept & ~leave


class TrainableWinnow(WinnowForSequenceClassification):
    """WinnowForSequenceClassification with the batched pruning decision
    (module docstring). Its forward returns logits only."""

    def _pruned_layers(self, h, real, n, out):
        cfg = self.config
        m = cfg.num_combine_tokens
        b = h.shape[0]
        always = torch.ones(b, m, dtype=torch.bool, device=h.device)
        tok, comb = h[:, :n], h[:, n:]
        # Row r of window i holds the token at position pos[i, r]; kept is
        # a prefix of each window's rows (right padding, then compaction).
        pos = torch.arange(n, device=h.device).expand(b, n)
        kept = real
        for layer in self.bert.encoder.layer[:cfg.num_pruned_layers]:
            w = tok.shape[1]
            present = torch.cat([kept, always], dim=1) if m else kept
            x, probs = layer(torch.cat([tok, comb], dim=1) if m else tok, present)
            tok, comb = x[:, :w], x[:, w:]
            if cfg.keep_ratio >= 1.0:
                continue
            with torch.no_grad():
                scores = importance_f32(probs.detach(), present, w)
                last = kept.sum(dim=1) - 1  # [SEP]: the last kept row
                new = prune_batch(kept, scores, last, cfg.keep_ratio,
                                  cfg.fuzzy, cfg.fuzzy_mode)
                counts = new.sum(dim=1)
                width = int(counts.max())
                # Kept rows first, each window's in position order.
                order = torch.sort((~new).to(torch.int8), dim=1, stable=True).indices[:, :width]
                kept = torch.arange(width, device=h.device)[None] < counts[:, None]
            tok = torch.gather(tok, 1, order[:, :, None].expand(-1, -1, tok.shape[2]))
            pos = torch.gather(pos, 1, order)
        if tok.shape[1] == n and cfg.keep_ratio >= 1.0:
            return torch.cat([tok, comb], dim=1) if m else tok, kept
        # Back to position order for the module and head that read K_P:
        # row r to column pos[:, r], padding rows to a spare column n.
        where = torch.where(kept, pos, torch.full_like(pos, n))
        full = tok.new_zeros(b, n + 1, tok.shape[2])
        full = full.scatter(1, where[:, :, None].expand(-1, -1, tok.shape[2]), tok)[:, :n]
        k_full = torch.zeros(b, n + 1, dtype=torch.bool, device=h.device)
        k_full = k_full.scatter(1, where, kept)[:, :n]
        return torch.cat([full, comb], dim=1) if m else full, k_full


# ---------------------------------------------------------------------------
# Masked language model (pretraining)
# ---------------------------------------------------------------------------


class MLMTransform(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class MLMPredictions(nn.Module):
    """Hugging Face's BertLMPredictionHead: dense, gelu, LayerNorm, then the
    decoder tied to the word embeddings, plus a bias."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.transform = MLMTransform(cfg)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))


class MLMHeads(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.predictions = MLMPredictions(cfg)


class BertForMaskedLM(nn.Module):
    """BERT (winnow_ref's modules, Hugging Face names under bert.*) with
    the MLM head (cls.predictions.*). No next-sentence task: RoBERTa showed
    it is not needed, and it would cost a third of a tiny budget."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.cls = MLMHeads(cfg)
        init_bert_weights(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor):
        """Mean cross-entropy over the positions whose label is not -100
        (only those go through the vocabulary projection), and their count."""
        h = self.bert.embeddings(input_ids)
        mask = attention_mask.bool()
        for layer in self.bert.encoder.layer:
            h, _ = layer(h, mask)
        sel = labels != -100
        x = h[sel]
        t = self.cls.predictions.transform
        x = t.LayerNorm(F.gelu(t.dense(x)))
        logits = F.linear(x, self.bert.embeddings.word_embeddings.weight,
                          self.cls.predictions.bias)
        return F.cross_entropy(logits, labels[sel]), int(sel.sum())

    def encoder_state(self) -> Dict[str, torch.Tensor]:
        """bert.embeddings.* and bert.encoder.* (what fine-tuning starts
        from); the pooler is left out, it was never trained."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()
                if k.startswith(("bert.embeddings.", "bert.encoder."))}


def classifier_from_encoder(cfg: WinnowConfig, encoder: Optional[Dict[str, torch.Tensor]],
                            seed: int) -> TrainableWinnow:
    """A classifier of cfg: BERT-initialised from the seed, then the
    pretrained encoder's tensors loaded over it (all of them must fit)."""
    torch.manual_seed(seed)
    model = TrainableWinnow(cfg)
    init_bert_weights(model)
    if encoder:
        own = model.state_dict()
        missing = [k for k in own if k.startswith(("bert.embeddings.", "bert.encoder."))
                   and k not in encoder]
        if missing:
            raise KeyError(f"pretrained encoder lacks '{missing[0]}'")
        for k, v in encoder.items():
            if k not in own:
                raise KeyError(f"pretrained encoder has '{k}', which the classifier lacks")
            if own[k].shape != v.shape:
                raise ValueError(f"pretrained '{k}' has shape {list(v.shape)}, the "
                                 f"classifier needs {list(own[k].shape)}")
        model.load_state_dict(encoder, strict=False)
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` of training, then linear
    decay to 0 at progress 1 (BERT's schedule)."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return progress / warmup
    return max(0.0, (1.0 - progress) / max(1e-9, 1.0 - warmup))


def train_step(model: nn.Module, opt, loss, lr: float) -> None:
    """One optimiser step at learning rate lr: BERT's recipe of gradient
    clipping at norm 1; the gradient buffers are zeroed, not freed, so the
    next step reuses them (procenv.py: fresh pages are slow here)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def seconds(t: float) -> str:
    t = int(round(t))
    return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}" if t >= 3600 else \
        f"{t // 60}:{t % 60:02d}"

