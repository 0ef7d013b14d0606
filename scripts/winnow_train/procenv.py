"""The process environment training needs, set before torch loads: the
entry points call ensure() first thing, which re-executes the same command
once with these variables set (WINNOW_KEEP_ENV=1 opts out).

* OMP_WAIT_POLICY=PASSIVE. torch's OpenMP threads otherwise spin while
  they wait for work, and on a 2-core machine shared with anything else the
  spinning thread takes the core its partner needs: measured here with
  another process busy on one core, a pretraining step (32 x 128) took
  6.4 s with the default policy and 0.9 s with PASSIVE; on an idle machine
  the two are the same.
* GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=64GiB.
  Fresh memory is slow to fault in on these VMs (DESIGN.md, Machines:
  about 12 us per 4 KiB page), and glibc hands every freed block over 32 MB
  (and the top of its heap) back to the kernel; a training step allocates
  and frees the same activations every time and so paid its page faults
  again every step. Keeping freed memory cut the CPU time of a pretraining
  step from 2.2 s to 0.74 s per thread. The process keeps its peak memory
  until it exits (about 3 GB for the default pretraining).
"""

import os
import sys

ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736",
}


def ensure() -> None:
    if os.environ.get("WINNOW_KEEP_ENV") or os.environ.get("WINNOW_PROCENV_SET"):
        return
    env = dict(os.environ)
    env["WINNOW_PROCENV_SET"] = "1"
    env.setdefault("OMP_WAIT_POLICY", ENV["OMP_WAIT_POLICY"])
    tun = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.mmap_max" not in tun:
        env["GLIBC_TUNABLES"] = f"{tun}:{ENV['GLIBC_TUNABLES']}" if tun else ENV["GLIBC_TUNABLES"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
