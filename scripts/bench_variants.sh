#!/usr/bin/env bash
# Benchmarks the variants of the method (PAPER.md 2-4) against dense BERT in
# the same engine, bert-base shape, windows of 512 tokens, and against the
# PyTorch reference running the same variant (it masks pruned tokens; the
# engine drops them). Prints Markdown tables for docs/performance.md on
# stdout (progress goes to stderr).
#
#   scripts/bench_variants.sh              the full run: 2 rounds, about 10 min
#                                          on a 2-core machine busy with other work
#   scripts/bench_variants.sh --rounds 4   narrower ranges, about 25 min
#   scripts/bench_variants.sh --quick      a smoke run, 1 round, 1 timed call each
#   scripts/bench_variants.sh --no-torch   the engine only, about 6 min
#   scripts/bench_variants.sh --report F   the tables of an earlier run again
#
# Variants, all exported from one random bert-base checkpoint (seed 1, with
# winnow.combine.* tensors for m = 8): dense (p = 1.0, no combining, cls
# head); P (p = 0.9, no fuzzy rule); PF budget and PF within (p = 0.9, the
# two readings of PAPER.md 2); C at layer 6 (p = 1.0, m = 8); PFC at layer 6
# and at layer 10 (p = 0.9, fuzzy budget, m = 8). Layers are 0-based: the
# paper's "layer 7" and "layer 11".
#
# Per round, for each stage (engine batch 1; engine batch 8 on one context
# with OpenBLAS's 2-thread pool; engine batch 8 split over 2 workers with
# single-threaded BLAS, winnowd's layout; reference batch 1; reference batch
# 8) every variant runs back to back, the order reversed from one round to
# the next, so that load from other work hits all variants alike. Times in
# the tables are the best (lowest) median over the rounds; a speed-up over
# dense is the median over the rounds of the ratio of dense's median to the
# variant's in the same round (on a shared machine one variant's best round
# can fall in a quiet minute that dense's never did), shown with its range
# and with the speed-up the FLOPs predict (from the reference's kept sets),
# and flagged when it exceeds that by more than 15%: then it is noise. Peak
# RSS is GNU time's %M (the process's VmHWM) of each run, the largest over
# the rounds. Raw results: bench/variants-results-*.jsonl in the cache.
#
# Environment: WINNOW_CACHE (default ~/.cache/winnow) holds the checkpoint
# and the exported variants under bench/, made once and reused (re-exported
# when the checkpoint or the export flags change); WINNOW_BUILD_DIR (default
# build) is the CMake build directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command_line=$(printf '%q ' "scripts/bench_variants.sh" "$@")
command_line=${command_line% }

py=/usr/bin/python3 # Debian's: the only one with torch and numpy
seq_len=512
threads=2
rounds=2
repeat=   # empty: per batch size, see below
quick=0
torch=1
torch_batches="1 8"
workers_layout=1

usage() {
  cat <<EOF
usage: scripts/bench_variants.sh [--quick] [--rounds N] [--repeat N] [--no-torch]
                                 [--torch-batches "1 8"] [--no-workers]
       scripts/bench_variants.sh --report RESULTS.jsonl

  --quick             smoke run: 1 round, 1 timed call per run
  --rounds N          rounds, best median kept (default $rounds)
  --repeat N          timed calls per run (default: engine 5 at batch 1 and 3
                      at batch 8, reference 3 at batch 1 and 2 at batch 8)
  --no-torch          skip the PyTorch reference (the FLOPs column, which
                      needs its per-layer kept sets, then reads n/a)
  --torch-batches L   batch sizes the reference runs (default "$torch_batches")
  --no-workers        skip the batch-8 run split over $threads workers
  --report FILE       print the tables of an earlier run's results file again
                      (its path is printed at the end of each run)
EOF
}

die() {
  echo "bench_variants: $*" >&2
  exit 1
}

need_uint() { # need_uint OPTION VALUE MIN
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < $3)); then
    die "$1 must be an integer >= $3, got '$2'"
  fi
}

# report FILE: the results file of a run as Markdown, on stdout.
report() {
  "$py" - "$1" <<'EOF'
# Formats the results file as Markdown.
import json
import statistics
import sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
metas = [r for r in runs if r["kind"] == "meta"]
if not metas:
    sys.exit(f"bench_variants: '{sys.argv[1]}' has no meta line: not a finished run")
env = metas[-1]["env"]
variants = [line.split("\t") for line in env["WINNOW_BENCH_VARIANTS"].splitlines()]
names = [v[0] for v in variants]
flags = {v[0]: v[1] for v in variants}
file_mb = {v[0]: int(v[2]) / 1e6 for v in variants}
workers = int(env["WINNOW_BENCH_WORKERS"])
nproc = int(env["WINNOW_BENCH_NPROC"])


def sel(kind, variant, batch=None, workers=None):
    return [r for r in runs if r["kind"] == kind and r["variant"] == variant
            and (batch is None or r["batch"] == batch)
            and (workers is None or r.get("workers") == workers)]


def best(kind, variant, batch, workers=None):
    c = sel(kind, variant, batch, workers)
    return min(c, key=lambda r: r["run"]["median_ms"]) if c else None


def ms(kind, variant, batch, workers=None):
    b = best(kind, variant, batch, workers)
    return b["run"]["median_ms"] if b else None


def peak_mb(kind, variant, batch, workers=None):
    c = sel(kind, variant, batch, workers)
    # GNU time's %M is in KiB; MB here are 10^6 bytes, as the file sizes.
    return max(r["peak_rss_kb"] for r in c) * 1024 / 1e6 if c else None


def fmt(x, spec=".0f"):
    return "n/a" if x is None else format(x, spec)


def ratio(a, b, spec=".2f"):
    return "n/a" if a is None or b is None else format(a / b, spec) + "x"


def round_ratios(kind, variant, batch, workers=None):
    """dense's median over the variant's, round by round: each pair ran
    within a minute or two of each other, under much the same load."""
    out = []
    for r in sel(kind, variant, batch, workers):
        d = [x for x in sel(kind, "dense", batch, workers) if x["round"] == r["round"]]
        if d:
            out.append(d[0]["run"]["median_ms"] / r["run"]["median_ms"])
    return sorted(out)


def paired(variant, batch, workers):
    """The speed-up over dense: the median of the per-round ratios. More
    robust than best over best under bursty load, where one variant's best
    round can fall in a quiet minute that dense's never did."""
    rr = round_ratios("engine", variant, batch, workers)
    return statistics.median(rr) if rr else None


def speedup(variant, batch, workers):
    """The paired speed-up, and the per-round range when there are rounds."""
    rr = round_ratios("engine", variant, batch, workers)
    if not rr:
        return "n/a"
    text = f"{statistics.median(rr):.2f}x"
    if len(rr) > 1 and variant != "dense":
        text += f" ({rr[0]:.2f}-{rr[-1]:.2f})"
    if implausible(variant, statistics.median(rr)):
        text += " !"
    return text


# A speed-up this far above what the FLOPs allow is not the engine's: the
# dense runs it is measured against were slowed by other work.
PLAUSIBLE = 1.15


def implausible(variant, speed):
    fr = flops_ratio(variant)
    return fr is not None and speed is not None and speed > PLAUSIBLE / fr


def short(flag_text):
    """Export flags as a few words."""
    f = flag_text.split()
    get = lambda k: f[f.index(k) + 1] if k in f else None  # noqa: E731
    words = [f"p={get('--keep-ratio')}"]
    if float(get("--keep-ratio")) < 1:
        words.append("no fuzzy" if "--no-fuzzy" in f else f"fuzzy {get('--fuzzy-mode')}")
    c = get("--combine-layer")
    words.append("no combining, cls head" if c == "none"
                 else f"combine at {c}, m={get('--combine-tokens')}")
    return ", ".join(words)


kept_engine = {r["variant"]: r["engine_kept"] for r in runs if r["kind"] == "kept"}


def ref_kept(variant):
    """The reference's mean |K_0|..|K_P| per window (batch 8 preferred)."""
    for b in (8, 1):
        c = sel("torch", variant, b)
        if c:
            return c[0]["run"]["kept_mean"], c[0]["run"]["variant"]
    return None, None


def flops(kept, P, m, cls_head, L=12, d=768):
    """Forward FLOPs of one window as the engine runs it (a multiply-add is
    2), from |K_0|..|K_P|: pruned layer l runs the QKV projection and the
    attention on its a = |K_l| + m rows and, once the decision is taken,
    the output projection and the feed-forward (4d) on b = |K_l+1| + m
    rows, but for the last layer of a [CLS]-pooled model on the [CLS] row
    alone (keep_cls_rows in model/encoder.c); the combining module
    (PAPER.md 3) projects the r = |K_P| kept tokens and the m combination
    tokens; layers P+1..L-1 run on m rows. Embeddings, LayerNorms and the
    head are left out."""
    total = 0.0
    for l in range(P):
        a, b = kept[l] + m, kept[l + 1] + m
        if l == L - 1 and cls_head:
            b = 1
        total += 2 * a * d * 3 * d + 4 * a * a * d + 2 * b * d * d + 2 * b * d * 8 * d
    if P < L:
        r = kept[P]
        total += 2 * d * d * (2 * r + 2 * m) + 2 * m * r * d
        total += (L - P - 1) * (2 * m * d * 12 * d + 4 * m * m * d)
    return total


def flops_ratio(variant):
    """The variant's FLOPs over dense's, on the reference's mean kept
    counts (batch 8 preferred)."""
    kept, cfg = ref_kept(variant)
    if kept is None:
        return None
    L, n = 12, kept[0]
    P = cfg["combine_layer"]
    if P is None:
        P, m = L, 0
    else:
        m = cfg["combine_tokens"]
    cls_head = P == L and cfg.get("pooling") == "cls"
    return (flops(kept, P, m, cls_head) /
            flops([n] * (L + 1), L, 0, cls_head=True))


d1, d8 = ms("engine", "dense", 1, 1), ms("engine", "dense", 8, 1)
d8w = ms("engine", "dense", 8, workers) if workers else None
first = next(r for r in runs if r["kind"] == "engine")["run"]
torch_runs = [r for r in runs if r["kind"] == "torch"]
load = [float(x) for x in env["WINNOW_BENCH_LOAD"].split()]
loads = [r["load1"] for r in runs if "load1" in r]

print(f"Machine: {env['WINNOW_BENCH_CPU']}, nproc {nproc}, OpenBLAS core "
      f"{first['blas_core']} (OPENBLAS_CORETYPE={env['WINNOW_BENCH_CORETYPE'] or 'unset'}), "
      f"winnow kernels {first['kernels']}; {env['WINNOW_BENCH_DATE']}; load average (1 min) "
      f"{load[0]:.2f} before, {load[1]:.2f} after, {min(loads):.2f}..{max(loads):.2f} "
      f"(mean {statistics.mean(loads):.2f}) at the start of each run, on {nproc} CPUs; "
      f"`{env['WINNOW_BENCH_COMMAND']}` ({env['WINNOW_BENCH_SECONDS']} s).")
print()
print(f"bert-base shape (12 layers, d 768, 12 heads, random weights, seed 1), windows of "
      f"{first['seq_len']} tokens, {first['threads']} threads (one context on OpenBLAS's "
      f"pool, or {workers or 2} workers with single-threaded BLAS); "
      f"engine median ms, best of {env['WINNOW_BENCH_ROUNDS']} round(s); x = speed-up over "
      f"dense in the same engine and layout: the median over the rounds of dense's median "
      f"over the variant's in the same round (a minute or two apart), in brackets their "
      f"range. |K_P|: tokens in the last kept set "
      f"([CLS]/[SEP] included), mean of the 8 batch windows, engine (reference). "
      f"FLOPs: the forward's FLOPs as the engine runs it, relative to dense, from the "
      f"reference's kept sets (the paper reports 0.544x for ours-PFC at its layer 7); its "
      f"inverse is the speed-up to expect if time follows FLOPs.")
print()
hdr = "| variant | settings | \\|K_P\\| engine (ref) | FLOPs / dense | batch 1 ms | x | batch 8 ms, 1 ctx | x |"
sep = "|---|---|---:|---:|---:|---:|---:|---:|"
if workers:
    hdr += f" batch 8 ms, {workers} workers | x |"
    sep += "---:|---:|"
print(hdr)
print(sep)
for n in names:
    ke = kept_engine.get(n)
    kr, _ = ref_kept(n)
    kept = fmt(statistics.mean(ke), ".1f") if ke else "n/a"
    if kr:
        kept += f" ({kr[-1]:.1f})"
    tl = flops_ratio(n)
    e1, e8 = ms("engine", n, 1, 1), ms("engine", n, 8, 1)
    row = (f"| {n} | {short(flags[n])} | {kept} | {fmt(tl, '.3f')} | {fmt(e1)} | "
           f"{speedup(n, 1, 1)} | {fmt(e8)} | {speedup(n, 8, 1)} |")
    if workers:
        ew = ms("engine", n, 8, workers)
        row += f" {fmt(ew)} | {speedup(n, 8, workers)} |"
    print(row)

if any(implausible(n, paired(n, b, w)) for n in names
       for b, w in ((1, 1), (8, 1), (8, workers or 1))):
    print()
    print(f"! more than {PLAUSIBLE:.2f} times the speed-up the FLOPs allow: other work slowed "
          f"the dense runs of those rounds more than the variant's; not the engine's figure.")
print()
print("Memory, batch 8, one context: peak RSS is the whole process's high-water mark "
      "(VmHWM, GNU time %M; it includes the model file, mapped and populated); "
      "activations is the engine's arena, allocated once for the largest batch.")
print()
print("| variant | model file MB | peak RSS MB | x dense | peak RSS less model file MB | x dense | activations MB | x dense |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
dense_rss = peak_mb("engine", "dense", 8, 1)
dense_act = best("engine", "dense", 8, 1)["run"]["memory_mb"]
dense_anon = dense_rss - file_mb["dense"] if dense_rss is not None else None
for n in names:
    rss = peak_mb("engine", n, 8, 1)
    act = best("engine", n, 8, 1)["run"]["memory_mb"]
    anon = rss - file_mb[n] if rss is not None else None
    print(f"| {n} | {file_mb[n]:.0f} | {fmt(rss)} | {ratio(rss, dense_rss)} | {fmt(anon)} | "
          f"{ratio(anon, dense_anon)} | {act:.1f} | {ratio(act, dense_act)} |")

if torch_runs:
    tb = sorted({r["batch"] for r in torch_runs})
    t = torch_runs[0]["run"]
    print()
    print(f"PyTorch reference (scripts/winnow_ref, forward() of the same .wnn: pruned tokens "
          f"are masked, every layer before the combining module runs on all "
          f"{first['seq_len']} tokens, importance in float64), torch {t['torch']}, "
          f"OpenBLAS core {t['blas_core']}, {t['blas_threads']} threads; median ms, "
          f"best of the rounds. Engine x ref: the engine's speed-up over the reference "
          f"on the same variant (engine batch 8: one context).")
    print()
    hdr, sep = "| variant |", "|---|"
    for b in tb:
        hdr += f" ref batch {b} ms | ref x dense ref | engine x ref |"
        sep += "---:|---:|---:|"
    hdr += " ref peak RSS MB (batch " + str(tb[-1]) + ") |"
    sep += "---:|"
    print(hdr)
    print(sep)
    for n in names:
        row = f"| {n} |"
        for b in tb:
            tm = ms("torch", n, b)
            row += (f" {fmt(tm)} | {ratio(ms('torch', 'dense', b), tm)} | "
                    f"{ratio(tm, ms('engine', n, b, 1))} |")
        row += f" {fmt(peak_mb('torch', n, tb[-1]))} |"
        print(row)

# The issue's targets.
print()
print("Targets (the paper, training on its hardware: ours-P 1.33x, ours-PFC at its layer 7 "
      "1.64x speed and 0.61x memory):")
print()


def check(label, value, goal, higher=True, spread=(), expect=None):
    """Prints the verdict on value; with the per-round ratios in spread,
    a target inside their range is reported as not settled by this run."""
    if value is None:
        print(f"* {label}: not measured")
        return
    ok = value >= goal if higher else value <= goal
    extra, caveats = "", []
    if len(spread) > 1:
        extra = f" (per round {spread[0]:.2f}-{spread[-1]:.2f})"
        if spread[0] < goal < spread[-1]:
            caveats.append("the rounds straddle the target, not settled under this load")
    if expect:
        extra += f", {expect:.2f}x expected from FLOPs"
        if value > PLAUSIBLE * expect:
            caveats.append("far above what the FLOPs allow: dense was slowed by other "
                           "work in these rounds, the figure is noise")
    verdict = ("MET" if ok else "NOT MET") + (" (but " + "; ".join(caveats) + ")" if caveats else "")
    print(f"* {label}: {value:.2f}x{extra}, target {'>=' if higher else '<='} {goal}x: "
          f"{verdict}")


layouts = [(1, 1, d1, "batch 1"), (8, 1, d8, "batch 8, 1 ctx")]
if workers:
    layouts.append((8, workers, d8w, f"batch 8, {workers} workers"))
for n, goal in (("PFC@6", 2.2), ("PF-budget", 1.5), ("PF-within", 1.5)):
    fr = flops_ratio(n)
    for b, w, dense, label in layouts:
        check(f"{n} speed-up, {label}", paired(n, b, w), goal,
              spread=round_ratios("engine", n, b, w), expect=1 / fr if fr else None)
rss = peak_mb("engine", "PFC@6", 8, 1)
check("PFC@6 peak RSS, batch 8, 1 ctx", rss / dense_rss if rss else None, 0.6, higher=False)
check("PFC@6 peak RSS less model file, batch 8, 1 ctx",
      (rss - file_mb["PFC@6"]) / dense_anon if rss else None, 0.6, higher=False)
act = best("engine", "PFC@6", 8, 1)["run"]["memory_mb"]
check("PFC@6 activation memory, batch 8", act / dense_act, 0.6, higher=False)

busy = load[0] > 0.5 or max(loads) > 0.5
if busy:
    print()
    print(f"Other work shared the {nproc} CPUs (load above): absolute times are pessimistic "
          f"and the ratios carry the noise of that load (see the per-round ranges); more "
          f"--rounds narrow them.")
    if kept_engine.get("P") and kept_engine.get("P") == kept_engine.get("PF-budget"):
        print("P and PF-budget kept as many tokens in every window (at p = 0.9 the fuzzy "
              "rule changes nothing in budget mode, PAPER.md 2), so they do the same work: "
              "the gap between their times is noise.")
EOF
}

while (($#)); do
  case $1 in
  --report)
    [[ -f ${2:-} ]] || die "--report needs a results file, got '${2:-}'"
    report "$2"
    exit
    ;;
  --quick) quick=1 ;;
  --rounds) need_uint --rounds "${2:-}" 1; rounds=$((10#$2)); shift ;;
  --repeat) need_uint --repeat "${2:-}" 1; repeat=$((10#$2)); shift ;;
  --no-torch) torch=0 ;;
  --torch-batches) torch_batches=${2-}; shift ;;
  --no-workers) workers_layout=0 ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; die "unknown option '$1'" ;;
  esac
  shift
done
for b in $torch_batches; do
  [[ $b == 1 || $b == 8 ]] || die "--torch-batches takes 1 and/or 8, got '$b'"
done

# Timed calls and warm-ups: about 1 s per engine call at batch 1 and 4 s at
# batch 8 on 2 busy cores, the reference about twice that.
if ((quick)); then
  rounds=1
  repeat=${repeat:-1}
fi
e_rep1=${repeat:-5} e_rep8=${repeat:-3} t_rep1=${repeat:-3} t_rep8=${repeat:-2}
warm1=1 warm8=1
((quick)) && warm8=0

[[ -x /usr/bin/time ]] || die "GNU time is missing (/usr/bin/time): apt-get install -y time"

# shellcheck source=scripts/blas_env.sh
source scripts/blas_env.sh
export OPENBLAS_NUM_THREADS=$threads

build=${WINNOW_BUILD_DIR:-$root/build}
cache=${WINNOW_CACHE:-$HOME/.cache/winnow}/bench
ckpt=$cache/base-c8
vdir=$cache/variants
mkdir -p "$cache" "$vdir"

# Always build, Release, as scripts/bench_engine.sh does.
echo "== building winnow ($build)" >&2
log=$cache/build-variants.log
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$build" -j"$(nproc)" --target winnow; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die "cannot build winnow, see '$log'"
fi
winnow=$build/winnow

# The checkpoint: bench_engine.sh's conventions (bert-base shape, seed 1,
# 2 labels), plus the combining module's tensors, whose shapes do not depend
# on the layer it replaces. Written under a temporary name and renamed, so
# that an interrupted run never leaves half a model to be reused.
tmp_ckpt=$cache/base-c8.tmp.$$
tmp_out=$(mktemp -d "$cache/variants-run.XXXXXX")
trap 'rm -rf "$tmp_ckpt" "$tmp_out"; rm -f "$vdir"/*.tmp.$$' EXIT
if [[ ! -f $ckpt/pytorch_model.bin || ! -f $ckpt/config.json || ! -f $ckpt/vocab.txt ]]; then
  echo "== making a bert-base-shaped random checkpoint with m = 8 combination tokens in $ckpt" >&2
  rm -rf "$ckpt"
  "$py" scripts/make_random_checkpoint.py --out "$tmp_ckpt" --layers 12 --hidden 768 \
    --heads 12 --labels 2 --seed 1 --combine-layer 6 --combine-tokens 8 >&2
  mv "$tmp_ckpt" "$ckpt"
fi

# name|export flags, in table order; dense first (the ratios' base).
variants=(
  "dense|--keep-ratio 1.0 --combine-layer none --pooling cls"
  "P|--keep-ratio 0.9 --no-fuzzy --combine-layer none --pooling cls"
  "PF-budget|--keep-ratio 0.9 --fuzzy --fuzzy-mode budget --combine-layer none --pooling cls"
  "PF-within|--keep-ratio 0.9 --fuzzy --fuzzy-mode within --combine-layer none --pooling cls"
  "C@6|--keep-ratio 1.0 --combine-layer 6 --combine-tokens 8"
  "PFC@6|--keep-ratio 0.9 --fuzzy --fuzzy-mode budget --combine-layer 6 --combine-tokens 8"
  "PFC@10|--keep-ratio 0.9 --fuzzy --fuzzy-mode budget --combine-layer 10 --combine-tokens 8"
)
names=()
declare -A flags file
for v in "${variants[@]}"; do
  n=${v%%|*}
  names+=("$n")
  flags[$n]=${v#*|}
  file[$n]=$vdir/${n//@/-at-}.wnn
done

# Each variant's .wnn, with its export flags beside it: re-exported when the
# flags or the checkpoint changed.
for n in "${names[@]}"; do
  f=${file[$n]}
  if [[ ! -f $f || $f -ot $ckpt/pytorch_model.bin || "$(cat "$f.args" 2>/dev/null)" != "${flags[$n]}" ]]; then
    echo "== exporting $n: ${flags[$n]}" >&2
    # shellcheck disable=SC2086 # the flags are words
    "$py" scripts/export_model.py --checkpoint "$ckpt" --out "$f.tmp.$$" --name "bench-$n" \
      ${flags[$n]} >&2
    mv "$f.tmp.$$" "$f"
    printf '%s' "${flags[$n]}" >"$f.args"
  fi
done

torch_env=(OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_THRESHOLD_=1000000000
  MALLOC_TRIM_THRESHOLD_=1000000000 "OMP_NUM_THREADS=$threads")

results=$cache/variants-results-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$results"

load1() { cut -d' ' -f1 /proc/loadavg; }

# peak_kb FILE: GNU time's %M, the last line of its output file (a failed
# command adds a line before it).
peak_kb() { tail -n 1 "$1"; }

# median_of JSON: the median_ms field of a run, for the progress lines.
median_of() {
  # shellcheck disable=SC2001 # a regex capture, not a plain substitution
  sed 's/.*"median_ms": \([0-9.]*\).*/\1/' <<<"$1"
}

run_engine() { # run_engine VARIANT BATCH WORKERS REPEAT WARMUP ROUND
  local out load rss=$tmp_out/rss
  load=$(load1)
  out=$(/usr/bin/time -f %M -o "$rss" "$winnow" bench --model "${file[$1]}" \
    --seq-len "$seq_len" --batch "$2" --workers "$3" --repeat "$4" --warmup "$5" \
    --threads "$threads" --json) || die "winnow bench failed: $1 batch $2 workers $3"
  printf '{"kind": "engine", "variant": "%s", "round": %d, "batch": %d, "workers": %d, "peak_rss_kb": %d, "load1": %s, "run": %s}\n' \
    "$1" "$6" "$2" "$3" "$(peak_kb "$rss")" "$load" "$out" >>"$results"
  echo "   $1: $(median_of "$out") ms" >&2
}

run_torch() { # run_torch VARIANT BATCH REPEAT WARMUP ROUND
  local out load rss=$tmp_out/rss
  load=$(load1)
  out=$(env "${torch_env[@]}" /usr/bin/time -f %M -o "$rss" "$py" scripts/bench_torch.py \
    --model "${file[$1]}" --forward reference --seq-len "$seq_len" --batch "$2" \
    --repeat "$3" --warmup "$4" --threads "$threads" --json) ||
    die "bench_torch.py failed: $1 batch $2"
  printf '{"kind": "torch", "variant": "%s", "round": %d, "batch": %d, "peak_rss_kb": %d, "load1": %s, "run": %s}\n' \
    "$1" "$5" "$2" "$(peak_kb "$rss")" "$load" "$out" >>"$results"
  echo "   $1: $(median_of "$out") ms" >&2
}

load_start=$(load1)
start=$SECONDS

# The engine's last kept set K_P (K_L without combining) on the very ids
# `winnow bench` feeds it at batch 8 (window 0 is the batch-1 window):
# `winnow logits --retained` lists K_P less [CLS] and [SEP].
echo "== engine kept sets on the benchmark ids" >&2
"$py" - "$ckpt/vocab.txt" "$seq_len" 8 >"$tmp_out/ids" <<'EOF'
import sys
sys.path.insert(0, "scripts")
import bench_torch  # noqa: E402
vocab = {t: i for i, t in enumerate(l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8"))}
ids = bench_torch.bench_ids(int(sys.argv[2]), int(sys.argv[3]), len(vocab),
                            vocab.get("[CLS]", bench_torch.CLS_ID),
                            vocab.get("[SEP]", bench_torch.SEP_ID))
for row in ids.tolist():
    print(" ".join(map(str, row)))
EOF
for n in "${names[@]}"; do
  "$winnow" logits --model "${file[$n]}" --batch 8 --retained <"$tmp_out/ids" >"$tmp_out/kept" ||
    die "winnow logits failed for $n"
  kept=$(awk -F'\t' '{ printf "%s%d", (NR > 1 ? ", " : ""), split($2, a, " ") + 2 }' "$tmp_out/kept")
  printf '{"kind": "kept", "variant": "%s", "engine_kept": [%s]}\n' "$n" "$kept" >>"$results"
done

for ((k = 1; k <= rounds; k++)); do
  order=("${names[@]}")
  if ((k % 2 == 0)); then # reversed on even rounds
    order=()
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done
  fi
  echo "== round $k/$rounds: engine batch 1 ($warm1 warm-up + $e_rep1 timed), load $(load1)" >&2
  for n in "${order[@]}"; do run_engine "$n" 1 1 "$e_rep1" "$warm1" "$k"; done
  echo "== round $k/$rounds: engine batch 8, one context ($warm8 + $e_rep8), load $(load1)" >&2
  for n in "${order[@]}"; do run_engine "$n" 8 1 "$e_rep8" "$warm8" "$k"; done
  if ((workers_layout)); then
    echo "== round $k/$rounds: engine batch 8, $threads workers ($warm8 + $e_rep8), load $(load1)" >&2
    for n in "${order[@]}"; do run_engine "$n" 8 "$threads" "$e_rep8" "$warm8" "$k"; done
  fi
  if ((torch)); then
    for b in $torch_batches; do
      if ((b == 1)); then r=$t_rep1 w=$warm1; else r=$t_rep8 w=$warm8; fi
      echo "== round $k/$rounds: PyTorch reference batch $b ($w + $r), load $(load1)" >&2
      for n in "${order[@]}"; do run_torch "$n" "$b" "$r" "$w" "$k"; done
    done
  fi
done
load_end=$(load1)
echo "== done in $((SECONDS - start)) s; raw results in $results" >&2

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
flag_lines=$(for n in "${names[@]}"; do printf '%s\t%s\t%s\n' "$n" "${flags[$n]}" "$(stat -c %s "${file[$n]}")"; done)
# The run's circumstances, as the last line of the results file, so that
# --report can format it again later.
WINNOW_BENCH_CPU=${cpu:-unknown} WINNOW_BENCH_NPROC=$(nproc) \
  WINNOW_BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
  WINNOW_BENCH_CORETYPE=${OPENBLAS_CORETYPE:-} WINNOW_BENCH_LOAD="$load_start $load_end" \
  WINNOW_BENCH_COMMAND=$command_line WINNOW_BENCH_VARIANTS=$flag_lines \
  WINNOW_BENCH_ROUNDS=$rounds WINNOW_BENCH_WORKERS=$((workers_layout ? threads : 0)) \
  WINNOW_BENCH_SECONDS=$((SECONDS - start)) \
  "$py" -c 'import json, os; print(json.dumps({"kind": "meta", "env": {k: v for k, v in os.environ.items() if k.startswith("WINNOW_BENCH_")}}))' >>"$results"
report "$results"
