"""Where things live: the repository, the committed split manifests and the
cache for everything large (${WINNOW_CACHE:-$HOME/.cache/winnow})."""

import os

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(SCRIPTS)
VOCAB = os.path.join(ROOT, "model", "weights", "vocab.txt")
# The split manifests and the archive can be moved by the environment
# (WINNOW_SPLITS, WINNOW_ARCHIVE), so that the build script's stages, which
# take the defaults, can run on a test corpus without touching the
# committed ones (tests/test_train_tiny.py).
SPLITS = os.environ.get("WINNOW_SPLITS") or os.path.join(SCRIPTS, "splits")
# Every evaluated run's numbers, committed: the results table is built from
# them, so that it can grow over several sessions and machines.
ARCHIVE = os.environ.get("WINNOW_ARCHIVE") or os.path.join(ROOT, "docs", "results", "runs")
# The results table's pretrained encoder, committed with its pretraining
# summary so that the table can go on from any machine.
ENCODER = os.path.join(SCRIPTS, "encoder")
FETCH_NPM = os.path.join(SCRIPTS, "fetch_npm.sh")
DEFAULT_WINNOW = os.path.join(ROOT, "build", "winnow")


def cache_root() -> str:
    return os.environ.get("WINNOW_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "winnow")


def data_dir(corpus: str, root: str = None) -> str:
    """The prepared corpus: docs.jsonl and tokens.npz."""
    return os.path.join(root or os.path.join(cache_root(), "data"), corpus)
