"""Cross-validated RBF kernel ridge regression, equal to scikit-learn's grid search.

The protocol (spec, "Evaluation") is scikit-learn's

    GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": alphas, "gamma": gammas}, cv=n_folds)

fitted on the fit set, scored by R^2 on the test set. Its semantics, reproduced here:

* kernel ``exp(-gamma ||x - y||^2)``, ``alpha`` added unscaled to the kernel diagonal, no
  intercept; squared distances by the expansion ``|x|^2 + |y|^2 - 2 x.y`` clipped at zero, with
  an exact zero diagonal when a set is compared with itself (as ``euclidean_distances``);
* ``KFold(n_folds)``: contiguous, unshuffled folds, the first ``n % n_folds`` one sample longer;
* the score of a fold is R^2 averaged uniformly over the target columns; a candidate's score is
  the plain mean over folds;
* candidates in ``ParameterGrid`` order (keys sorted: ``alpha`` outer, ``gamma`` inner), the
  first of tied best candidates wins, NaN scores rank last;
* the selected candidate is refitted on the whole fit set.

:func:`kernel_ridge_r2_grid` is the batched version for a grid of runs whose targets are several
ground-truth blocks: each block selects its own hyperparameters, exactly as if scikit-learn were
called on that block alone, while the expensive work is shared. Per run, per gamma and per fold
one kernel matrix is built and serves every alpha and every block (all target columns are
right-hand sides of one solve); per alpha it is factorised once by Cholesky. Four Choleskys are
cheaper than one symmetric eigendecomposition (which would serve all alphas at once): measured
on the 2-core development CPU, ``eigh`` costs 8-11 Choleskys of the same size. The refit
factorises the full kernel once per *distinct* selected candidate of a run, not once per block.

All linear algebra runs in float64, with 64-bit mode switched on only for the duration of a call
(``jax.enable_x64`` as a context manager, which is local to the calling thread); inputs may be
float32. Results come back as NumPy float64 arrays. A Cholesky of a matrix that contains NaN
returns NaN instead of failing, so a run with non-finite encodings (a diverged training run)
gets NaN scores while the other runs are unaffected.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmmcl.evaluation.linear import block_means, r2_score

ALPHAS: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)
GAMMAS: tuple[float, ...] = tuple(float(g) for g in np.logspace(-2, 2, 4))


class KernelRidgeResult(NamedTuple):
    """Scores and selections of :func:`kernel_ridge_r2_grid`; NumPy float64 arrays.

    Attributes:
      r2: shape ``(R, n_blocks)``: test R^2 per run and block, averaged uniformly over the
        block's components.
      alpha, gamma: shape ``(R, n_blocks)``: the selected hyperparameters (NaN for a run whose
        cross-validation scores are all NaN).
      cv_score: shape ``(R, n_blocks, n_alphas * n_gammas)``: mean cross-validated R^2 per
        candidate in ``ParameterGrid`` order (candidate ``i`` is ``alphas[i // n_gammas]``,
        ``gammas[i % n_gammas]``), scikit-learn's ``cv_results_["mean_test_score"]``.
    """

    r2: np.ndarray
    alpha: np.ndarray
    gamma: np.ndarray
    cv_score: np.ndarray


def kernel_ridge_r2_grid(
    x_fit,
    y_fit,
    x_test,
    y_test,
    block_sizes: Sequence[int],
    *,
    alphas: Sequence[float] = ALPHAS,
    gammas: Sequence[float] = GAMMAS,
    n_folds: int = 3,
    run_batch: int = 1,
    row_chunk: int = 2048,
) -> KernelRidgeResult:
    """Cross-validated kernel ridge R^2 per run and target block, for a grid of runs.

    For run ``r`` and block ``b`` the result equals scikit-learn's ``GridSearchCV(KernelRidge(
    kernel="rbf"), {"alpha": alphas, "gamma": gammas}, cv=n_folds)`` fitted on ``(x_fit[r],
    y_fit[r][:, block b])`` and scored by ``r2_score`` on ``(x_test[r], y_test[r][:, block
    b])``: the same selected hyperparameters and R^2 up to floating-point rounding.

    Not jittable itself (it switches on 64-bit mode and returns host arrays); it compiles one
    program per combination of shapes, ``block_sizes``, ``n_folds``, ``run_batch`` and
    ``row_chunk``. The values of ``alphas`` and ``gammas`` are traced, not compiled in.

    Cost and memory, with ``n = n_fit``: per run ``len(alphas) * len(gammas) * n_folds``
    Choleskys of size ``n (n_folds - 1) / n_folds`` plus one Cholesky of size ``n`` per distinct
    selected candidate. At most two ``n x n`` float64 matrices are alive per run in the batch
    (the kernel and its factor); products with off-diagonal kernels are formed in chunks of
    ``row_chunk`` rows, so they need ``row_chunk x n`` memory only.

    Args:
      x_fit: encodings to fit on, shape ``(R, n_fit, k)``.
      y_fit: ground-truth targets of the fit set, shape ``(R, n_fit, t)`` with
        ``t = sum(block_sizes)``: the blocks' columns side by side, in order.
      x_test: encodings to score on, shape ``(R, n_test, k)``.
      y_test: targets of the test set, shape ``(R, n_test, t)``.
      block_sizes: static number of columns of each target block, e.g. ``(5, 5, 5, 5, 5)``
        for ``(c, s, s_tilde, m1, m2)``; each at least 1.
      alphas: ridge penalties, each > 0 (a Cholesky needs a positive definite matrix).
      gammas: RBF inverse squared length scales, each > 0.
      n_folds: number of contiguous cross-validation folds, at least 2.
      run_batch: runs processed together by ``vmap``; the rest is a sequential loop. Keep 1 for
        large ``n`` (memory grows linearly with it, and under ``vmap`` the refit cannot skip
        duplicate candidates, so it factorises once per block); larger values amortise
        per-operation overhead for small ``n``.
      row_chunk: rows per chunk in kernel construction and kernel-times-coefficient products.

    Returns:
      A :class:`KernelRidgeResult` with arrays of shape ``(R, n_blocks)`` (``cv_score``:
      ``(R, n_blocks, n_candidates)``).

    Raises:
      ValueError: inconsistent shapes, empty arrays, fewer than ``2 * n_folds`` fit samples (a
        validation fold needs two samples for R^2), or invalid hyperparameters; the message
        names the offending value.
    """
    block_sizes = tuple(block_sizes)
    alphas_np, gammas_np = _check_grid(alphas, gammas, n_folds, run_batch, row_chunk)
    shapes = [np.shape(a) for a in (x_fit, y_fit, x_test, y_test)]
    _check_shapes(*shapes, block_sizes, n_folds)
    with jax.enable_x64(True):
        f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
        out = _grid(
            f64(x_fit),
            f64(y_fit),
            f64(x_test),
            f64(y_test),
            f64(alphas_np),
            f64(gammas_np),
            block_sizes=block_sizes,
            n_folds=n_folds,
            run_batch=run_batch,
            row_chunk=row_chunk,
        )
        r2, sel, best, cv = (np.asarray(a) for a in out)
    n_gammas = len(gammas_np)
    failed = np.isnan(best)
    alpha = np.where(failed, np.nan, alphas_np[sel // n_gammas])
    gamma = np.where(failed, np.nan, gammas_np[sel % n_gammas])
    return KernelRidgeResult(r2=r2, alpha=alpha, gamma=gamma, cv_score=cv)


def kernel_ridge_r2(
    x_fit,
    y_fit,
    x_test,
    y_test,
    *,
    alphas: Sequence[float] = ALPHAS,
    gammas: Sequence[float] = GAMMAS,
    n_folds: int = 3,
) -> float:
    """Test R^2 of the cross-validated RBF kernel ridge regressor, for one encoding.

    Equal to ``r2_score(y_test, GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": alphas,
    "gamma": gammas}, cv=n_folds).fit(x_fit, y_fit).predict(x_test))`` (uniform average over
    target columns).

    Args:
      x_fit, y_fit: shapes ``(n_fit, k)`` and ``(n_fit, t)`` or ``(n_fit,)``.
      x_test, y_test: shapes ``(n_test, k)`` and ``(n_test, t)`` or ``(n_test,)``.
      alphas, gammas, n_folds: as in :func:`kernel_ridge_r2_grid`.

    Returns:
      The R^2 as a Python float.
    """
    result = _single(x_fit, y_fit, x_test, y_test, alphas, gammas, n_folds)
    return float(result.r2[0, 0])


def kernel_ridge_select(
    x_fit,
    y_fit,
    x_test,
    y_test,
    *,
    alphas: Sequence[float] = ALPHAS,
    gammas: Sequence[float] = GAMMAS,
    n_folds: int = 3,
) -> tuple[float, float, float]:
    """:func:`kernel_ridge_r2` together with the selected hyperparameters.

    Returns:
      ``(r2, alpha, gamma)``; ``alpha`` and ``gamma`` equal scikit-learn's ``best_params_``.
    """
    result = _single(x_fit, y_fit, x_test, y_test, alphas, gammas, n_folds)
    return float(result.r2[0, 0]), float(result.alpha[0, 0]), float(result.gamma[0, 0])


def _single(x_fit, y_fit, x_test, y_test, alphas, gammas, n_folds) -> KernelRidgeResult:
    y_fit, y_test = np.asarray(y_fit), np.asarray(y_test)
    if y_fit.ndim == 1:
        y_fit = y_fit[:, None]
    if y_test.ndim == 1:
        y_test = y_test[:, None]
    if y_fit.ndim != 2:
        raise ValueError(f"y_fit: expected shape (n_fit, t) or (n_fit,), got {y_fit.shape}")
    x_fit, x_test = np.asarray(x_fit), np.asarray(x_test)
    return kernel_ridge_r2_grid(
        x_fit[None],
        y_fit[None],
        x_test[None],
        y_test[None],
        (y_fit.shape[1],),
        alphas=alphas,
        gammas=gammas,
        n_folds=n_folds,
    )


def _check_grid(alphas, gammas, n_folds, run_batch, row_chunk) -> tuple[np.ndarray, np.ndarray]:
    for name, value in (("n_folds", n_folds), ("run_batch", run_batch), ("row_chunk", row_chunk)):
        minimum = 2 if name == "n_folds" else 1
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    out = []
    for name, values in (("alphas", alphas), ("gammas", gammas)):
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(
                f"{name}: expected a non-empty sequence of finite values > 0, got {values!r}"
            )
        out.append(arr)
    return out[0], out[1]


def _check_shapes(xf, yf, xt, yt, block_sizes, n_folds) -> None:
    named = (("x_fit", xf), ("y_fit", yf), ("x_test", xt), ("y_test", yt))
    for name, shape in named:
        if len(shape) != 3:
            raise ValueError(f"{name}: expected a 3-d array (runs, samples, dims), got {shape}")
        if 0 in shape:
            raise ValueError(f"{name}: empty array of shape {shape}")
    if not (xf[0] == yf[0] == xt[0] == yt[0]):
        raise ValueError(
            f"number of runs differs: x_fit {xf[0]}, y_fit {yf[0]}, x_test {xt[0]}, y_test {yt[0]}"
        )
    if xf[1] != yf[1]:
        raise ValueError(f"x_fit has {xf[1]} samples but y_fit has {yf[1]}")
    if xt[1] != yt[1]:
        raise ValueError(f"x_test has {xt[1]} samples but y_test has {yt[1]}")
    if xf[2] != xt[2]:
        raise ValueError(f"x_fit has {xf[2]} features but x_test has {xt[2]}")
    if yf[2] != yt[2]:
        raise ValueError(f"y_fit has {yf[2]} target columns but y_test has {yt[2]}")
    if not block_sizes or any(
        isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1 for b in block_sizes
    ):
        raise ValueError(f"block_sizes: expected positive integers, got {block_sizes!r}")
    if sum(block_sizes) != yf[2]:
        raise ValueError(
            f"block_sizes {block_sizes} sum to {sum(block_sizes)} but the targets have "
            f"{yf[2]} columns"
        )
    if xf[1] < 2 * n_folds:
        raise ValueError(
            f"n_fit={xf[1]} fit samples are too few for n_folds={n_folds}: need at least "
            f"{2 * n_folds} (two per validation fold)"
        )


def _fold_bounds(n: int, n_folds: int) -> list[tuple[int, int]]:
    """``KFold`` validation ranges: contiguous, the first ``n % n_folds`` one longer."""
    sizes = [n // n_folds + (i < n % n_folds) for i in range(n_folds)]
    starts = np.cumsum([0, *sizes])
    return [(int(starts[i]), int(starts[i + 1])) for i in range(n_folds)]


def _sq_dist(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Squared distances by scikit-learn's expansion, clipped at zero. Shapes (m,k),(n,k)->(m,n)."""
    d2 = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
    return jnp.maximum(d2, 0.0)


def _rbf_gram(x: jnp.ndarray, gamma: jnp.ndarray, row_chunk: int) -> jnp.ndarray:
    """``exp(-gamma ||x_i - x_j||^2)``, shape ``(n, n)``, written chunk by chunk in place.

    Building it in row chunks keeps the distance intermediates at ``row_chunk x n`` instead of a
    second ``n x n`` buffer.
    """
    n = x.shape[0]
    c = min(row_chunk, n)
    cols = jnp.arange(n)

    def body(i, k):
        # The last chunk is shifted back to stay in range; its overlap is recomputed identically.
        start = jnp.minimum(i * c, n - c)
        rows = lax.dynamic_slice_in_dim(x, start, c)
        d2 = _sq_dist(rows, x)
        d2 = jnp.where((start + jnp.arange(c))[:, None] == cols[None, :], 0.0, d2)
        return lax.dynamic_update_slice_in_dim(k, jnp.exp(-gamma * d2), start, 0)

    return lax.fori_loop(0, -(-n // c), body, jnp.zeros((n, n), x.dtype))


def _rbf_apply(
    x_rows: jnp.ndarray, x: jnp.ndarray, gamma: jnp.ndarray, coef: jnp.ndarray, row_chunk: int
) -> jnp.ndarray:
    """``K(x_rows, x) @ coef`` in row chunks. Shapes (m,k), (n,k), (n,p) -> (m,p)."""
    m = x_rows.shape[0]
    c = min(row_chunk, m)

    def body(i, out):
        start = jnp.minimum(i * c, m - c)
        rows = lax.dynamic_slice_in_dim(x_rows, start, c)
        block = jnp.exp(-gamma * _sq_dist(rows, x)) @ coef
        return lax.dynamic_update_slice_in_dim(out, block, start, 0)

    return lax.fori_loop(0, -(-m // c), body, jnp.zeros((m, coef.shape[1]), coef.dtype))


def _ridge_coefs(k: jnp.ndarray, y: jnp.ndarray, alphas: jnp.ndarray) -> jnp.ndarray:
    """``(k + alpha I)^{-1} y`` for every alpha: shapes (n,n), (n,t), (a,) -> (n, a*t).

    Sequential over alphas so only one factor is alive besides ``k``.
    """
    diag = jnp.arange(k.shape[0])

    def solve(_, alpha):
        # A diagonal scatter, not ``k + alpha * eye``: XLA hoists the identity out of the loop
        # and materialises it as one more n x n float64 matrix.
        factor = lax.linalg.cholesky(k.at[diag, diag].add(alpha), symmetrize_input=False)
        return None, jax.scipy.linalg.cho_solve((factor, True), y)

    _, coefs = lax.scan(solve, None, alphas)  # (a, n, t)
    return jnp.moveaxis(coefs, 0, 1).reshape(k.shape[0], -1)


def _cv_scores(x, y, alphas, gammas, block_sizes, n_folds, row_chunk) -> jnp.ndarray:
    """Mean validation R^2, shape ``(n_blocks, n_alphas * n_gammas)`` in ParameterGrid order."""
    n, t = y.shape
    n_a = alphas.shape[0]
    per_fold = []
    for lo, hi in _fold_bounds(n, n_folds):
        x_tr = jnp.concatenate([x[:lo], x[hi:]])
        y_tr = jnp.concatenate([y[:lo], y[hi:]])
        x_va, y_va = x[lo:hi], y[lo:hi]

        def per_gamma(gamma, x_tr=x_tr, y_tr=y_tr, x_va=x_va, y_va=y_va):
            coefs = _ridge_coefs(_rbf_gram(x_tr, gamma, row_chunk), y_tr, alphas)
            pred = _rbf_apply(x_va, x_tr, gamma, coefs, row_chunk).reshape(-1, n_a, t)
            r2_cols = jax.vmap(r2_score, in_axes=(None, 1))(y_va, pred)  # (a, t)
            return block_means(r2_cols, block_sizes)  # (a, n_blocks)

        per_fold.append(lax.map(per_gamma, gammas))  # (g, a, n_blocks)
    mean = sum(per_fold) / n_folds
    return jnp.transpose(mean, (2, 1, 0)).reshape(len(block_sizes), -1)


def _refit_r2(x, y, x_test, y_test, alphas, gammas, selected, block_sizes, row_chunk):
    """Test R^2 per block after refitting each block's selected candidate on the whole fit set.

    Each distinct candidate among the blocks is factorised once; the slots left over by
    duplicates are skipped by ``lax.cond`` (which only skips outside ``vmap``).
    """
    n_blocks = len(block_sizes)
    n_g = gammas.shape[0]
    distinct = jnp.unique(selected, size=n_blocks, fill_value=-1)

    def fit_candidate(cand):
        gamma, alpha = gammas[cand % n_g], alphas[cand // n_g]
        coef = _ridge_coefs(_rbf_gram(x, gamma, row_chunk), y, alpha[None])
        pred = _rbf_apply(x_test, x, gamma, coef, row_chunk)
        return block_means(r2_score(y_test, pred), block_sizes)

    def slot(r2, cand):
        scores = lax.cond(
            cand >= 0, fit_candidate, lambda _: jnp.zeros(n_blocks, y.dtype), jnp.maximum(cand, 0)
        )
        return jnp.where(selected == cand, scores, r2), None

    r2, _ = lax.scan(slot, jnp.full(n_blocks, jnp.nan, y.dtype), distinct)
    return r2


@functools.partial(jax.jit, static_argnames=("block_sizes", "n_folds", "run_batch", "row_chunk"))
def _grid(
    x_fit, y_fit, x_test, y_test, alphas, gammas, *, block_sizes, n_folds, run_batch, row_chunk
):
    """Per run: CV scores, selection and refit. Returns (r2, selected, best score, cv)."""

    def one_run(args):
        x, y, xt, yt = args
        cv = _cv_scores(x, y, alphas, gammas, block_sizes, n_folds, row_chunk)
        # NaN ranks last (scikit-learn); argmax returns the first of tied maxima.
        selected = jnp.argmax(jnp.where(jnp.isnan(cv), -jnp.inf, cv), axis=1)
        best = jnp.take_along_axis(cv, selected[:, None], 1)[:, 0]
        r2 = _refit_r2(x, y, xt, yt, alphas, gammas, selected, block_sizes, row_chunk)
        return r2, selected, best, cv

    # Without batch_size lax.map is a plain loop, where lax.cond really skips work.
    batch = None if run_batch == 1 else run_batch
    return lax.map(one_run, (x_fit, y_fit, x_test, y_test), batch_size=batch)
