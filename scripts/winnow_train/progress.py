"""Progress bars (tqdm, Debian's python3-tqdm) that degrade to nothing
when tqdm is missing, and stay quiet with WINNOW_NO_PROGRESS=1 (tests)."""

import os
import sys


class _Null:
    def __init__(self, *a, **kw):
        self.n = 0

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, *a, **kw):
        pass

    def set_description(self, *a, **kw):
        pass

    def write(self, msg):
        print(msg, file=sys.stderr)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def bar(total=None, desc="", unit="it", **kw):
    """A tqdm bar on stderr (or a silent stand-in)."""
    if os.environ.get("WINNOW_NO_PROGRESS"):
        return _Null()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Null()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                dynamic_ncols=True, mininterval=1.0, **kw)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
