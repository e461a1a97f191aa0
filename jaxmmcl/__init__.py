"""jaxmmcl: vectorised JAX simulations for identifiability studies of multimodal contrastive
learning (Daunhawer et al., ICLR 2023).

The data flow, one module per step::

    config, structure -> latents -> mechanisms -> simulation -> encoders -> losses -> objective
           -> training -> evaluation -> sweeps / runner -> results (frames), reports -> cli
"""

from jaxmmcl.config import (
    ConfigError,
    Hyperparams,
    RunConfig,
    StaticConfig,
    run_config_from_dict,
    stack_hyperparams,
)
from jaxmmcl.evaluation.protocol import evaluate_grid
from jaxmmcl.frames import load_losses, load_results
from jaxmmcl.grid import train_grid
from jaxmmcl.runner import run_sweep
from jaxmmcl.simulation import init_simulation, sample_views
from jaxmmcl.structure import Structure
from jaxmmcl.sweeps import load_sweep
from jaxmmcl.training import make_train, train_run

__all__ = [
    "ConfigError",
    "Hyperparams",
    "RunConfig",
    "StaticConfig",
    "Structure",
    "evaluate_grid",
    "init_simulation",
    "load_losses",
    "load_results",
    "load_sweep",
    "make_train",
    "run_config_from_dict",
    "run_sweep",
    "sample_views",
    "stack_hyperparams",
    "train_grid",
    "train_run",
]
