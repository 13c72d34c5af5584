#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (jax with CUDA, flax, optax, orbax and
# chex preinstalled, nothing to install, no network), run from the repository root:
#
#     OUT=/some/dir tools/gpu_check.sh [SECONDS]
#
# (BENCH_ARGS=--quick shrinks the benchmark to its smoke run, to try the script anywhere.)
# 1. the GPU benchmark set (`python -m gradchain bench --gpu`, under 8 minutes) into
#    $OUT/bench-gpu.{json,md}; its report is rewritten after every section, so a run
#    cut short still leaves figures;
# 2. in the time left, when pytest is importable there, the test files most tied to the
#    device (precision, layouts, clipping, training) on the GPU: $OUT/tests-gpu.{log,xml}.
#
# SECONDS (default 570) bounds the whole; the benchmark gets all of it but 60 s. Every
# step's exit status is in $OUT/gpu-check.log; the script's own is the benchmark's.
set -u
out=${OUT:?set OUT to the folder the reports go to}
budget=${1:-570}
mkdir -p "$out"
export PYTHONPATH=.
log="$out/gpu-check.log"
start=$SECONDS

{ date -u; if command -v nvidia-smi > /dev/null; then nvidia-smi 2>&1; else echo "nvidia-smi: not found"; fi
  python -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1; } > "$log"

timeout --signal=INT --kill-after=20 $((budget - 60)) \
    python -m gradchain bench --gpu ${BENCH_ARGS:-} --out "$out" > "$out/bench-gpu.log" 2>&1
bench=$?
echo "bench --gpu: exit $bench after $((SECONDS - start)) s" >> "$log"

left=$((budget - (SECONDS - start) - 15))
if ! python -c "import pytest" 2> /dev/null; then
    echo "tests: not run, pytest is not installed here" >> "$log"
elif [ "$left" -lt 30 ]; then
    echo "tests: not run, $left s left" >> "$log"
else
    timeout --signal=INT --kill-after=10 "$left" python -m pytest -q -p no:cacheprovider \
        --continue-on-collection-errors --junitxml "$out/tests-gpu.xml" \
        tests/test_precision.py tests/test_mixed_precision.py tests/test_overflow_nan.py \
        tests/test_layout_equivalence.py tests/test_l2_global_clipping.py tests/test_flatten.py \
        tests/test_catalog_vs_optax.py tests/test_complex.py tests/test_python_scalars.py \
        tests/test_accumulate.py tests/test_federated_simulation.py tests/test_flax_training.py \
        > "$out/tests-gpu.log" 2>&1
    echo "tests: exit $? after $((SECONDS - start)) s" >> "$log"
fi
exit "$bench"
