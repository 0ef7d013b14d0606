"""The PyTorch reference of winnow's classifier: BERT with fuzzy token
pruning and a token combining module (PAPER.md, the project's normative
reading of the paper, sections 1-6, which this file follows section by
section).

The module tree, and so the state_dict, uses exactly Hugging Face's
BertForSequenceClassification names (bert.embeddings.*, bert.encoder.layer.N.*,
bert.pooler.dense.*, classifier.*) plus winnow's own winnow.combine.*
(DESIGN.md, "Checkpoint names"). With p = 1.0, no combining module and `cls`
pooling the forward pass is Hugging Face's BertForSequenceClassification in
eval mode: post-LN layers, erf GELU, attention scaled by 1/sqrt(d/H),
token types all 0, positions 0..n-1.

Pruning is done by masking keys: a pruned token stops being a key (and a
value) for every query, its own row is still computed but never read again.
This is exactly the engine's physical dropping (PAPER.md 2, "OURS, the
engine's speed"): the importance means only over the rows still present,
and the combining module and the mean head read only kept tokens.

Sections 5-6 (explanations, windows of long documents) are in
document.py; the pruning rule itself (PAPER.md 2) is in prune.py.

Shapes: B windows, n embedded positions (padded), m combination tokens,
N = n + m rows in the pruned layers, d hidden, H heads.
"""

import math
from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import names
from . import prune
from .config import WinnowConfig

# ---------------------------------------------------------------------------
# BERT's modules, with Hugging Face's names
# ---------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """PAPER.md 1: word + position + token type (always 0), LayerNorm."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        d = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        positions = torch.arange(n, device=input_ids.device)
        token_types = torch.zeros_like(input_ids)
        # Hugging Face's order of the sums, so that the rounding is the same.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_types)
        x = x + self.position_embeddings(positions)[None]
        return self.dropout(self.LayerNorm(x))


def additive_key_mask(key_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, N] bool (True = may be attended) -> [B, 1, 1, N] to add to the
    attention scores, as Hugging Face builds it (0 or the dtype's minimum),
    so that a masked key gets probability exactly 0."""
    m = key_mask[:, None, None, :].to(dtype)
    return (1.0 - m) * torch.finfo(dtype).min


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.head_size
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, h: torch.Tensor, key_mask: Optional[torch.Tensor]):
        """Returns the context [B, N, d] and the attention probabilities
        [B, H, N, N] before dropout (the importance reads them, PAPER.md 2)."""
        q = self._heads(self.query(h))
        k = self._heads(self.key(h))
        v = self._heads(self.value(h))
        # PAPER.md 2: BERT's scaling sqrt(d/H), not the paper's sqrt(d).
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        if key_mask is not None:
            scores = scores + additive_key_mask(key_mask, scores.dtype)
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(self.dropout(probs), v)
        b, _, n, _ = ctx.shape
        return ctx.permute(0, 2, 1, 3).reshape(b, n, -1), probs


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, h, key_mask):
        ctx, probs = self.self(h, key_mask)
        return self.output(ctx, h), probs


class BertIntermediate(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # the erf form, as BERT's "gelu"


class BertOutput(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    """One post-LN BERT layer. key_mask [B, N] says which rows are keys and
    values (None: all); returns the new states and the attention
    probabilities."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, h, key_mask=None):
        a, probs = self.attention(h, key_mask)
        return self.output(self.intermediate(a), a), probs


class BertEncoder(nn.Module):
    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))


class BertPooler(nn.Module):
    """BERT's pooler: tanh(dense([CLS]))."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    """Holds the modules; WinnowForSequenceClassification runs them, since
    pruning and combining sit between the layers. The pooler and layer P
    always exist so that any Hugging Face checkpoint loads; they are unused
    when the configuration does not need them."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)


# ---------------------------------------------------------------------------
# winnow's modules
# ---------------------------------------------------------------------------


class CombiningModule(nn.Module):
    """The token combining module (PAPER.md 3, PAPER Eq. 9-11): each kept
    token is assigned to one of the m combination tokens, which each add the
    projected mean of the tokens assigned to them."""

    # Eq. 11's denominator epsilon (OURS, PAPER.md 3): an empty group adds
    # just Wo's bias instead of dividing by zero.
    EPS = 1e-6

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        d = cfg.hidden_size
        self.tokens = nn.Parameter(torch.zeros(cfg.combine_tokens, d))
        self.ln_c = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ln_e = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def assignment_logits(self, c: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """(LN_c(C_i) Wq) . (LN_e(E_j) Wk) / sqrt(d): [B, m, n]."""
        q = self.q(self.ln_c(c))
        k = self.k(self.ln_e(e))
        return torch.matmul(q, k.transpose(1, 2)) / math.sqrt(c.shape[-1])

    def hard_assignment(self, logits: torch.Tensor) -> torch.Tensor:
        """HA [B, m, n], one 1 per column j.

        Training: Gumbel(0, 1) noise per (i, j), tau = 1, softmax over the
        m combination tokens, and the straight-through one-hot
        `onehot + Sim - Sim.detach()` (PAPER Eq. 9-10). Inference: no noise,
        so the argmax of Sim is the argmax of the logits; torch.argmax
        returns the first maximal index, i.e. ties go to the lowest i."""
        m = logits.shape[1]
        if self.training:
            gumbel = -torch.empty_like(logits).exponential_().log()
            sim = torch.softmax(logits + gumbel, dim=1)
            onehot = F.one_hot(sim.argmax(dim=1), m).transpose(1, 2).to(sim.dtype)
            return onehot + sim - sim.detach()
        return F.one_hot(logits.argmax(dim=1), m).transpose(1, 2).to(logits.dtype)

    def forward(self, c: torch.Tensor, e: torch.Tensor,
                e_kept: torch.Tensor) -> torch.Tensor:
        """c: [B, m, d] combination tokens from layer P-1; e: [B, n, d]
        embedded tokens from layer P-1; e_kept: [B, n] bool, K_P (only kept
        tokens are combined, PAPER.md 3). Returns C' [B, m, d]."""
        ha = self.hard_assignment(self.assignment_logits(c, e))
        ha = ha * e_kept[:, None, :].to(ha.dtype)
        # Eq. 11 (its sum runs over the r input tokens, not over m: typo).
        group_mean = torch.matmul(ha, self.v(e)) / (ha.sum(dim=-1, keepdim=True) + self.EPS)
        return c + self.o(group_mean)


class WinnowModules(nn.Module):
    """Container that gives winnow's tensors the names winnow.combine.*."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        self.combine = CombiningModule(cfg)


# ---------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------


@dataclass
class WinnowOutput:
    """What a forward pass found, for tests and explanations.

    kept[l] ([B, n] bool) is K_l for l = 0..P (K_0 = the real tokens; K_P
    is what the combining module, the mean head and the explanations read).
    scores[l] ([B, n] float64) is s(j) from layer l's attention, l = 0..P-1,
    valid on K_l and NaN elsewhere; scores[-1] ranks the explanations
    (PAPER.md 5)."""

    logits: torch.Tensor
    kept: List[torch.Tensor] = field(default_factory=list)
    scores: List[torch.Tensor] = field(default_factory=list)

    def kept_positions(self, window: int) -> List[List[int]]:
        """K_0..K_P of one window, as sorted position lists."""
        return [torch.nonzero(k[window]).flatten().tolist() for k in self.kept]


def importance_scores(probs: torch.Tensor, present: torch.Tensor, n: int) -> torch.Tensor:
    """s(j) = mean over heads, mean over the present query rows i of
    probs[h, i, j] (PAPER.md 2, Importance), for the n embedded columns.

    probs: [B, H, N, N] f32; present: [B, N] bool (K_l plus the combination
    tokens). Summed in double, so that the reference is the more exact side
    of any comparison. Returns [B, n] float64, NaN where j is not present."""
    rows = present.to(torch.float64)
    col_sums = (probs.to(torch.float64) * rows[:, None, :, None]).sum(dim=2)
    s = col_sums.mean(dim=1) / rows.sum(dim=1, keepdim=True)
    s = s[:, :n]
    return torch.where(present[:, :n], s, torch.full_like(s, float("nan")))


def window_ends(real: torch.Tensor) -> List[tuple]:
    """(first, last) position of each window: its [CLS] and [SEP], which
    are never pruned (PAPER.md 2, Candidates). Positions, not ids, so that a
    literal "[SEP]" inside the text is an ordinary token."""
    lengths = real.sum(dim=1).tolist()
    return [(0, int(t) - 1) for t in lengths]


class WinnowForSequenceClassification(nn.Module):
    """BertForSequenceClassification plus fuzzy token pruning, the token
    combining module and the mean head (PAPER.md 1-4)."""

    def __init__(self, cfg: WinnowConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)
        if cfg.has_combiner:
            self.winnow = WinnowModules(cfg)

    # -- the pass ------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None,
                return_details: bool = False):
        """input_ids [B, n] (each window [CLS] ... [SEP], right-padded);
        attention_mask [B, n] (1 = real token; default all real). Returns
        the logits [B, labels], or a WinnowOutput if return_details."""
        cfg = self.config
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        real = attention_mask.bool()
        n = input_ids.shape[1]
        out = WinnowOutput(logits=None)

        h = self.bert.embeddings(input_ids)
        if cfg.has_combiner:
            # PAPER.md 1: C is concatenated after the embedded tokens, with no
            # position/type embedding and no embedding LayerNorm.
            c0 = self.winnow.combine.tokens
            h = torch.cat([h, c0[None].expand(h.shape[0], -1, -1)], dim=1)

        h, kept = self._pruned_layers(h, real, n, out)

        if cfg.has_combiner:
            c = self.winnow.combine(h[:, n:], h[:, :n], kept)  # PAPER.md 3
            for layer in self.bert.encoder.layer[cfg.combine_layer + 1:]:
                c, _ = layer(c)  # plain layers over the m tokens, no mask
            pooled = c.mean(dim=1)  # PAPER.md 4: the mean of the m tokens
        elif cfg.pooling == "cls":
            pooled = self.bert.pooler(h)  # PAPER.md 4: exactly BERT's head
        else:
            pooled = masked_mean(h[:, :n], kept)  # mean over K_L (PAPER.md 4)
        out.logits = self.classifier(self.dropout(pooled))
        return out if return_details else out.logits

    def _pruned_layers(self, h, real, n, out: WinnowOutput):
        """Layers 0..P-1 with the pruning decision after each (PAPER.md 2).
        Records K_0..K_P and the scores in out; returns the states after
        layer P-1 and K_P ([B, n] bool)."""
        cfg = self.config
        m = cfg.num_combine_tokens
        always = torch.ones(h.shape[0], m, dtype=torch.bool, device=h.device)
        ends = window_ends(real)
        kept = real.clone()
        out.kept.append(kept)
        for layer in self.bert.encoder.layer[:cfg.num_pruned_layers]:
            # Keys, values and the rows that count: K_l plus the m
            # combination tokens, which are always attendable (PAPER.md 1).
            present = torch.cat([kept, always], dim=1)
            h, probs = layer(h, present)
            with torch.no_grad():  # the selection is a hard top-k: no gradient
                scores = importance_scores(probs.detach(), present, n)
                kept = self._prune(kept, scores, ends)
            out.scores.append(scores)
            out.kept.append(kept)
        return h, kept

    def _prune(self, kept: torch.Tensor, scores: torch.Tensor, ends) -> torch.Tensor:
        """K_{l+1} from K_l and the layer's scores, window by window."""
        cfg = self.config
        if cfg.keep_ratio >= 1.0:
            return kept
        new = kept.clone()
        for b, (first, last) in enumerate(ends):
            positions = torch.nonzero(kept[b]).flatten().tolist()
            s = {j: float(scores[b, j]) for j in positions}
            for j in prune.leaving_tokens(positions, s, first, last, cfg.keep_ratio,
                                          cfg.fuzzy, cfg.fuzzy_mode):
                new[b, j] = False
        return new

    # -- checkpoints ---------------------------------------------------------

    def load_checkpoint_state(self, state: dict) -> None:
        """Loads a state_dict with Hugging Face's names (plus
        winnow.combine.*). Every tensor this configuration uses must be
        present with the right shape; tensors it does not use (the pooler
        with mean pooling, layer P's weights or winnow.combine.* without a
        combining module) may be missing or are ignored, as the exporter
        does; position_ids buffers are ignored; an unknown name is an
        error."""
        state = {names.normalise_hf_name(k): v for k, v in state.items()
                 if names.normalise_hf_name(k) not in names.IGNORED_HF_NAMES}
        own = self.state_dict()
        unknown = []
        for k in sorted(set(state) - set(own)):
            try:
                names.wnn_name_of(k)  # a known name this configuration leaves out
            except KeyError:
                unknown.append(k)
            state.pop(k)
        if unknown:
            raise KeyError(f"checkpoint has tensors this model does not know: "
                           f"{', '.join(unknown[:5])}")
        for name, shape in names.required_hf_names(self.config).items():
            if name not in state:
                raise KeyError(f"checkpoint lacks tensor '{name}'")
            if tuple(state[name].shape) != shape:
                raise ValueError(f"checkpoint tensor '{name}' has shape "
                                 f"{list(state[name].shape)}, expected {list(shape)}")
        for name, value in state.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise ValueError(f"checkpoint tensor '{name}' has shape "
                                 f"{list(value.shape)}, expected {list(own[name].shape)}")
        self.load_state_dict(state, strict=False)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of h [B, n, d] over the positions where mask [B, n] is True."""
    w = mask.to(h.dtype)[:, :, None]
    return (h * w).sum(dim=1) / w.sum(dim=1)
