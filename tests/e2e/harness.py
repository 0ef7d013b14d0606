"""Harness of winnowd's end-to-end tests (test_daemon.py) and its benchmark.

Starts and stops the processes a test needs (a winnow-broker on an
ephemeral port, winnowd instances with their own configuration and HTTP
port), produces and reads records with winnow-kafka-tool (kafka_tool.c, an
independent librdkafka client), generates documents, and reads winnowd's
/metrics and RSS.

Every process started here is registered and stopped by PID when its test
ends (Harness.close) or the interpreter exits, SIGTERM first, then SIGKILL.
Every wait is bounded and fails with what it was waiting for.
"""
import atexit
import json
import os
import queue
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_live = []  # every Popen still to stop, across harnesses


def _stop_process(p, grace=10.0):
    """SIGTERM, wait up to grace seconds, then SIGKILL. Returns the exit code."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    return p.returncode


@atexit.register
def _stop_all():
    for p in list(_live):
        _stop_process(p, grace=5.0)
        _live.remove(p)


class Timeout(AssertionError):
    pass


def wait_for(what, predicate, timeout, interval=0.1):
    """Calls predicate until it returns a true value (returned) or timeout
    seconds pass (Timeout naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A port free on 127.0.0.1 now (for winnowd's http.listen)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blas_env():
    """The environment for winnow's binaries, OpenBLAS set as
    scripts/blas_env.sh sets it: SkylakeX kernels on AVX-512 CPUs (Debian's
    OpenBLAS would pick Haswell's on Zen 4/5), one thread per worker."""
    env = dict(os.environ)
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if " avx512bw" in flags and " avx512vl" in flags:
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    else:
        env.pop("OPENBLAS_CORETYPE", None)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def log(msg):
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- documents ---------------------------------------------------------------

_WORDS = None


def words():
    """Whole words of the shipped vocabulary (plain lower-case ASCII)."""
    global _WORDS
    if _WORDS is None:
        with open(os.path.join(ROOT, "model/weights/vocab.txt"), encoding="utf-8") as f:
            _WORDS = [w for w in (line.strip() for line in f)
                      if w.isascii() and w.isalpha() and len(w) >= 3]
    return _WORDS


def make_text(rng, n_words):
    """Sentences of vocabulary words: tokens the model knows, a few windows
    long for the tiny model (max_seq_len 64)."""
    ws = words()
    out, sentence = [], []
    for _ in range(n_words):
        sentence.append(rng.choice(ws))
        if len(sentence) >= rng.randint(6, 14):
            s = " ".join(sentence)
            out.append(s[0].upper() + s[1:] + rng.choice([".", "!", "?", "."]))
            sentence = []
    if sentence:
        s = " ".join(sentence)
        out.append(s[0].upper() + s[1:] + ".")
    return " ".join(out).encode()


def compress(data, **kw):
    return zstandard.ZstdCompressor(**kw).compress(data)


def make_docs(n, prefix, seed, min_words=20, max_words=120):
    """n documents as (key bytes, text bytes), deterministic."""
    rng = random.Random(seed)
    return [(f"{prefix}-{i:06d}".encode(), make_text(rng, rng.randint(min_words, max_words)))
            for i in range(n)]


# ---- the harness ---------------------------------------------------------------


class Harness:
    """The binaries, the model and one test's work directory."""

    def __init__(self, build_dir, model, workdir, tool=None):
        self.build_dir = os.path.abspath(build_dir)
        self.winnowd = os.path.join(self.build_dir, "winnowd")
        self.broker_bin = os.path.join(self.build_dir, "winnow-broker")
        self.tool = tool or os.path.join(self.build_dir, "winnow-kafka-tool")
        self.model = os.path.abspath(model)
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.procs = []

    def path(self, name):
        return os.path.join(self.workdir, name)

    def _register(self, p):
        self.procs.append(p)
        _live.append(p)

    def close(self):
        """Stops every process this harness started, newest first."""
        for p in reversed(self.procs):
            _stop_process(p)
            if p in _live:
                _live.remove(p)
        self.procs = []

    # -- processes --

    def broker(self, topics, brokers=1):
        b = Broker(self, topics, brokers)
        return b

    def daemon(self, broker, name, **overrides):
        return Daemon(self, broker, name, overrides)

    # -- the tool --

    def _tool(self, args, stdin=None, timeout=120):
        p = subprocess.run([self.tool, *args], input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"winnow-kafka-tool {' '.join(args)} exited {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')[-2000:]}")
        return [json.loads(line) for line in p.stdout.decode().splitlines() if line]

    def produce(self, addr, topic, records):
        """Produces records, each (partition or -1, key or None, value or None
        [, timestamp ms]); returns [(partition, offset)] in the same order."""
        buf = bytearray()
        for r in records:
            part, key, value = r[0], r[1], r[2]
            ts = r[3] if len(r) > 3 else 0
            buf += struct.pack("<iq", part, ts)
            for blob in (key, value):
                if blob is None:
                    buf += struct.pack("<i", -1)
                else:
                    buf += struct.pack("<i", len(blob)) + blob
        path = self.path(f"produce-{topic}.bin")
        with open(path, "wb") as f:
            f.write(buf)
        rows = self._tool(["produce", "-b", addr, "-t", topic, path], timeout=300)
        where = [None] * len(records)
        for row in rows:
            where[row["i"]] = (row["partition"], row["offset"])
        assert None not in where, "winnow-kafka-tool produce: a record has no delivery report"
        return where

    def produce_docs(self, addr, topic, docs, partitions):
        """Produces (key, text) documents as zstd frames, round-robin over
        partitions; returns {key: (partition, offset)}."""
        cctx = zstandard.ZstdCompressor()
        recs = [(i % partitions, k, cctx.compress(t)) for i, (k, t) in enumerate(docs)]
        where = self.produce(addr, topic, recs)
        return {k: w for (k, _), w in zip(docs, where)}

    def offsets(self, addr, topic, group=None):
        args = ["offsets", "-b", addr, "-t", topic] + (["-g", group] if group else [])
        return self._tool(args)

    def consume(self, addr, topic, timeout_ms=120000):
        rows = self._tool(["consume", "-b", addr, "-t", topic, "-T", str(timeout_ms)],
                          timeout=timeout_ms / 1000 + 60)
        for r in rows:
            r["key"] = None if r["key"] is None else bytes.fromhex(r["key"])
            r["value"] = None if r["value"] is None else bytes.fromhex(r["value"])
            r["headers"] = [(n, None if v is None else bytes.fromhex(v))
                            for n, v in r["headers"]]
        return rows

    def high_total(self, addr, topic):
        return sum(o["high"] for o in self.offsets(addr, topic))

    def wait_keys(self, addr, topic, keys, timeout):
        """Waits until every key of `keys` has a record in topic; returns all
        of topic's records (duplicates included)."""
        keys = set(keys)
        state = {"recs": [], "missing": keys}

        def done():
            # Read only when the topic holds enough records to be complete.
            if self.high_total(addr, topic) < len(keys):
                return False
            state["recs"] = self.consume(addr, topic)
            state["missing"] = keys - {r["key"] for r in state["recs"]}
            return not state["missing"]
        try:
            wait_for(f"{len(keys)} keys in '{topic}'", done, timeout, interval=0.5)
        except Timeout:
            if not state["recs"]:
                state["recs"] = self.consume(addr, topic)
                state["missing"] = keys - {r["key"] for r in state["recs"]}
            m = sorted(state["missing"])
            raise AssertionError(f"{len(m)} of {len(keys)} keys have no record in '{topic}' "
                                 f"after {timeout} s, e.g. {m[:10]}")
        return state["recs"]

    def wait_committed_at_end(self, addr, group, topic, timeout=15):
        """Waits until the group's committed offset of every partition of
        topic is the partition's high watermark; returns the offsets."""
        last = {}

        def at_end():
            rows = self.offsets(addr, topic, group)
            last["rows"] = rows
            return rows if all(r["committed"] == r["high"] for r in rows) else None
        try:
            return wait_for(f"group '{group}' committed at the end of '{topic}'",
                            at_end, timeout, interval=0.5)
        except Timeout:
            raise AssertionError(f"group '{group}' did not commit to the end of '{topic}' "
                                 f"within {timeout} s: "
                                 + ", ".join(f"[{r['partition']}] committed {r['committed']} "
                                             f"high {r['high']}" for r in last["rows"]))


class Broker:
    """A winnow-broker on an ephemeral port, commands on its stdin."""

    def __init__(self, h, topics, brokers=1):
        self.h = h
        addr_file = h.path(f"broker-{len(h.procs)}.addr")
        if os.path.exists(addr_file):
            os.unlink(addr_file)
        spec = [f"{t}:{n}" for t, n in topics.items()]
        with open(h.path("broker.err"), "ab") as err:
            self.p = subprocess.Popen([h.broker_bin, "-b", str(brokers), "-f", addr_file,
                                       *spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=err)
        h._register(self.p)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.addr = self._line(20).strip()
        assert re.match(r"^127\.0\.0\.1:\d+", self.addr), f"broker said '{self.addr}'"
        self.topics = dict(topics)

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.decode())
        self.lines.put(None)

    def _line(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"winnow-broker said nothing for {timeout} s")
        if line is None:
            raise AssertionError(f"winnow-broker exited ({self.p.poll()})")
        return line

    def command(self, cmd):
        """Sends one command; fails unless the broker answers ok."""
        log(f"broker: {cmd}")
        self.p.stdin.write(cmd.encode() + b"\n")
        self.p.stdin.flush()
        ans = self._line(10).strip()
        assert ans == "ok", f"broker command '{cmd}': {ans}"

    def stop(self):
        _stop_process(self.p)


class Daemon:
    """One winnowd with its own config file, HTTP port and log file."""

    def __init__(self, h, broker, name, overrides):
        self.h = h
        self.name = name
        self.port = free_port()
        self.group = overrides.pop("group", "winnow")
        self.input = overrides.pop("input", "docs")
        self.output = overrides.pop("output", "labels")
        self.dead_letter = overrides.pop("dead_letter", "docs.dlq")
        props = {"session.timeout.ms": "6000", "auto.commit.interval.ms": "500",
                 "heartbeat.interval.ms": "1000"}
        props.update(overrides.pop("properties", {}))
        pipeline = {"workers": 2, "max_documents": 64}
        pipeline.update(overrides.pop("pipeline", {}))
        limits = overrides.pop("limits", {})
        shutdown_timeout = overrides.pop("shutdown_timeout", 20)
        top_k = overrides.pop("top_k", 10)
        assert not overrides, f"unknown overrides {overrides}"
        lines = [f"model: {json.dumps(h.model)}",
                 "kafka:",
                 f"  brokers: {json.dumps(broker.addr)}",
                 f"  group: {json.dumps(self.group)}",
                 f"  input: {json.dumps(self.input)}",
                 f"  output: {json.dumps(self.output)}",
                 f"  dead_letter: {json.dumps(self.dead_letter)}",
                 f"  client_id: {json.dumps(name)}",
                 "  properties:"]
        lines += [f"    {k}: {json.dumps(str(v))}" for k, v in props.items()]
        lines += ["http:", f"  listen: 127.0.0.1:{self.port}", "pipeline:"]
        lines += [f"  {k}: {v}" for k, v in pipeline.items()]
        if limits:
            lines += ["limits:"] + [f"  {k}: {v}" for k, v in limits.items()]
        lines += ["explain:", f"  top_k: {top_k}",
                  f"shutdown_timeout: {shutdown_timeout}", "log:", "  level: info"]
        self.config = h.path(f"{name}.yaml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = h.path(f"{name}.log")
        self.p = None
        self.starts = 0

    def start(self, env=None):
        assert self.p is None or self.p.poll() is not None, f"{self.name} is running"
        self.starts += 1
        logf = open(self.log_path, "ab")
        logf.write(f"==== start {self.starts}\n".encode())
        logf.flush()
        self.p = subprocess.Popen([self.h.winnowd, "--config", self.config],
                                  stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                  env={**blas_env(), **(env or {})})
        logf.close()
        self.h._register(self.p)
        return self

    def running(self):
        return self.p is not None and self.p.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_this_run(self):
        return self.log().rsplit(f"==== start {self.starts}\n", 1)[-1]

    def assigned(self):
        """Partitions assigned now, by the last "assigned N"/"revoked" lines."""
        n = 0
        for line in self.log_this_run().splitlines():
            m = re.search(r"consumer: assigned (\d+) partition", line)
            if m:
                n = int(m.group(1))
            elif "consumer: revoked" in line:
                n = 0
        return n

    def wait_assigned(self, n=None, timeout=30):
        return wait_for(f"{self.name} assigned {'some' if n is None else n} partition(s)",
                        lambda: self._check_alive() and
                        (self.assigned() > 0 if n is None else self.assigned() == n),
                        timeout, interval=0.2)

    def _check_alive(self):
        if not self.running():
            raise AssertionError(f"{self.name} exited {self.p.returncode}; log:\n"
                                 + self.log_this_run()[-3000:])
        return True

    def metrics(self):
        """/metrics as {name: {labels-string: value}}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if m:
                out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
        return out

    def metric(self, name, labels=""):
        try:
            return self.metrics().get(name, {}).get(labels, 0.0)
        except OSError:
            return None

    def rss_kb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def terminate(self, timeout=60):
        """SIGTERM and wait; returns the exit code."""
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=10)
            raise AssertionError(f"{self.name} did not stop within {timeout} s of SIGTERM")

    def edit_config(self, old, new):
        """Replaces one line of the config file (which must be there)."""
        with open(self.config) as f:
            text = f.read()
        assert old in text, f"no '{old}' in {self.config}"
        with open(self.config, "w") as f:
            f.write(text.replace(old, new, 1))

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=10)
