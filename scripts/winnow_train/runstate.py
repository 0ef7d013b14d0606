"""What pretraining and fine-tuning share: the time budget and the
learning-rate progress, resumable state files, and the history.

Budget: a run stops after its planned optimiser steps or max_minutes of its
own training time (summed over resumptions), whichever comes first. The
learning-rate schedule (linear warm-up, linear decay, model.lr_factor)
follows the steps, so that a seed reproduces its run whatever the load of
the machine; the time budget only shortens the plan when the measured
speed says the steps will not fit, so that a run cut by time still ends
with its rate decayed to zero. A run without a step count (pretraining:
as long as the machine allows) follows the clock.

The clock is the run's compute time (compute_clock: CPU time over its
threads), not the wall clock: whether a 45-minute budget binds must not
depend on what else the machine ran meanwhile, or on the run being
stopped (SIGSTOP) for a benchmark. On the wall clock a spam3 `bert` run
paused 20 minutes for benchmarks stopped at 677 of 987 steps.
"""

import json
import os
import random
import time
from typing import Callable, Optional

import numpy as np
import torch


class Budget:
    # Steps (at least; or this share of the plan) before the measured speed
    # is trusted to shorten the plan: the first steps are slow (page faults,
    # allocator) and would shorten it for nothing.
    SETTLE_STEPS = 10
    SETTLE_SHARE = 0.05

    def __init__(self, max_steps: Optional[int], max_minutes: Optional[float],
                 elapsed: float = 0.0, clock: Callable[[], float] = time.monotonic):
        if not max_steps and not max_minutes:
            raise ValueError("a run needs max_steps or max_minutes")
        self._clock = clock
        self.max_steps = max_steps
        self.planned_steps = max_steps  # shrinks only, see replan
        self.max_seconds = max_minutes * 60.0 if max_minutes else None
        self.elapsed = elapsed
        self._t0 = None

    def state(self) -> dict:
        """For a run's state file; restore() takes it back."""
        return {"elapsed": self.elapsed, "max_steps": self.max_steps,
                "planned_steps": self.planned_steps}

    def restore(self, st: dict) -> None:
        """A resumed run goes on with its time spent and, if it is resumed
        with the same step count, with the plan its speed had shortened; a
        new step count starts a new plan."""
        self.elapsed = st["elapsed"]
        if st.get("max_steps") == self.max_steps and st.get("planned_steps"):
            self.planned_steps = min(st["planned_steps"], self.max_steps)

    def start(self):
        self._t0 = self._clock()

    def tick(self):
        """Adds the clock's time since the last tick/start to elapsed."""
        now = self._clock()
        if self._t0 is not None:
            self.elapsed += now - self._t0
        self._t0 = now

    def replan(self, step: int) -> None:
        """After step `step`: if the time budget cannot hold the planned
        steps at the speed measured so far, plan the steps that fit. (A
        schedule that took max(steps, time) moved the rate of every step a
        slow neighbour touched: two runs of one seed parted at step 3.)"""
        if not (self.planned_steps and self.max_seconds) or step <= 0:
            return
        if step < max(self.SETTLE_STEPS, self.SETTLE_SHARE * self.planned_steps):
            return
        fit = int(self.max_seconds * step / max(self.elapsed, 1e-9))
        if fit < self.planned_steps:
            self.planned_steps = max(step, fit)

    def progress(self, step: int) -> float:
        if self.planned_steps:
            return min(step / self.planned_steps, 1.0)
        return min(self.elapsed / self.max_seconds, 1.0)

    def done(self, step: int) -> bool:
        if self.max_seconds and self.elapsed >= self.max_seconds:
            return True
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


def compute_clock(threads: int) -> Callable[[], float]:
    """Seconds of computing of a run on `threads` threads: its CPU time
    over the thread count. It stands still while the process is stopped
    and runs slower while neighbours take its cores, so a time budget on
    it gives a run the same schedule on a busy machine as on an idle one
    (threads that wait for work do not count: PASSIVE waiting, procenv)."""
    n = max(1, threads)
    return lambda: cpu_seconds() / n


def cpu_seconds() -> float:
    """User + system CPU time of this process: on a busy machine, wall time
    measures the neighbours too; CPU time / threads approximates what the
    run would take alone."""
    t = os.times()
    return t.user + t.system
