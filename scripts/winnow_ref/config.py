"""The model configuration: a Hugging Face style config.json plus winnow's keys.

Hugging Face keys read here: vocab_size, hidden_size, num_hidden_layers,
num_attention_heads, intermediate_size, max_position_embeddings,
type_vocab_size, layer_norm_eps, hidden_act, hidden_dropout_prob,
attention_probs_dropout_prob, id2label (or num_labels).

winnow's keys (DESIGN.md, "config.json keys beyond Hugging Face's"):
winnow_keep_ratio, winnow_fuzzy, winnow_fuzzy_mode, winnow_combine_layer,
winnow_combine_tokens, winnow_pooling, and max_seq_len (the window length,
[CLS] and [SEP] included; default min(512, max_position_embeddings)).

Only the standard library is used, so tools that only read configurations
do not pay for importing torch.
"""

import dataclasses
import json
import math
from typing import List, Optional

POOLINGS = ("cls", "mean")
FUZZY_MODES = ("budget", "within")


class ConfigError(ValueError):
    """A config.json (or an override) that winnow cannot use."""


@dataclasses.dataclass
class WinnowConfig:
    """Architecture (BERT's) plus the method's settings (PAPER.md 1-4)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    labels: List[str] = dataclasses.field(
        default_factory=lambda: ["LABEL_0", "LABEL_1"])
    # PAPER.md 2: p; 1.0 disables pruning.
    keep_ratio: float = 1.0
    # PAPER.md 2: the fuzzy rule (ours-PF) or plain ratio pruning (ours-P).
    fuzzy: bool = True
    fuzzy_mode: str = "budget"
    # PAPER.md 3: P, 0-based index of the layer the combining module
    # replaces; None = no combining module (P = L in the file format).
    combine_layer: Optional[int] = None
    combine_tokens: int = 8
    # PAPER.md 4: head without the combining module.
    pooling: str = "cls"
    max_seq_len: Optional[int] = None
    # Keys of config.json that winnow does not interpret, kept so that a
    # configuration written back keeps them.
    extra: dict = dataclasses.field(default_factory=dict)

    # -- derived values ----------------------------------------------------

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_combiner(self) -> bool:
        return self.combine_layer is not None

    @property
    def num_pruned_layers(self) -> int:
        """P: layers 0..P-1 are pruned layers (PAPER.md 2); L without a
        combining module."""
        return self.combine_layer if self.has_combiner else self.num_hidden_layers

    @property
    def num_combine_tokens(self) -> int:
        """m, or 0 without a combining module."""
        return self.combine_tokens if self.has_combiner else 0

    @property
    def head_pooling(self) -> str:
        """What the head really does: with the combining module it is always
        the mean of the m combined tokens (PAPER.md 4)."""
        return "mean" if self.has_combiner else self.pooling

    @property
    def window_len(self) -> int:
        if self.max_seq_len is not None:
            return self.max_seq_len
        return min(512, self.max_position_embeddings)

    # -- checks ------------------------------------------------------------

    def validate(self) -> "WinnowConfig":
        """Raises ConfigError naming the first key that is out of range."""
        def need(cond, key, value, rule):
            if not cond:
                raise ConfigError(f"config key '{key}' is {value!r}: {rule}")

        for key in ("vocab_size", "hidden_size", "num_hidden_layers",
                    "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, key)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                 key, v, "must be a positive integer")
        need(self.hidden_size % self.num_attention_heads == 0, "hidden_size",
             self.hidden_size,
             f"must be a multiple of num_attention_heads "
             f"({self.num_attention_heads})")
        need(self.max_position_embeddings >= 3, "max_position_embeddings",
             self.max_position_embeddings, "must be at least 3 ([CLS] x [SEP])")
        need(math.isfinite(self.layer_norm_eps) and 0 < self.layer_norm_eps < 1,
             "layer_norm_eps", self.layer_norm_eps, "must be in (0, 1)")
        need(self.hidden_act == "gelu", "hidden_act", self.hidden_act,
             "only 'gelu' (the erf form) is supported")
        need(self.num_labels >= 1, "id2label", self.labels,
             "needs at least one label")
        need(len(set(self.labels)) == len(self.labels), "id2label",
             self.labels, "label names must be unique")
        need(isinstance(self.keep_ratio, (int, float))
             and math.isfinite(self.keep_ratio) and 0 < self.keep_ratio <= 1,
             "winnow_keep_ratio", self.keep_ratio, "must be in (0, 1]")
        need(self.fuzzy_mode in FUZZY_MODES, "winnow_fuzzy_mode",
             self.fuzzy_mode, f"must be one of {', '.join(FUZZY_MODES)}")
        need(self.pooling in POOLINGS, "winnow_pooling", self.pooling,
             f"must be one of {', '.join(POOLINGS)}")
        if self.has_combiner:
            # PAPER.md 3: the module never replaces layer 0; P = L is "none"
            # and has been normalised away by from_dict/with_overrides.
            need(isinstance(self.combine_layer, int)
                 and 1 <= self.combine_layer < self.num_hidden_layers,
                 "winnow_combine_layer", self.combine_layer,
                 f"must be in 1..{self.num_hidden_layers - 1} "
                 f"(or null for no combining module)")
            need(isinstance(self.combine_tokens, int)
                 and 1 <= self.combine_tokens <= 4096,
                 "winnow_combine_tokens", self.combine_tokens,
                 "must be in 1..4096")
        need(3 <= self.window_len <= self.max_position_embeddings,
             "max_seq_len", self.window_len,
             f"must be in 3..max_position_embeddings "
             f"({self.max_position_embeddings})")
        return self

    # -- (de)serialisation -------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict) -> "WinnowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {}
        for key in ("vocab_size", "hidden_size", "num_hidden_layers",
                    "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "type_vocab_size",
                    "layer_norm_eps", "hidden_act", "hidden_dropout_prob",
                    "attention_probs_dropout_prob", "max_seq_len"):
            if key in d:
                kw[key] = d[key]
        kw["labels"] = _labels_from_dict(d)
        for key, attr in _WINNOW_KEYS.items():
            if key in d:
                kw[attr] = d[key]
        if "layer_norm_eps" in kw:
            kw["layer_norm_eps"] = float(kw["layer_norm_eps"])
        if "keep_ratio" in kw:
            kw["keep_ratio"] = float(kw["keep_ratio"])
        consumed = set(kw) | set(_WINNOW_KEYS) | {"id2label", "label2id",
                                                  "num_labels"}
        kw["extra"] = {k: v for k, v in d.items()
                       if k not in consumed and k not in known}
        return cls(**kw).normalised()

    @classmethod
    def from_json_file(cls, path) -> "WinnowConfig":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"cannot parse '{path}': {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"cannot use '{path}': not a JSON object")
        return cls.from_dict(d)

    def normalised(self) -> "WinnowConfig":
        """P = L means no combining module (the file format's encoding)."""
        if self.combine_layer is not None and \
                self.combine_layer == self.num_hidden_layers:
            return dataclasses.replace(self, combine_layer=None)
        return self

    def with_overrides(self, **kw) -> "WinnowConfig":
        """A copy with the given fields replaced; None values are ignored
        (an unset command-line flag), except through combine_layer=-1
        which means "no combining module"."""
        kw = {k: v for k, v in kw.items() if v is not None}
        if kw.get("combine_layer") == -1:
            kw["combine_layer"] = None
        return dataclasses.replace(self, **kw).normalised()

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "id2label": {str(i): name for i, name in enumerate(self.labels)},
            "label2id": {name: i for i, name in enumerate(self.labels)},
        })
        if self.max_seq_len is not None:
            d["max_seq_len"] = self.max_seq_len
        for key, attr in _WINNOW_KEYS.items():
            d[key] = getattr(self, attr)
        return d

    def to_json_file(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")


_WINNOW_KEYS = {
    "winnow_keep_ratio": "keep_ratio",
    "winnow_fuzzy": "fuzzy",
    "winnow_fuzzy_mode": "fuzzy_mode",
    "winnow_combine_layer": "combine_layer",
    "winnow_combine_tokens": "combine_tokens",
    "winnow_pooling": "pooling",
}


def _labels_from_dict(d: dict) -> List[str]:
    """Label names in class-index order, from id2label ({"0": "ham", ...})
    or, failing that, num_labels (Hugging Face's LABEL_i names)."""
    if "id2label" in d:
        id2label = d["id2label"]
        if not isinstance(id2label, dict) or not id2label:
            raise ConfigError("config key 'id2label' must be a non-empty object")
        try:
            by_index = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError):
            raise ConfigError("config key 'id2label' has a key that is not "
                              "an integer") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise ConfigError(f"config key 'id2label' must have keys "
                              f"0..{len(by_index) - 1}, has {sorted(by_index)}")
        return [by_index[i] for i in range(len(by_index))]
    n = d.get("num_labels", 2)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"config key 'num_labels' is {n!r}: must be a "
                          f"positive integer")
    return [f"LABEL_{i}" for i in range(n)]
