"""Shared test settings. Every test that trains uses the tiny configurations below, so each
compiled program is built once per test session."""

from __future__ import annotations

import os

# Test programs are tiny: LLVM's optimisation passes would cost far more time than they save.
# Must be set before jax is imported.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

# No persistent compilation cache in tests (the CLI turns it on for its process): a test
# process compiles hundreds of programs, and writing one of them to the cache aborted the
# process twice on this machine (XLA, in put_executable_and_time), once with PyTorch loaded and
# once with other jaxmmcl processes writing the same cache folder.
os.environ.setdefault("JAXMMCL_CACHE_DIR", "")

import pytest

TINY = {
    "simulation": {"n_c": 2, "n_s": 2, "n_m": 2},
    "model": {"widths": [16, 16]},
    "train": {"batch_size": 32, "steps": 20, "log_every": 10, "learning_rate": 1e-3},
    "eval": {
        "n_fit": 64,
        "n_test": 64,
        "nonlinear": "mlp",
        "mlp_epochs": 20,
        "val_batches": 2,
        "val_batch_size": 32,
    },
}


@pytest.fixture
def tiny_sweep() -> dict:
    """A two-group sweep (multi-view and multimodal) of tiny runs."""
    return {
        "name": "tiny",
        "base": TINY,
        "axes": {
            "setting": {
                "independent": {"simulation.p_change": 1.0},
                "causal": {"simulation.p_change": 0.75, "simulation.causal_strength": 1.0},
            },
            "mechanism": {
                "multi-view": {
                    "simulation.shared_mixing": True,
                    "model.shared_encoder": True,
                    "simulation.n_m": 0,
                },
                "multimodal": {},
            },
            "seed": [0, 1],
        },
    }


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    """Each test module starts without the executables of the modules before it: a whole-suite
    process had aborted twice inside XLA's compiler or cache writer after some 200 tests, never
    in a module run alone. The cause, found later: every compiled XLA:CPU executable holds
    memory mappings until it is freed, and a process may hold only vm.max_map_count of them
    (see :meth:`jaxmmcl.experiment.Simulation.release`)."""
    import jax

    jax.clear_caches()
    yield
