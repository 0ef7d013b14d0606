"""What the two equivalence tests (test_equivalence.py, dense;
test_method_equivalence.py, the method's variants) share: running one side
of the comparison as a subprocess with a fixed thread budget. Standard
library only."""

import os
import shlex
import subprocess
import time


def engine_env():
    """Two threads for OpenBLAS/OpenMP unless the caller chose: the machine
    has 2 cores and the results must not depend on the scheduling
    (scripts/blas_env.sh also picks the core type; ctest inherits it from
    scripts/test.sh)."""
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "2")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_side(cmd, stdin_text, timeout, save_as):
    """Runs one side with stdin_text; saves its stdout as save_as and returns
    (stdout lines, seconds), or raises RuntimeError saying what was wrong."""
    shown = " ".join(shlex.quote(c) for c in cmd)
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, input=stdin_text, capture_output=True, text=True,
                           timeout=timeout, env=engine_env())
    except FileNotFoundError:
        raise RuntimeError(f"cannot run '{cmd[0]}': no such file") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"'{shown}' did not finish in {timeout:g} s") from None
    seconds = time.monotonic() - t0
    with open(save_as, "w") as f:
        f.write(r.stdout)
    if r.returncode != 0:
        raise RuntimeError(f"'{shown}' exited {r.returncode}:\n{r.stderr.strip()}")
    return r.stdout.splitlines(), seconds
