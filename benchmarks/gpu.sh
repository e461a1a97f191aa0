#!/usr/bin/env bash
# GPU benchmark for an accelerator machine (NVIDIA H200): run from the repository root.
#
#   bash benchmarks/gpu.sh [gpu_bench.py options]
#
# 1. finds a Python whose jax sees a GPU: $PYTHON (default python3) as it is, if it already
#    has a CUDA build of jax and jaxmmcl's dependencies (machines without a package index,
#    such as this project's lent H200, come that way; jaxmmcl is then used from this checkout
#    through PYTHONPATH, under that machine's versions rather than pyproject's pins); otherwise
#    .venv-gpu, created and filled with jaxmmcl and jax[cuda12] by pip (reused if it works);
# 2. runs benchmarks/gpu_bench.py (under 5 minutes): matmul peaks at every train.precision
#    (float32, tf32x3, tf32, bfloat16) and float64, the paper-size training step for 1, 8 and
#    30 vmapped runs at every precision, the CPU-scale Table 1 group, the paper-size
#    evaluation;
# 3. prints a Markdown block for benchmarks/RESULTS.md and writes it to $OUT/gpu_results.md
#    (or ./gpu_results.md when $OUT is not set);
# 4. with GPU_TABLE1="float32,tf32" (a list of precisions), runs the CPU-scale Table 1 once per
#    precision (`jaxmmcl reproduce table1 --set train.precision=P`, about a minute each on an
#    H200) into $OUT/table1-P/ and prints each table, so that the cells can be compared.
#
# Environment: PYTHON (default python3), GPU_BENCH_TIMEOUT (seconds, default 290), GPU_TABLE1,
# GPU_SH_DRY=1 (dry mode, for a CPU machine: no GPU check, gpu_bench.py --tiny, and
# Table 1's stage as --dry-run plans).
set -uo pipefail

PYTHON=${PYTHON:-python3}
VENV=.venv-gpu
OUT_DIR=${OUT:-.}
TIMEOUT=${GPU_BENCH_TIMEOUT:-290}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || echo "gpu.sh: nvidia-smi not found; continuing" >&2

# Whether $1 runs jax on a GPU and imports everything jaxmmcl needs.
gpu_ready() {
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$1" - <<'EOF'
import jax
assert jax.default_backend() == "gpu", f"jax backend is {jax.default_backend()!r}"
import chex, flax, matplotlib, optax, PIL, sklearn, scipy, tqdm, yaml  # noqa: F401
import jaxmmcl.training  # noqa: F401
print("gpu.sh: jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      jax.devices())
EOF
}

DRY=${GPU_SH_DRY:-0}
if [ "$DRY" = 1 ]; then
  RUN_PYTHON=$PYTHON
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu.sh: dry mode with $(command -v "$PYTHON"): tiny sizes, no GPU needed" >&2
elif gpu_ready "$PYTHON"; then
  RUN_PYTHON=$PYTHON
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu.sh: using $(command -v "$PYTHON") as it is (jaxmmcl from $PWD)" >&2
else
  RUN_PYTHON=$VENV/bin/python
  if [ ! -x "$RUN_PYTHON" ] || ! gpu_ready "$RUN_PYTHON"; then
    echo "gpu.sh: installing jaxmmcl and jax[cuda12] into $VENV" >&2
    "$PYTHON" -m venv "$VENV" || { echo "gpu.sh: cannot create a venv with $PYTHON" >&2; exit 3; }
    if ! "$RUN_PYTHON" -m pip install -q -e . "jax[cuda12]>=0.10.2,<0.11"; then
      cat >&2 <<'EOF'
gpu.sh: FAILED to install the CUDA build of jax (pip install "jax[cuda12]>=0.10.2,<0.11").
  No package index reachable, or no wheel for this platform. Nothing was measured.
  Fix: make the jax-cuda12-plugin / jax-cuda12-pjrt / nvidia-* wheels available to pip
  (e.g. PIP_FIND_LINKS=<folder of wheels>), or point PYTHON at a Python whose jax sees the GPU,
  and run this script again.
EOF
      exit 3
    fi
  fi
  if ! gpu_ready "$RUN_PYTHON"; then
    cat >&2 <<'EOF'
gpu.sh: jax is installed but sees no GPU (jax.default_backend() != "gpu"). Check the driver
  (nvidia-smi), CUDA_VISIBLE_DEVICES, and that the jax-cuda12 plugin matches jaxlib's version.
  Nothing was measured.
EOF
    exit 4
  fi
fi

# Memory is reported from the allocator's peak: do not preallocate 75 % of the GPU up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$OUT_DIR"
BENCH_ARGS=()
[ "$DRY" = 1 ] && BENCH_ARGS=(--tiny)
timeout "$TIMEOUT" "$RUN_PYTHON" benchmarks/gpu_bench.py --out "$OUT_DIR/gpu_results.md" \
  "${BENCH_ARGS[@]}" "$@"
status=$?
if [ "$status" -eq 124 ]; then
  echo "gpu.sh: gpu_bench.py ran past ${TIMEOUT} s; partial results above" >&2
fi
if [ -n "${GPU_TABLE1:-}" ]; then
  IFS=, read -ra TABLE1_PRECISIONS <<< "$GPU_TABLE1"
  for precision in "${TABLE1_PRECISIONS[@]}"; do
    TABLE1_ARGS=(reproduce table1 --set "train.precision=$precision" --force --quiet
                 --out "$OUT_DIR/table1-$precision")
    [ "$DRY" = 1 ] && TABLE1_ARGS+=(--dry-run)
    echo "gpu.sh: jaxmmcl ${TABLE1_ARGS[*]}" >&2
    start=$(date +%s)
    "$RUN_PYTHON" -m jaxmmcl.cli "${TABLE1_ARGS[@]}" || status=$?
    echo "gpu.sh: table1 at $precision took $(( $(date +%s) - start )) s" >&2
  done
fi
exit "$status"
