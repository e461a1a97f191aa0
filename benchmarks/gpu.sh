#!/usr/bin/env bash
# GPU benchmark for an accelerator machine (NVIDIA H200): run from the repository root.
#
#   bash benchmarks/gpu.sh [gpu_bench.py options]
#
# 1. installs jaxmmcl with the CUDA 12 build of jax into .venv-gpu (reused if it works);
# 2. runs benchmarks/gpu_bench.py (under 5 minutes): matmul peaks (TF32, float32, float64),
#    the paper-size training step for 1, 8 and 30 vmapped runs, the paper-size evaluation;
# 3. prints a Markdown block for benchmarks/RESULTS.md and writes it to $OUT/gpu_results.md
#    (or ./gpu_results.md when $OUT is not set).
#
# Environment: PYTHON (default python3), GPU_BENCH_TIMEOUT (seconds, default 290).
set -uo pipefail

PYTHON=${PYTHON:-python3}
VENV=.venv-gpu
OUT_DIR=${OUT:-.}
TIMEOUT=${GPU_BENCH_TIMEOUT:-290}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || echo "gpu.sh: nvidia-smi not found; continuing" >&2

gpu_ready() {
  "$VENV/bin/python" - <<'EOF' 2>/dev/null
import jax
assert jax.default_backend() == "gpu", jax.default_backend()
print("jax", jax.__version__, jax.devices())
EOF
}

if [ ! -x "$VENV/bin/python" ] || ! gpu_ready; then
  echo "gpu.sh: installing jaxmmcl and jax[cuda12] into $VENV" >&2
  "$PYTHON" -m venv "$VENV" || { echo "gpu.sh: cannot create a venv with $PYTHON" >&2; exit 3; }
  if ! "$VENV/bin/python" -m pip install -q -e . "jax[cuda12]>=0.10.2,<0.11"; then
    cat >&2 <<'EOF'
gpu.sh: FAILED to install the CUDA build of jax (pip install "jax[cuda12]>=0.10.2,<0.11").
  No package index reachable, or no wheel for this platform. Nothing was measured.
  Fix: make the jax-cuda12-plugin / jax-cuda12-pjrt / nvidia-* wheels available to pip
  (e.g. PIP_FIND_LINKS=<folder of wheels>) and run this script again.
EOF
    exit 3
  fi
fi

if ! gpu_ready; then
  cat >&2 <<'EOF'
gpu.sh: jax is installed but sees no GPU (jax.default_backend() != "gpu"). Check the driver
  (nvidia-smi), CUDA_VISIBLE_DEVICES, and that the jax-cuda12 plugin matches jaxlib's version.
  Nothing was measured.
EOF
  exit 4
fi

# Memory is reported from the allocator's peak: do not preallocate 75 % of the GPU up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$OUT_DIR"
timeout "$TIMEOUT" "$VENV/bin/python" benchmarks/gpu_bench.py --out "$OUT_DIR/gpu_results.md" "$@"
status=$?
if [ "$status" -eq 124 ]; then
  echo "gpu.sh: gpu_bench.py ran past ${TIMEOUT} s; partial results above" >&2
fi
exit "$status"
