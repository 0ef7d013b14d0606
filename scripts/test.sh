#!/usr/bin/env bash
# Installs what is missing, builds winnow (Release, then ASan+UBSan) and runs
# every test through ctest. This is what CI runs (.ci/run).
#
#   scripts/test.sh            everything
#   WINNOW_SKIP_ASAN=1 ...     skip the ASan+UBSan build (local iteration)
#   WINNOW_SKIP_TSAN=1 ...     skip the TSan build
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
source scripts/blas_env.sh
jobs=$(nproc)

echo "== build (Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "== tests (Release)"
ctest --test-dir build --output-on-failure -j"$jobs"

if [[ -z ${WINNOW_SKIP_ASAN:-} ]]; then
  echo "== build (ASan+UBSan)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWINNOW_SANITIZE=address >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
  echo "== unit tests and the engine's forward pass (ASan+UBSan)"
  # OpenBLAS keeps its thread buffers until exit; LeakSanitizer would report
  # them, so leaks are checked (detect_leaks=1) but OpenBLAS runs 1 thread.
  OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -L 'unit|sanitized'
fi
if [[ -z ${WINNOW_SKIP_TSAN:-} ]]; then
  echo "== build (TSan)"
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DWINNOW_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$jobs" >/dev/null
  echo "== pipeline tests (TSan)"
  # One BLAS thread: OpenBLAS's own pool is not instrumented; winnow's
  # workers are the threads under test.
  OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -j"$jobs" -L pipeline
fi
echo "== all tests passed"
