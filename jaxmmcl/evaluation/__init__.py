"""Evaluation in JAX: regression R^2 (linear, cross-validated kernel ridge, MLP), classification
accuracy (logistic, MLP), MCC, and the paper's protocol for trained runs
(:mod:`jaxmmcl.evaluation.protocol`)."""

from jaxmmcl.evaluation.classification import logistic_accuracy, logistic_fit, mlp_accuracy, mlp_fit
from jaxmmcl.evaluation.kernel_ridge import (
    ALPHAS,
    GAMMAS,
    KernelRidgeResult,
    kernel_ridge_r2,
    kernel_ridge_r2_grid,
    kernel_ridge_select,
)
from jaxmmcl.evaluation.linear import fit_linear, linear_r2, r2_score, standardise
from jaxmmcl.evaluation.mcc import correlation_matrix, mcc
from jaxmmcl.evaluation.mlp import mlp_r2

__all__ = [
    "ALPHAS",
    "GAMMAS",
    "KernelRidgeResult",
    "correlation_matrix",
    "fit_linear",
    "kernel_ridge_r2",
    "kernel_ridge_r2_grid",
    "kernel_ridge_select",
    "linear_r2",
    "logistic_accuracy",
    "logistic_fit",
    "mcc",
    "mlp_accuracy",
    "mlp_fit",
    "mlp_r2",
    "r2_score",
    "standardise",
]
