"""Checkpoint directory -> .wnn file (docs/model-format.md).

scripts/export_model.py is the command line over export_checkpoint(); tests
call it directly.
"""

import sys
from typing import Dict

import numpy as np
import torch

from . import names
from . import wnn
from .checkpoint import Checkpoint
from .config import WinnowConfig


class ExportError(ValueError):
    """A checkpoint that cannot become a .wnn file."""


def wnn_tensors(cfg: WinnowConfig, state: Dict[str, torch.Tensor],
                warn=None) -> Dict[str, np.ndarray]:
    """The checkpoint's tensors under .wnn names, exactly the set cfg uses:
    query/key/value fused row-wise into attn.qkv, tensors the configuration
    does not use (the pooler with mean pooling, layer P's weights with the
    combining module) left out. warn(msg) is told about unknown names."""
    by_name = {}
    unknown = []
    for hf_name, value in state.items():
        norm = names.normalise_hf_name(hf_name)
        try:
            if names.wnn_name_of(norm) is None:
                continue  # a buffer such as position_ids
        except KeyError:
            unknown.append(hf_name)
            continue
        by_name[norm] = value
    if unknown and warn:
        warn(f"ignoring {len(unknown)} checkpoint tensors winnow does not use: "
             f"{', '.join(sorted(unknown)[:5])}{' ...' if len(unknown) > 5 else ''}")

    out = {}
    for wnn_name, shape in names.expected_wnn_tensors(cfg).items():
        parts = []
        for hf in names.hf_sources(wnn_name):
            if hf not in by_name:
                raise ExportError(f"checkpoint lacks tensor '{hf}' (needed for "
                                  f"'{wnn_name}' by this configuration)")
            parts.append(by_name[hf].detach().to(torch.float32).cpu().numpy())
        value = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        if tuple(value.shape) != tuple(shape):
            raise ExportError(f"tensor '{wnn_name}' (from "
                              f"{', '.join(names.hf_sources(wnn_name))}) has shape "
                              f"{list(value.shape)}, the configuration needs {list(shape)}")
        out[wnn_name] = np.ascontiguousarray(value, dtype=np.float32)
    return out


def export_checkpoint(ckpt: Checkpoint, out_path: str, *, name: str,
                      version: str, dtype: str = "f32",
                      do_lower_case: bool = True, max_chars_per_word: int = 100,
                      verify: bool = True, warn=None) -> wnn.WnnModel:
    """Writes ckpt (whose config already carries any overrides) to
    out_path; with verify, reads the file back through the validating
    reader and returns what it read."""
    cfg = ckpt.config.validate()
    if len(ckpt.vocab) != cfg.vocab_size:
        raise ExportError(f"vocab.txt has {len(ckpt.vocab)} entries, config.json's "
                          f"vocab_size is {cfg.vocab_size}")
    tok = wnn.TokenizerSettings.from_vocab(ckpt.vocab, do_lower_case=do_lower_case,
                                           max_chars_per_word=max_chars_per_word)
    tensors = wnn_tensors(cfg, ckpt.state, warn=warn)
    wnn.write_wnn(out_path, cfg, tok, ckpt.vocab, tensors, name=name,
                  version=version, dtype=dtype)
    return wnn.read_wnn(out_path) if verify else None


def stderr_warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)
