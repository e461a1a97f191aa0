"""Evaluation in JAX: regression R^2 (linear, kernel ridge, MLP), classification, MCC, and the
paper's protocol for trained runs (:mod:`jaxmmcl.evaluation.protocol`)."""

from jaxmmcl.evaluation.linear import fit_linear, linear_r2, r2_score
from jaxmmcl.evaluation.mlp import mlp_r2

__all__ = ["fit_linear", "linear_r2", "mlp_r2", "r2_score"]
