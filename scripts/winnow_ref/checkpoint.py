"""Checkpoint directories: pytorch_model.bin (a state_dict with Hugging
Face's BertForSequenceClassification names plus winnow.combine.*),
config.json (Hugging Face's keys plus winnow's) and vocab.txt
(DESIGN.md, "Model file").
"""

import os
from dataclasses import dataclass
from typing import Dict, List

import torch

from .config import WinnowConfig

WEIGHTS = "pytorch_model.bin"
CONFIG = "config.json"
VOCAB = "vocab.txt"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be used."""


@dataclass
class Checkpoint:
    config: WinnowConfig
    state: Dict[str, torch.Tensor]
    vocab: List[str]


def read_vocab(path: str) -> List[str]:
    """One token per line, id = line number - 1 (BERT's vocab.txt; only the
    newline is stripped, as Hugging Face's load_vocab does)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _need(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise CheckpointError(f"cannot read checkpoint '{directory}': no {name}")
    return path


def load_state(path: str) -> Dict[str, torch.Tensor]:
    """torch.load of a state_dict on the CPU, tensors only (no pickled code
    runs where torch supports weights_only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch older than 1.13
        state = torch.load(path, map_location="cpu")
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' does not hold a state_dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_checkpoint(directory: str) -> Checkpoint:
    cfg = WinnowConfig.from_json_file(_need(directory, CONFIG))
    vocab = read_vocab(_need(directory, VOCAB))
    state = load_state(_need(directory, WEIGHTS))
    return Checkpoint(cfg, state, vocab)


def build_model(cfg: WinnowConfig, state: Dict[str, torch.Tensor]):
    """The reference model of cfg with the checkpoint's weights, in eval
    mode."""
    from .model import WinnowForSequenceClassification
    model = WinnowForSequenceClassification(cfg)
    model.load_checkpoint_state(state)
    return model.eval()


def synthetic_vocab(size: int) -> List[str]:
    """A stand-in vocabulary for tests: BERT's special tokens at BERT's ids
    ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103), [unusedN]
    below 100 and made-up word pieces after 103."""
    if size < 105:
        raise CheckpointError(f"a synthetic vocabulary needs at least 105 "
                              f"entries, asked for {size}")
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)]
    vocab += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"w{i}" if i % 3 else f"##w{i}" for i in range(104, size)]
    return vocab


def save_checkpoint(directory: str, cfg: WinnowConfig,
                    state: Dict[str, torch.Tensor], vocab: List[str]) -> None:
    """Writes the three files of a checkpoint directory (created if
    needed)."""
    os.makedirs(directory, exist_ok=True)
    torch.save(state, os.path.join(directory, WEIGHTS))
    cfg.to_json_file(os.path.join(directory, CONFIG))
    with open(os.path.join(directory, VOCAB), "w", encoding="utf-8") as f:
        for tok in vocab:
            f.write(tok + "\n")
