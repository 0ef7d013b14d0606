#!/usr/bin/env bash
# Engine vs reference for every variant of the method (PAPER.md 8), plus a
# bert-base-shaped one: tests/test_method_equivalence.py --bert-base, which
# adds a random 12 x 768 model (12 heads, 3072) with pruning, the fuzzy rule
# and the combining module (p = 0.9, m = 8, combining at layer 6, fuzzy
# budget) on 50 windows of up to 512 tokens. Several minutes on 2 cores, so
# not in CI, where ctest runs the tiny variants only.
#
#   scripts/equivalence_base.sh [WORKDIR] [-- TEST OPTIONS]
#
# WORKDIR (default $WINNOW_BUILD_DIR/equivalence-base) keeps the checkpoints,
# models, windows and both sides' outputs for inspection. Options after --
# go to the test as they are (e.g. -- --only base). WINNOW_BUILD_DIR
# (default build) is the CMake build directory; winnow is built there first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() {
  echo "equivalence_base: $*" >&2
  exit 1
}

build=${WINNOW_BUILD_DIR:-$root/build}
workdir=$build/equivalence-base
if (($#)) && [[ $1 != -- ]]; then
  [[ $1 == -h || $1 == --help ]] && { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
  workdir=$1
  shift
fi
if (($#)); then
  [[ $1 == -- ]] || die "unexpected argument '$1' (test options go after --)"
  shift
fi

# Always build: a stale binary would test code that no longer exists.
# Release, as scripts/test.sh builds it.
mkdir -p "$workdir"
log=$workdir/build.log
echo "== building winnow ($build)"
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$build" -j"$(nproc)" --target winnow; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die "cannot build winnow, see '$log'"
fi

# OpenBLAS's kernels and threads as every winnow script chooses them.
# shellcheck source=scripts/blas_env.sh
source scripts/blas_env.sh

echo "== tests/test_method_equivalence.py --bert-base (files in $workdir)"
start=$SECONDS
status=0
/usr/bin/python3 tests/test_method_equivalence.py --winnow "$build/winnow" \
  --workdir "$workdir" --bert-base "$@" || status=$?
echo "== $((SECONDS - start)) s, exit $status"
exit "$status"
