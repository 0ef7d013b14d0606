"""Random checkpoints for tests: every parameter of the reference model
drawn so that each one matters (DESIGN.md's checkpoint names).

BERT's initialisation (normal, std 0.02) for matrices and embeddings, but
small random biases instead of zeros and LayerNorm weights 1 + noise
instead of ones, so that an engine that forgot a bias or a LayerNorm weight
disagrees with the reference.
"""

from typing import Dict

import torch

from .config import WinnowConfig


def random_state(cfg: WinnowConfig, seed: int = 0, std: float = 0.02,
                 bias_std: float = 0.02, ln_std: float = 0.1) -> Dict[str, torch.Tensor]:
    """A state_dict of cfg's reference model with random values, the same
    for the same seed and configuration."""
    from .model import WinnowForSequenceClassification

    model = WinnowForSequenceClassification(cfg)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, param in model.state_dict().items():
        shape = param.shape
        if _is_layer_norm(name):
            base = 1.0 if name.endswith(".weight") else 0.0
            value = base + ln_std * torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            value = bias_std * torch.randn(shape, generator=gen)
        else:
            value = std * torch.randn(shape, generator=gen)
        state[name] = value.to(torch.float32).contiguous()
    return state


def _is_layer_norm(name: str) -> bool:
    return ".LayerNorm." in name or ".ln_c." in name or ".ln_e." in name
