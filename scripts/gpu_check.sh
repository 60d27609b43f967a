#!/usr/bin/env bash
# `make gpu-check`: everything that needs a GPU, in one command, on a bare GPU image that has
# python3 with torch and triton (the device tool's image). On a machine without a GPU it says
# so and exits 0.
#
#   1. install what the image lacks from .whl/ (prepared here by `make wheelhouse`);
#   2. build qupaint with QUPAINT_CUDA=ON for this GPU's architecture;
#   3. run the tests marked `cuda` and the Triton tests on the GPU;
#   4. run the GPU benchmark groups; results go to benchmarks/results/*-<gpu>.json and a
#      one-page summary to benchmarks/results/gpu-summary-<gpu>.md (copied to $OUT if set).
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

QUPAINT_CUDA=ON QUPAINT_CUDA_ARCHITECTURES=$CAP QUPAINT_NATIVE=OFF \
    $PY -m pip install -q --no-build-isolation --no-deps -e . || { echo "gpu-check: build failed"; exit 1; }
$PY -c "from qupaint import _C; assert _C.has_cuda() and _C.cuda_device_count() > 0, 'no CUDA kernels or device'" || exit 1

export QUPAINT_BENCH_MACHINE=$TAG
mkdir -p benchmarks/results
status=0
$PY -m pytest tests -m cuda -q -p no:cacheprovider -k "not test_real" \
    2>&1 | tee /tmp/gpu-tests-cuda.log || status=1
$PY -m pytest tests/test_pia.py tests/test_gate.py -q -p no:cacheprovider -k triton \
    2>&1 | tee /tmp/gpu-tests-triton.log || status=1
$PY -m pytest benchmarks --benchmark-only -q -p no:cacheprovider -k "cuda or gpu or triton or gate" \
    2>&1 | tee /tmp/gpu-bench.log || status=1
$PY scripts/gpu_summary.py "$GPU" "$TAG" /tmp/gpu-tests-cuda.log /tmp/gpu-tests-triton.log /tmp/gpu-bench.log
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*"$TAG"* /tmp/gpu-*.log "$OUT"/ 2>/dev/null; fi
exit $status
