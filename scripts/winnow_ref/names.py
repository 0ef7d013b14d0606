"""Tensor names: which tensors a configuration uses, and how Hugging Face's
checkpoint names map to the .wnn file's (docs/model-format.md, "Tensors").

This is the one place that knows the mapping: the exporter, the .wnn reader
and the reference model's checkpoint loader all ask it, so they cannot
disagree about what a configuration needs. Standard library only.
"""

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from .config import WinnowConfig

Shape = Tuple[int, ...]

# Hugging Face module prefix -> .wnn prefix, for everything but the fused QKV.
_LAYER_MODULES = [
    ("attention.output.dense", "attn.out"),
    ("attention.output.LayerNorm", "attn.ln"),
    ("intermediate.dense", "ffn.up"),
    ("output.dense", "ffn.down"),
    ("output.LayerNorm", "ffn.ln"),
]
_QKV = ("query", "key", "value")  # row blocks of encoder.N.attn.qkv, in order
_GLOBAL_MODULES = [
    ("bert.embeddings.word_embeddings", "embeddings.word"),
    ("bert.embeddings.position_embeddings", "embeddings.position"),
    ("bert.embeddings.token_type_embeddings", "embeddings.token_type"),
    ("bert.embeddings.LayerNorm", "embeddings.ln"),
    ("bert.pooler.dense", "pooler"),
    ("classifier", "classifier"),
]
# Buffers some Hugging Face versions save; they hold no weights.
IGNORED_HF_NAMES = ("bert.embeddings.position_ids",)


def encoder_layers_used(cfg: WinnowConfig) -> List[int]:
    """Every layer but P, which the combining module replaces (PAPER.md 3)."""
    return [n for n in range(cfg.num_hidden_layers)
            if not (cfg.has_combiner and n == cfg.combine_layer)]


def uses_pooler(cfg: WinnowConfig) -> bool:
    """BERT's tanh pooler serves only `cls` pooling without combining."""
    return cfg.head_pooling == "cls"


def expected_wnn_tensors(cfg: WinnowConfig) -> "OrderedDict[str, Shape]":
    """Exactly the tensors a .wnn file of this configuration holds, in the
    order the exporter writes them, with their shapes."""
    d, i = cfg.hidden_size, cfg.intermediate_size
    t = OrderedDict()
    t["embeddings.word.weight"] = (cfg.vocab_size, d)
    t["embeddings.position.weight"] = (cfg.max_position_embeddings, d)
    t["embeddings.token_type.weight"] = (cfg.type_vocab_size, d)
    t["embeddings.ln.weight"] = (d,)
    t["embeddings.ln.bias"] = (d,)
    for n in encoder_layers_used(cfg):
        p = f"encoder.{n}."
        t[p + "attn.qkv.weight"] = (3 * d, d)
        t[p + "attn.qkv.bias"] = (3 * d,)
        t[p + "attn.out.weight"] = (d, d)
        t[p + "attn.out.bias"] = (d,)
        t[p + "attn.ln.weight"] = (d,)
        t[p + "attn.ln.bias"] = (d,)
        t[p + "ffn.up.weight"] = (i, d)
        t[p + "ffn.up.bias"] = (i,)
        t[p + "ffn.down.weight"] = (d, i)
        t[p + "ffn.down.bias"] = (d,)
        t[p + "ffn.ln.weight"] = (d,)
        t[p + "ffn.ln.bias"] = (d,)
    if uses_pooler(cfg):
        t["pooler.weight"] = (d, d)
        t["pooler.bias"] = (d,)
    t["classifier.weight"] = (cfg.num_labels, d)
    t["classifier.bias"] = (cfg.num_labels,)
    if cfg.has_combiner:
        t["combine.tokens"] = (cfg.combine_tokens, d)
        for ln in ("ln_c", "ln_e"):
            t[f"combine.{ln}.weight"] = (d,)
            t[f"combine.{ln}.bias"] = (d,)
        for proj in ("q", "k", "v", "o"):
            t[f"combine.{proj}.weight"] = (d, d)
            t[f"combine.{proj}.bias"] = (d,)
    return t


def normalise_hf_name(name: str) -> str:
    """Hugging Face's old LayerNorm names gamma/beta -> weight/bias."""
    if name.endswith(".gamma"):
        return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[: -len("beta")] + "bias"
    return name


def hf_sources(wnn_name: str) -> List[str]:
    """The Hugging Face names a .wnn tensor is made of: three for the fused
    QKV (concatenated along dim 0 in this order), one otherwise."""
    if wnn_name.startswith("encoder."):
        _, n, rest = wnn_name.split(".", 2)
        base = f"bert.encoder.layer.{n}."
        kind = rest.rsplit(".", 1)[1]  # weight or bias
        if rest.startswith("attn.qkv."):
            return [f"{base}attention.self.{x}.{kind}" for x in _QKV]
        for hf, ours in _LAYER_MODULES:
            if rest == f"{ours}.{kind}":
                return [f"{base}{hf}.{kind}"]
    if wnn_name.startswith("combine."):
        return ["winnow." + wnn_name]
    for hf, ours in _GLOBAL_MODULES:
        if wnn_name.startswith(ours + "."):
            return [hf + wnn_name[len(ours):]]
    raise KeyError(f"no Hugging Face name for tensor '{wnn_name}'")


def required_hf_names(cfg: WinnowConfig) -> Dict[str, Shape]:
    """Checkpoint names (Hugging Face's plus winnow.combine.*) this
    configuration reads, with their shapes."""
    out = {}
    for name, shape in expected_wnn_tensors(cfg).items():
        sources = hf_sources(name)
        part = (shape[0] // len(sources),) + tuple(shape[1:])
        for hf in sources:
            out[hf] = part
    return out


def wnn_name_of(hf_name: str) -> Optional[str]:
    """The .wnn tensor a checkpoint name contributes to, or None for a
    buffer that holds no weights."""
    hf_name = normalise_hf_name(hf_name)
    if hf_name in IGNORED_HF_NAMES:
        return None
    if hf_name.startswith("winnow.combine."):
        return hf_name[len("winnow."):]
    if hf_name.startswith("bert.encoder.layer."):
        n, rest = hf_name[len("bert.encoder.layer."):].split(".", 1)
        module, kind = rest.rsplit(".", 1)
        if module in (f"attention.self.{x}" for x in _QKV):
            return f"encoder.{n}.attn.qkv.{kind}"
        for hf, ours in _LAYER_MODULES:
            if module == hf:
                return f"encoder.{n}.{ours}.{kind}"
    for hf, ours in _GLOBAL_MODULES:
        if hf_name.startswith(hf + "."):
            return ours + hf_name[len(hf):]
    raise KeyError(f"unknown checkpoint tensor '{hf_name}'")
