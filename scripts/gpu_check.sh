#!/usr/bin/env bash
# `make gpu-check`: everything that needs a GPU, in one command, on a bare GPU image that has
# python3 with torch and triton (the device tool's image). On a machine without a GPU it says
# so and exits 0.
#
#   1. install what the image lacks from .whl/ (prepared here by `make wheelhouse`);
#   2. build qupaint with QUPAINT_CUDA=ON for this GPU's architecture;
#   3. run the tests marked `cuda` (CUDA and Triton backends) and the kernel-body tests on the GPU;
#   4. run the GPU benchmark groups; results go to benchmarks/results/*-<gpu>.json and a
#      one-page summary to benchmarks/results/gpu-summary-<gpu>.md (copied to $OUT if set);
#   5. profile the same calls (scripts/gpu_profile.py): kernel time against wall time.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu-check: no GPU is visible (torch.cuda.is_available() is False): nothing to run."
    echo "gpu-check: run it on a GPU machine, e.g. through the device tool, after 'make wheelhouse'."
    exit 0
fi

if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/qupaint-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/qupaint-site${PYTHONPATH:+:$PYTHONPATH}
fi

GPU=$($PY -c "import torch; print(torch.cuda.get_device_name(0))")
TAG=$(echo "$GPU" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/-$//')
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
CAP=${CAP:-$($PY -c "import torch; a, b = torch.cuda.get_device_capability(0); print(f'{a}{b}')")}
echo "gpu-check: $GPU (sm_$CAP), tag $TAG"

# Logs go straight to $OUT when the device tool runs this, so a run stopped at its time limit
# still returns what it printed.
LOGS=${OUT:-/tmp}
SECONDS=0
QUPAINT_CUDA=ON QUPAINT_CUDA_ARCHITECTURES=$CAP QUPAINT_NATIVE=OFF \
    $PY -m pip install --no-build-isolation --no-deps -e . >"$LOGS/gpu-build.log" 2>&1 ||
    { tail -40 "$LOGS/gpu-build.log"; echo "gpu-check: build failed"; exit 1; }
echo "gpu-check: built in ${SECONDS}s"
$PY -c "from qupaint import _C; assert _C.has_cuda() and _C.cuda_device_count() > 0, 'no CUDA kernels or device'" || exit 1

export QUPAINT_BENCH_MACHINE=$TAG
mkdir -p benchmarks/results
# The test modules with GPU cases, named rather than collected from tests/: the GPU image lacks
# the web and database extras, and one module that fails to import stops a whole collection.
GPU_TESTS="tests/test_tmm.py tests/test_tmm_properties.py tests/test_color.py tests/test_stack_color.py
    tests/test_pia.py tests/test_gate.py"
status=0
SECONDS=0
$PY -m pytest $GPU_TESTS -m cuda -q -p no:cacheprovider -rs --durations=5 \
    2>&1 | tee "$LOGS/gpu-tests-cuda.log" || status=1
# every kernel body against its reference, here also launched on the device
$PY -m pytest tests/test_cuda_bodies.py -q -p no:cacheprovider -rs \
    2>&1 | tee "$LOGS/gpu-tests-bodies.log" || status=1
echo "gpu-check: tests took ${SECONDS}s"
$PY -m pytest benchmarks --benchmark-only -q -p no:cacheprovider -k "cuda or gpu or triton or gate" \
    2>&1 | tee "$LOGS/gpu-bench.log" || status=1
# where each benchmark's time goes: kernels against the host (launches, checks, copies)
$PY scripts/gpu_profile.py 2>&1 | grep -v -i warn | tee "$LOGS/gpu-profile.log" || status=1
echo "gpu-check: tests, benchmarks and profile took ${SECONDS}s"
$PY scripts/gpu_summary.py "$GPU" "$TAG" "$LOGS"/gpu-tests-cuda.log "$LOGS"/gpu-tests-bodies.log "$LOGS"/gpu-bench.log "$LOGS"/gpu-profile.log
# the device tool returns at most 8 files: the results travel as one archive
if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu-results.tgz" benchmarks/results/*"$TAG"*; fi
exit $status
