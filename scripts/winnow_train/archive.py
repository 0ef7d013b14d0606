"""The run archive (docs/results/runs/TASK/VARIANT/seedS.json, committed):
where a run's numbers live once its checkpoint is gone, and which
pretrained encoder they came from. A table is built from one encoder's
runs only, so the encoder is named by the sha256 of its weights."""

import glob
import hashlib
import os
from typing import Optional

from . import runstate


def archive_path(archive: str, task: str, variant: str, seed: int) -> str:
    return os.path.join(archive, task, variant, f"seed{seed}.json")


def encoder_of(result: dict) -> str:
    return result.get("training", {}).get("encoder_sha256", "unknown")


def encoder_sha256(encoder_dir: Optional[str]) -> Optional[str]:
    """The sha256 of a pretrained encoder's weights file, which names the
    encoder in the archive; None if there is none."""
    weights = os.path.join(encoder_dir, "pytorch_model.bin") if encoder_dir else None
    if not weights or not os.path.isfile(weights):
        return None
    with open(weights, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def archive_encoder_conflict(archive: str, sha: Optional[str]) -> Optional[str]:
    """Whether the archive holds runs of another encoder than `sha`: an
    error naming one such run, or None. Checked before a run is archived
    and before the table trains for hours, because a new machine's cache
    starts empty and a new pretraining gives a new encoder unless it
    reproduces the old one bit for bit (docs/training.md)."""
    if not archive:
        return None
    for path in sorted(glob.glob(os.path.join(archive, "*", "*", "seed*.json"))):
        theirs = encoder_of(runstate.read_json(path))
        if theirs != sha:
            run = os.path.relpath(path, archive)[:-len(".json")]
            return (f"the archive '{archive}' holds runs of encoder {theirs[:12]} ({run}), "
                    f"this encoder is {(sha or 'unknown')[:12]}: archive this table apart "
                    f"(WINNOW_ARCHIVE=DIR) or restore that encoder (docs/training.md)")
    return None
