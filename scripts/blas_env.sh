# Sourced by winnow's scripts: choose OpenBLAS's kernels and threads
# explicitly. OpenBLAS reads OPENBLAS_CORETYPE once, when it loads. Debian 12's
# OpenBLAS 0.3.21 does not recognise Zen 4/5 and falls back to its Haswell
# (AVX2) kernels, about half the speed of its SkylakeX (AVX-512) kernels on
# these CPUs; an inherited preset can be just as wrong. So: AVX-512 with BW
# and VL -> SkylakeX; anything else -> unset, and OpenBLAS detects the CPU.
if grep -qw avx512bw /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
else
  unset OPENBLAS_CORETYPE
fi
# winnow's engine threads are OpenBLAS's: one pool, sized to the cores,
# unless the caller chose.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}
