"""The C engine as an evaluator: documents as files, `winnow classify
--trace` over them, its JSON records and its per-layer table parsed.

The engine reads exactly the text the PyTorch side was trained on (the
documents of docs.jsonl, written as UTF-8 files), tokenizes it itself and
cuts it into windows itself (PAPER.md 6), so the evaluation covers the
whole shipped path, not just the network.
"""

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List

# The sources the winnow binary is built from: a speed is only comparable
# with another measured on the same ones.
_ENGINE_SOURCES = ("model", "pipeline", "daemon", "CMakeLists.txt")


def source_version(root: str) -> str:
    """The commit the engine's sources are at, '+changes' when they differ
    from it in the work tree ('unknown' outside a git checkout). The
    binary is assumed built from them, as scripts/test.sh and the build
    scripts do."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", *_ENGINE_SOURCES)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


_TRACE_ROW = re.compile(
    r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)(.*)$")


@dataclass
class LayerTrace:
    layer: int
    windows: int
    tokens_in: int
    tokens_kept: int
    protected: int
    spared: int
    ms: float
    combining: bool = False


@dataclass
class EngineRun:
    records: Dict[str, dict]           # file path -> JSON record
    errors: List[str]                  # stderr lines naming failed documents
    trace: List[LayerTrace] = field(default_factory=list)
    seconds: float = 0.0               # wall time of the whole command


def file_name(doc_id: str) -> str:
    """A document id as a file name: '/' is the only character ids have
    that a file name cannot."""
    return doc_id.replace("/", "__") + ".txt"


def write_documents(directory: str, docs: Dict[str, str]) -> Dict[str, str]:
    """Writes each {id: text} as DIR/<file_name(id)> (skipping files that
    already hold the same text); returns {path: id}."""
    os.makedirs(directory, exist_ok=True)
    out = {}
    for doc_id, text in docs.items():
        path = os.path.join(directory, file_name(doc_id))
        data = text.encode("utf-8")
        if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
            with open(path, "wb") as f:
                f.write(data)
        out[path] = doc_id
    return out


def parse_trace(stderr: str) -> List[LayerTrace]:
    rows = []
    for line in stderr.splitlines():
        m = _TRACE_ROW.match(line)
        if m:
            g = m.groups()
            rows.append(LayerTrace(int(g[0]), int(g[1]), int(g[2]), int(g[3]),
                                   int(g[5]), int(g[6]), float(g[7]),
                                   "combining" in g[8]))
    return rows


def classify(winnow: str, model: str, paths: List[str], batch: int = 16,
             trace: bool = True, env=None, top_k: int = 5) -> EngineRun:
    """Runs `winnow classify` over the files; a document the engine cannot
    classify is listed in errors (exit code 1), anything else failing
    raises."""
    cmd = [winnow, "classify", "--model", model, "--batch", str(batch), "--top-k", str(top_k)]
    if trace:
        cmd.append("--trace")
    t0 = time.monotonic()
    p = subprocess.run(cmd + list(paths), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env)
    seconds = time.monotonic() - t0
    stderr = p.stderr.decode(errors="replace")
    if p.returncode not in (0, 1):
        raise RuntimeError(f"'{' '.join(cmd[:4])} ...' exited {p.returncode}: {stderr[-2000:]}")
    records = {}
    for line in p.stdout.decode().splitlines():
        if line.strip():
            rec = json.loads(line)
            records[rec["id"]] = rec
    errors = [ln for ln in stderr.splitlines() if ln.startswith("winnow: ")]
    if p.returncode == 1 and not errors:
        raise RuntimeError(f"winnow classify exited 1 without naming a document: {stderr[-2000:]}")
    return EngineRun(records, errors, parse_trace(stderr) if trace else [], seconds)
