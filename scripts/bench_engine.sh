#!/usr/bin/env bash
# Compares winnow's C engine with PyTorch on the same bert-base-shaped
# weights and the same input ids, and prints a Markdown table to paste into
# docs/performance.md as is (progress goes to stderr).
#
#   scripts/bench_engine.sh                      the full run: a few minutes
#                                                (8 on a 2-core machine busy with other work)
#   scripts/bench_engine.sh --quick              a smoke run, about a minute
#   scripts/bench_engine.sh --shapes "128x1 512x8" --repeat 5
#
# Each shape (seq len x batch) is run in --rounds rounds; a round runs
# `winnow bench` (one context on --threads threads; for batches, also one
# single-threaded context per thread, winnowd's layout) and
# scripts/bench_torch.py back to back, the order swapped from one round to
# the next, so that load from other work hits both alike.
# Each side's table entry is its best round (lowest median), the usual
# guard against a neighbour's burst on a shared machine.
#
# Environment: WINNOW_CACHE (default ~/.cache/winnow) holds the random
# checkpoint and .wnn under bench/, made once and reused; WINNOW_BUILD_DIR
# (default build) is the CMake build directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

py=/usr/bin/python3 # Debian's: the only one with torch and numpy
shapes="128x1 128x8 256x1 256x8 512x1 512x8"
threads=2
rounds=2
repeat=       # empty: chosen per shape, see repeat_for
warmup=       # empty: chosen per shape
quick=0

usage() {
  cat <<EOF
usage: scripts/bench_engine.sh [--quick] [--shapes "LENxBATCH ..."] [--repeat N]
                               [--rounds K] [--threads T]

  --quick          smoke run: 1 round, 1 warm-up and 1 timed call per side
  --shapes LIST    shapes to run, seq len x batch (default "$shapes")
  --repeat N       timed calls per side, shape and round (default: about 30
                   for the smallest shape down to 2 for 512x8, so that the
                   full run takes a few minutes)
  --rounds K       rounds per shape, best median kept (default $rounds)
  --threads T      threads for both sides (default $threads)
EOF
}

die() {
  echo "bench_engine: $*" >&2
  exit 1
}

need_uint() { # need_uint OPTION VALUE MIN
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < $3)); then
    die "$1 must be an integer >= $3, got '$2'"
  fi
}

while (($#)); do
  case $1 in
  --quick) quick=1 ;;
  --shapes) shapes=${2:?--shapes needs a list}; shift ;;
  --repeat) need_uint --repeat "${2:-}" 1; repeat=$2; shift ;;
  --rounds) need_uint --rounds "${2:-}" 1; rounds=$2; shift ;;
  --threads) need_uint --threads "${2:-}" 1; threads=$2; shift ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; die "unknown option '$1'" ;;
  esac
  shift
done
for s in $shapes; do
  [[ $s =~ ^[0-9]+x[0-9]+$ ]] || die "shape '$s' is not LENxBATCH, e.g. 128x8"
done
if ((quick)); then
  rounds=1
  repeat=${repeat:-1}
  warmup=1
fi

# Per-call cost grows with tokens; the budget per shape and round is about
# 8192 tokens' worth of timed calls, within 2..30 calls. winnow bench --gemm
# makes three passes per call (timed, profiled, OpenBLAS alone), torch one.
repeat_for() { # repeat_for TOKENS
  local r=$(((8192 / $1 + rounds - 1) / rounds))
  ((r < 2)) && r=2
  ((r > 30)) && r=30
  echo "${repeat:-$r}"
}
# Two warm-ups where calls are cheap (page faults, OpenBLAS's thread start),
# one where a call takes seconds and is its own warm-up.
warmup_for() { # warmup_for TOKENS
  if [[ -n $warmup ]]; then echo "$warmup"; elif (($1 <= 1024)); then echo 2; else echo 1; fi
}

# OPENBLAS_CORETYPE as winnow's scripts choose it, for both processes: both
# load Debian's OpenBLAS (winnow directly, torch through libblas.so.3), and
# the same kernels on both sides is the point of the comparison.
# shellcheck source=scripts/blas_env.sh
source scripts/blas_env.sh
export OPENBLAS_NUM_THREADS=$threads

build=${WINNOW_BUILD_DIR:-$root/build}
cache=${WINNOW_CACHE:-$HOME/.cache/winnow}/bench
ckpt=$cache/base
wnn=$cache/base.wnn
mkdir -p "$cache"

# Always build: a stale binary would time code that no longer exists.
# Release explicitly, as scripts/test.sh does: a Debug build dir would make
# the engine look several times slower than it is.
echo "== building winnow ($build)" >&2
log=$cache/build.log
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$build" -j"$(nproc)" --target winnow; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die "cannot build winnow, see '$log'"
fi
winnow=$build/winnow

# The checkpoint and its export, made once: written under temporary names
# and renamed, so that an interrupted run never leaves half a model behind
# to be reused.
tmp_ckpt=$cache/base.tmp.$$
tmp_wnn=$cache/base.wnn.tmp.$$
trap 'rm -rf "$tmp_ckpt" "$tmp_wnn"' EXIT
if [[ ! -f $ckpt/pytorch_model.bin || ! -f $ckpt/config.json || ! -f $ckpt/vocab.txt ]]; then
  echo "== making a bert-base-shaped random checkpoint in $ckpt" >&2
  rm -rf "$ckpt" "$wnn"
  "$py" scripts/make_random_checkpoint.py --out "$tmp_ckpt" --layers 12 --hidden 768 \
    --heads 12 --labels 2 --seed 1 >&2
  mv "$tmp_ckpt" "$ckpt"
fi
if [[ ! -f $wnn || $wnn -ot $ckpt/pytorch_model.bin ]]; then
  echo "== exporting $wnn" >&2
  "$py" scripts/export_model.py --checkpoint "$ckpt" --out "$tmp_wnn" >&2
  mv "$tmp_wnn" "$wnn"
fi

# torch's OpenMP pool and OpenBLAS's pthreads are two pools on the same
# cores: torch's elementwise ops run on the first, its GEMMs on the second.
# PASSIVE makes idle OpenMP threads sleep instead of spinning through the
# GEMMs; the high malloc thresholds keep glibc from mmap/munmap-ing every
# large activation (page faults on each call), which the engine's arena
# never pays either.
torch_env=(OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_THRESHOLD_=1000000000
  MALLOC_TRIM_THRESHOLD_=1000000000 "OMP_NUM_THREADS=$threads")

results=$cache/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$results"

run_winnow() { # run_winnow LEN BATCH REPEAT WARMUP ROUND
  local out
  out=$("$winnow" bench --model "$wnn" --seq-len "$1" --batch "$2" --repeat "$3" \
    --warmup "$4" --threads "$threads" --gemm --json) ||
    die "winnow bench failed at ${1}x$2"
  printf '{"side": "winnow", "round": %d, "run": %s}\n' "$5" "$out" >>"$results"
}

# A batch of several windows also runs split over single-threaded contexts,
# one per thread (`--workers`): winnowd's layout, the same thread budget.
run_winnow_workers() { # run_winnow_workers LEN BATCH REPEAT WARMUP ROUND
  local out
  (($2 > 1)) || return 0
  out=$("$winnow" bench --model "$wnn" --seq-len "$1" --batch "$2" --repeat "$3" \
    --warmup "$4" --workers "$threads" --json) ||
    die "winnow bench --workers failed at ${1}x$2"
  printf '{"side": "winnow-workers", "round": %d, "run": %s}\n' "$5" "$out" >>"$results"
}

run_torch() { # run_torch LEN BATCH REPEAT WARMUP ROUND
  local out
  out=$(env "${torch_env[@]}" "$py" scripts/bench_torch.py --checkpoint "$ckpt" \
    --seq-len "$1" --batch "$2" --repeat "$3" --warmup "$4" --threads "$threads" --json) ||
    die "bench_torch.py failed at ${1}x$2"
  printf '{"side": "torch", "round": %d, "run": %s}\n' "$5" "$out" >>"$results"
}

# Other work on the machine is the main source of noise; the load average
# before and after goes into the output so a reader can judge the figures.
load_start=$(cut -d' ' -f1 /proc/loadavg)
start=$SECONDS
# The FP32 FMA peak of the same threads: no GEMM, OpenBLAS's or torch's or
# the engine's, can exceed it, so it bounds any speed-up at equal precision.
peak=$("$winnow" bench --peak --threads "$threads" --json) || die "winnow bench --peak failed"
printf '{"side": "peak", "round": 0, "run": %s}\n' "$peak" >>"$results"
for s in $shapes; do
  len=${s%x*} batch=${s#*x}
  tokens=$((len * batch))
  r=$(repeat_for "$tokens") w=$(warmup_for "$tokens")
  for ((k = 1; k <= rounds; k++)); do
    echo "== ${len}x$batch round $k/$rounds: $w warm-up + $r timed calls per side" >&2
    if ((k % 2)); then
      run_winnow "$len" "$batch" "$r" "$w" "$k"
      run_winnow_workers "$len" "$batch" "$r" "$w" "$k"
      run_torch "$len" "$batch" "$r" "$w" "$k"
    else
      run_torch "$len" "$batch" "$r" "$w" "$k"
      run_winnow_workers "$len" "$batch" "$r" "$w" "$k"
      run_winnow "$len" "$batch" "$r" "$w" "$k"
    fi
  done
done
echo "== done in $((SECONDS - start)) s; raw results in $results" >&2
load_end=$(cut -d' ' -f1 /proc/loadavg)

# Where libblas.so.3 points: torch (BLAS_INFO=generic) calls whatever BLAS
# Debian's alternatives select. The reference BLAS there would make torch
# several times slower and the speed-up column meaningless.
blas_alt=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null |
  sed -n 's/^Value: *//p')
blas_alt=${blas_alt:-$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)}

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
WINNOW_BENCH_CPU=${cpu:-unknown} WINNOW_BENCH_NPROC=$(nproc) \
  WINNOW_BENCH_BLAS_ALT=${blas_alt:-unknown} WINNOW_BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
  WINNOW_BENCH_CORETYPE=${OPENBLAS_CORETYPE:-} WINNOW_BENCH_SHAPES=$shapes \
  WINNOW_BENCH_LOAD="$load_start $load_end" \
  "$py" - "$results" <<'EOF'
# Formats the rounds in the results file as the Markdown for
# docs/performance.md.
import json
import os
import sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
env = os.environ


def best(side, shape):
    cands = [r["run"] for r in runs if r["side"] == side
             and (r["run"]["seq_len"], r["run"]["batch"]) == shape]
    return min(cands, key=lambda r: r["median_ms"]) if cands else None


shapes = [tuple(int(x) for x in s.split("x")) for s in env["WINNOW_BENCH_SHAPES"].split()]
peak = next((r["run"]["peak_gflops"] for r in runs if r["side"] == "peak"), float("nan"))
print("| seq len | batch | winnow median ms | torch median ms | speed-up (torch/winnow) "
      "| winnow, one context per thread, ms | its speed-up "
      "| engine GEMM GFLOP/s | OpenBLAS-alone GFLOP/s | GEMM efficiency % "
      "| OpenBLAS alone, % of FMA peak |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for shape in shapes:
    w, t = best("winnow", shape), best("torch", shape)
    ww = best("winnow-workers", shape)
    eff = 100 * w["gemm_gflops"] / w["sgemm_alone_gflops"]
    split = (f"| {ww['median_ms']:.1f} | {t['median_ms'] / ww['median_ms']:.2f} "
             if ww else "| | ")
    print(f"| {shape[0]} | {shape[1]} | {w['median_ms']:.1f} | {t['median_ms']:.1f} "
          f"| {t['median_ms'] / w['median_ms']:.2f} {split}| {w['gemm_gflops']:.0f} "
          f"| {w['sgemm_alone_gflops']:.0f} | {eff:.0f} "
          f"| {100 * w['sgemm_alone_gflops'] / peak:.0f} |")

w0 = next(r["run"] for r in runs if r["side"] == "winnow")
t0 = next(r["run"] for r in runs if r["side"] == "torch")
rounds = max(r["round"] for r in runs)
share = ", ".join(f"{s[0]}x{s[1]} {100 * best('winnow', s)['gemm_share']:.0f}%"
                  for s in shapes)
print()
print(f"Measured {env['WINNOW_BENCH_DATE']} on {env['WINNOW_BENCH_CPU']}, "
      f"nproc {env['WINNOW_BENCH_NPROC']}, OpenBLAS core {w0['blas_core']} "
      f"(OPENBLAS_CORETYPE={env['WINNOW_BENCH_CORETYPE'] or 'unset'}); "
      f"{w0['threads']} threads each side; winnow kernels {w0['kernels']}; "
      f"torch {t0['torch']}; best median of {rounds} round(s) per side. "
      f"Share of the engine's forward time in matrix products: {share}. FP32 FMA peak of "
      f"{w0['threads']} threads (`winnow bench --peak`): {peak:.0f} GFLOP/s.")

load = [float(x) for x in env["WINNOW_BENCH_LOAD"].split()]
nproc = int(env["WINNOW_BENCH_NPROC"])
# Before the run any load is others'; after it, the benchmark's own
# `threads` busy cores still weigh in the 1-minute average.
busy = load[0] > 0.5 or load[1] > w0["threads"] + 0.5
print(f"Load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after, on {nproc} "
      f"CPUs{': other work shared the machine, absolute figures are pessimistic and ratios indicative' if busy else ''}.")

alt = env["WINNOW_BENCH_BLAS_ALT"]
libs = t0["blas_libs"]
core = t0["blas_core"]
reference_blas = "/blas/" in alt or any("/blas/" in p for p in libs)
print()
if core and not reference_blas:
    print(f"torch's BLAS: BLAS_INFO={t0['blas_info']}, so libblas.so.3, which Debian's "
          f"alternatives resolve to {alt}; the process mapped {', '.join(libs)}: "
          f"OpenBLAS, core {core}, {t0['blas_threads']} threads, the same library "
          f"and kernels as winnow{'' if core == w0['blas_core'] else ' (BUT A DIFFERENT CORE: ' + core + ' vs ' + w0['blas_core'] + ')'}.")
else:
    print("**WARNING: NOT A FAIR COMPARISON. torch does not run on OpenBLAS here.** "
          f"BLAS_INFO={t0['blas_info']}; libblas.so.3 resolves to {alt}; the torch "
          f"process mapped {', '.join(libs) or 'no BLAS library'}. This is the slow "
          "reference BLAS or an unknown one; select OpenBLAS with "
          "`update-alternatives --set libblas.so.3-x86_64-linux-gnu "
          "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3` and run again.")
EOF
