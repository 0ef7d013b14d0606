#!/usr/bin/python3
"""Documents per second and latency of winnowd end to end, against the engine
alone on the same documents and model. Run by scripts/bench_daemon.sh, which
sets up OpenBLAS, the build and the model; progress goes to stderr, the
Markdown table to stdout.

Per round (the best round is kept, as scripts/bench_engine.sh does, against
a neighbour's burst on a shared machine):

  engine   (1) `winnow bench` at these documents' window lengths, batched
           and spread over workers as winnowd does (batch_windows windows
           per forward pass, `workers` contexts with single-threaded BLAS):
           the engine's own rate on this work, the reference for the
           daemon's overhead; (2) `winnow classify --batch B` over the
           documents as files (one process, batches within a document,
           OpenBLAS's threads), the command-line path.
  daemon   for each max_documents: a winnow-broker, a winnowd already
           assigned and warmed up, then the documents produced at once as a
           backlog: documents/s from the first produce to the last output
           record; the pipeline's latency (submit to result) from the
           winnow_document_latency_seconds histogram; then a paced run at
           half that rate, whose end-to-end latency per document is the
           output record's timestamp minus the input's (both stamped by
           their producers on this machine).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def err(msg):
    print(f"bench_daemon: {msg}", file=sys.stderr, flush=True)


def load_docs(corpus, n, seed):
    """n documents as (key, text): from a prepared corpus (JSON lines with
    "id" and "text", as scripts/prepare_data.py writes) or synthetic."""
    if corpus != "synthetic":
        with open(corpus, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        rows = [r for r in rows if r.get("text", "").strip()]
        random.Random(seed).shuffle(rows)
        return [(f"doc-{i:06d}".encode(), r["text"].encode()) for i, r in enumerate(rows[:n])]
    return H.make_docs(n, "doc", seed, min_words=50, max_words=600)


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def histogram_quantile(before, after, q):
    """q-quantile of the observations between two scrapes of a Prometheus
    histogram ({'{le="0.01"}': count, ...}), interpolated in its bucket."""
    bounds = []
    for lab, v in after.items():
        le = lab.split('"')[1]
        bounds.append((float("inf") if le == "+Inf" else float(le), v - before.get(lab, 0)))
    bounds.sort()
    total = bounds[-1][1]
    if total <= 0:
        return float("nan")
    rank, lo, below = q * total, 0.0, 0.0
    for le, cum in bounds:
        if cum >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * ((rank - below) / max(cum - below, 1e-9))
        lo, below = le, cum
    return lo


def run_engine(h, args, files):
    cmd = [os.path.join(h.build_dir, "winnow"), "classify", "--model", h.model,
           "--batch", str(args.batch_windows), *files]
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    dt = time.monotonic() - t0
    n = len(p.stdout.splitlines())
    if n != len(files):
        raise SystemExit(f"winnow classify printed {n} records for {len(files)} files:\n"
                         + p.stderr.decode()[-2000:])
    return len(files) / dt


def window_lengths(records, max_seq_len):
    """Window lengths ([CLS] and [SEP] included) of the documents, from their
    output records: `chunks` windows, all full but the last (stride 0)."""
    text = max_seq_len - 2
    lengths = []
    for r in records:
        rec = json.loads(r["value"])
        full = rec["chunks"] - 1
        lengths += [max_seq_len] * full + [rec["tokens"] - full * text + 2]
    return lengths


def run_engine_windows(h, args, lengths):
    """The engine alone on these documents' windows, laid out as winnowd
    lays them out (batches of batch_windows, `workers` contexts with
    single-threaded BLAS): `winnow bench` per length, rounded to the
    nearest multiple of 32; returns documents/s."""
    buckets = {}
    for n in lengths:
        b = max(32, int(round(n / 32.0)) * 32)
        buckets[b] = buckets.get(b, 0) + 1
    total = 0.0
    for seq, count in sorted(buckets.items()):
        # A worker's batch: batch_windows windows within the token budget
        # (pipeline.batch_tokens, default 4096); `winnow bench --workers W`
        # splits its batch over W workers.
        per_worker = max(1, min(args.batch_windows, 4096 // seq))
        batch = per_worker * args.workers
        cmd = [os.path.join(h.build_dir, "winnow"), "bench", "--model", h.model,
               "--seq-len", str(seq), "--batch", str(batch),
               "--workers", str(args.workers), "--repeat", "5", "--warmup", "1", "--json"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        if p.returncode:
            raise SystemExit(f"{' '.join(cmd)}: {p.stderr.decode()[-1000:]}")
        r = json.loads(p.stdout.decode().strip().splitlines()[-1])
        total += count * r["median_ms"] / 1000.0 / batch
    return total


def run_daemon(h, args, docs, max_documents, rnd):
    parts = args.partitions
    b = h.broker({"docs": parts, "labels": parts, "docs.dlq": 1})
    d = h.daemon(b, f"winnowd-m{max_documents}-r{rnd}",
                 pipeline={"workers": args.workers, "max_documents": max_documents,
                           "batch_windows": args.batch_windows},
                 limits={"max_input_bytes": "16MiB", "max_document_bytes": "16MiB"})
    d.start()
    d.wait_assigned(parts, timeout=60)
    cctx = H.zstandard.ZstdCompressor()

    def records(prefix, subset):
        return [(i % parts, prefix + k, cctx.compress(t)) for i, (k, t) in enumerate(subset)]

    warm = records(b"warm-", docs[:50])
    h.produce(b.addr, "docs", warm)
    H.wait_for("the warm-up", lambda: h.high_total(b.addr, "labels") >= len(warm), 600, 0.1)
    hist0 = d.metrics()["winnow_document_latency_seconds_bucket"]

    # Throughput: the whole set as a backlog.
    recs = records(b"", docs)
    t0 = time.monotonic()
    h.produce(b.addr, "docs", recs)
    want = len(warm) + len(recs)
    H.wait_for("the backlog", lambda: d._check_alive() and
               h.high_total(b.addr, "labels") >= want, 3600, 0.05)
    rate = len(recs) / (time.monotonic() - t0)
    outputs = [r for r in h.consume(b.addr, "labels") if not r["key"].startswith(b"warm-")]
    hist1 = d.metrics()["winnow_document_latency_seconds_bucket"]
    pipe50 = histogram_quantile(hist0, hist1, 0.5)
    pipe99 = histogram_quantile(hist0, hist1, 0.99)
    err(f"  max_documents {max_documents}: {rate:.1f} documents/s; pipeline latency "
        f"p50 {pipe50 * 1000:.0f} ms, p99 {pipe99 * 1000:.0f} ms")

    # Latency: a paced run at a fraction of that rate.
    pace = max(1.0, rate * args.pace)
    rng = random.Random(rnd)
    sent, t_start, batch_i = 0, time.monotonic(), 0
    while time.monotonic() - t_start < args.paced_seconds:
        due = int(pace * (time.monotonic() - t_start)) + 1 - sent
        if due > 0:
            subset = [rng.choice(docs) for _ in range(due)]
            h.produce(b.addr, "docs", records(b"paced-%d-" % batch_i, subset))
            sent += due
            batch_i += 1
        time.sleep(0.05)
    want += sent
    H.wait_for("the paced run", lambda: h.high_total(b.addr, "labels") >= want, 600, 0.1)
    t_in = {r["key"]: r["timestamp"] for r in h.consume(b.addr, "docs")
            if r["key"].startswith(b"paced-")}
    t_out = {r["key"]: r["timestamp"] for r in h.consume(b.addr, "labels")
             if r["key"].startswith(b"paced-")}
    lat = [t_out[k] - t_in[k] for k in t_in if k in t_out]
    e2e50, e2e99 = percentile(lat, 0.5), percentile(lat, 0.99)
    err(f"  paced at {pace:.1f}/s for {args.paced_seconds} s ({sent} documents): end to end "
        f"p50 {e2e50:.0f} ms, p99 {e2e99:.0f} ms")
    d.terminate()
    b.stop()
    h.close()
    return {"rate": rate, "pipe50": pipe50 * 1000, "pipe99": pipe99 * 1000,
            "e2e50": e2e50, "e2e99": e2e99, "pace": pace, "outputs": outputs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tool", help="winnow-kafka-tool (default BUILD_DIR/winnow-kafka-tool)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--corpus", default="synthetic",
                    help="JSON lines with id and text, or 'synthetic' (default)")
    ap.add_argument("--docs", type=int, default=1000, help="documents (default 1000)")
    ap.add_argument("--partitions", type=int, default=4, help="input partitions (default 4)")
    ap.add_argument("--workers", type=int, default=2, help="pipeline.workers (default 2)")
    ap.add_argument("--batch-windows", type=int, default=16,
                    help="pipeline.batch_windows and classify --batch (default 16)")
    ap.add_argument("--max-documents", default="64,1024",
                    help="pipeline.max_documents values to run (default 64,1024)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, best kept (default 2)")
    ap.add_argument("--pace", type=float, default=0.5,
                    help="paced run's rate as a fraction of the measured one (default 0.5)")
    ap.add_argument("--paced-seconds", type=float, default=10,
                    help="length of the paced run (default 10)")
    args = ap.parse_args()
    mds = [int(x) for x in args.max_documents.split(",")]

    docs = load_docs(args.corpus, args.docs, seed=1)
    os.makedirs(os.path.join(args.workdir, "docs"), exist_ok=True)
    files = []
    for k, t in docs:
        path = os.path.join(args.workdir, "docs", k.decode() + ".txt")
        with open(path, "wb") as f:
            f.write(t)
        files.append(path)
    size = sum(len(t) for _, t in docs)
    err(f"{len(docs)} documents ({args.corpus}), {size / len(docs) / 1024:.1f} KiB mean; "
        f"model {args.model}")

    p = subprocess.run([os.path.join(args.build_dir, "winnow"), "inspect", "--model", args.model],
                       stdout=subprocess.PIPE, check=True, timeout=60)
    max_seq_len = int(next(line.split(":")[1] for line in p.stdout.decode().splitlines()
                           if line.startswith("max_seq_len:")))
    best_engine, best_windows, lengths, best = 0.0, 0.0, None, {}
    for rnd in range(args.rounds):
        err(f"round {rnd + 1}/{args.rounds}")
        h = H.Harness(args.build_dir, args.model, os.path.join(args.workdir, f"r{rnd}"),
                      tool=args.tool)
        try:
            e = run_engine(h, args, files)
            err(f"  engine: {e:.1f} documents/s")
            best_engine = max(best_engine, e)
            for md in mds:
                r = run_daemon(h, args, docs, md, rnd)
                if lengths is None:
                    lengths = window_lengths(r["outputs"], max_seq_len)
                if md not in best or r["rate"] > best[md]["rate"]:
                    best[md] = r
            w = len(docs) / run_engine_windows(h, args, lengths)
            err(f"  engine, these documents' {len(lengths)} windows by `winnow bench`: "
                f"{w:.1f} documents/s")
            best_windows = max(best_windows, w)
        finally:
            h.close()

    print(f"winnowd end to end through winnow-broker vs the engine alone: {len(docs)} "
          f"documents ({os.path.basename(args.corpus)}, {size / len(docs) / 1024:.1f} KiB "
          f"mean, {len(lengths)} windows of at most {max_seq_len} tokens), model "
          f"{os.path.basename(args.model)}, {args.partitions} partitions, {args.workers} "
          f"workers, batch_windows {args.batch_windows}; best of {args.rounds} round(s).\n")
    print("| run | documents/s | vs engine (bench) | vs classify "
          "| pipeline p50 / p99 (backlog) | end to end p50 / p99 (paced) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| engine: `winnow bench`, these windows, batches as winnowd's, "
          f"{args.workers} workers | {best_windows:.1f} | 100% | | | |")
    print(f"| engine: `winnow classify --batch {args.batch_windows}` (per-document "
          f"batches, 1 process) | {best_engine:.1f} | {100 * best_engine / best_windows:.0f}% "
          f"| 100% | | |")
    for md in mds:
        r = best[md]
        print(f"| winnowd, max_documents {md} | {r['rate']:.1f} | "
              f"{100 * r['rate'] / best_windows:.0f}% | {100 * r['rate'] / best_engine:.0f}% "
              f"| {r['pipe50']:.0f} / {r['pipe99']:.0f} ms "
              f"| {r['e2e50']:.0f} / {r['e2e99']:.0f} ms at {r['pace']:.1f}/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
