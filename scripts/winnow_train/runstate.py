"""What pretraining and fine-tuning share: the time budget and the
learning-rate progress, resumable state files, and the history.

Budget: a run stops after max_steps optimiser steps or max_minutes of its
own training time (summed over resumptions), whichever comes first. The
learning-rate schedule (linear warm-up, linear decay, model.lr_factor)
follows progress = max(step / max_steps, minutes / max_minutes), so a run
cut by its time budget still ends with its rate decayed to zero.
"""

import json
import os
import random
import time
from typing import Optional

import numpy as np
import torch


class Budget:
    def __init__(self, max_steps: Optional[int], max_minutes: Optional[float],
                 elapsed: float = 0.0):
        if not max_steps and not max_minutes:
            raise ValueError("a run needs max_steps or max_minutes")
        self.max_steps = max_steps
        self.max_seconds = max_minutes * 60.0 if max_minutes else None
        self.elapsed = elapsed
        self._t0 = None

    def start(self):
        self._t0 = time.monotonic()

    def tick(self):
        """Adds the wall time since the last tick/start to elapsed."""
        now = time.monotonic()
        if self._t0 is not None:
            self.elapsed += now - self._t0
        self._t0 = now

    def progress(self, step: int) -> float:
        p = 0.0
        if self.max_steps:
            p = max(p, step / self.max_steps)
        if self.max_seconds:
            p = max(p, self.elapsed / self.max_seconds)
        return min(p, 1.0)

    def done(self, step: int) -> bool:
        return self.progress(step) >= 1.0


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


def save_state(path: str, state: dict) -> None:
    """Atomic torch.save (a kill mid-write leaves the previous state)."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    return torch.load(path, map_location="cpu")


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cpu_seconds() -> float:
    """User + system CPU time of this process: on a busy machine, wall time
    measures the neighbours too; CPU time / threads approximates what the
    run would take alone."""
    t = os.times()
    return t.user + t.system
