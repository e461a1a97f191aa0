"""Benchmark of the cross-validated kernel ridge evaluation against scikit-learn.

Default: one encoding (k = 5) and five ground-truth blocks of five components at n fit and n
test samples (``--n``, default 4096). Times scikit-learn's ``GridSearchCV(KernelRidge)`` run
block by block against :func:`jaxmmcl.evaluation.kernel_ridge.kernel_ridge_r2_grid` doing all
blocks at once (compile time reported separately), and prints both R^2 per block.

``--paper``: the paper-size evaluation of one model, two encodings x five blocks at 20,480 fit
and 20,480 test samples, ours only; prints wall time and peak resident memory.

Prints figures only; it asserts nothing.

    .venv/bin/python benchmarks/evaluation.py [--n 4096] [--no-sklearn] [--paper]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from jaxmmcl.evaluation.kernel_ridge import ALPHAS, GAMMAS, kernel_ridge_r2_grid

BLOCKS = ("c", "s", "s_tilde", "m1", "m2")
BLOCK_SIZE = 5


def make_data(rng: np.random.Generator, n_runs: int, n: int, k: int = 5):
    """Encodings that carry content nonlinearly, style partly, nothing of the rest.

    Returns ``x`` of shape ``(n_runs, 2n, k)`` standardised with the first half's statistics and
    targets ``y`` of shape ``(n_runs, 2n, 25)`` (blocks c, s, s_tilde, m1, m2).
    """
    z = rng.standard_normal((n_runs, 2 * n, len(BLOCKS) * BLOCK_SIZE))
    c = z[..., :BLOCK_SIZE]
    z[..., BLOCK_SIZE : 2 * BLOCK_SIZE] += 0.5 * c  # style depends on content
    z[..., 2 * BLOCK_SIZE : 3 * BLOCK_SIZE] = z[..., BLOCK_SIZE : 2 * BLOCK_SIZE] + 0.5 * (
        rng.standard_normal((n_runs, 2 * n, BLOCK_SIZE))
    )
    mix = rng.standard_normal((n_runs, BLOCK_SIZE, k))
    x = np.tanh(np.einsum("rnc,rck->rnk", c, mix)) + 0.05 * rng.standard_normal((n_runs, 2 * n, k))
    mean, std = x[:, :n].mean(1, keepdims=True), x[:, :n].std(1, keepdims=True)
    return (x - mean) / std, z


def peak_rss_gib() -> float:
    """Peak resident memory of this process (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sklearn_r2(x_fit, y_fit, x_test, y_test) -> tuple[np.ndarray, float]:
    """scikit-learn's grid search, one block at a time. Returns (R^2 per block, seconds)."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV

    start = time.perf_counter()
    scores = []
    for b in range(len(BLOCKS)):
        cols = slice(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)
        search = GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": ALPHAS, "gamma": GAMMAS}, cv=3)
        search.fit(x_fit, y_fit[:, cols])
        scores.append(r2_score(y_test[:, cols], search.predict(x_test)))
    return np.array(scores), time.perf_counter() - start


def ours(x_fit, y_fit, x_test, y_test):
    """Returns (result, seconds of the call)."""
    start = time.perf_counter()
    result = kernel_ridge_r2_grid(x_fit, y_fit, x_test, y_test, (BLOCK_SIZE,) * len(BLOCKS))
    return result, time.perf_counter() - start


def compare(n: int, with_sklearn: bool) -> None:
    x, y = make_data(np.random.default_rng(0), 1, n)
    # float32 encodings, as the training pipeline produces them.
    args = (x[:, :n].astype(np.float32), y[:, :n], x[:, n:].astype(np.float32), y[:, n:])
    _, t_first = ours(*args)
    second, t_run = ours(*args)
    print(f"n_fit = n_test = {n}, k = 5, blocks {BLOCKS} x {BLOCK_SIZE}")
    print(
        f"ours: {t_run:.2f} s after compile; first call {t_first:.2f} s "
        f"(compile ~ {t_first - t_run:.2f} s)"
    )
    print("ours R^2:    ", np.array2string(second.r2[0], precision=6))
    print("ours alpha:  ", second.alpha[0], "gamma:", np.array2string(second.gamma[0], precision=3))
    print(f"peak RSS so far {peak_rss_gib():.2f} GiB")
    if with_sklearn:
        ref, t_ref = sklearn_r2(x[0, :n], y[0, :n], x[0, n:], y[0, n:])
        print(f"sklearn: {t_ref:.2f} s; speed-up {t_ref / t_run:.1f}x")
        print("sklearn R^2: ", np.array2string(ref, precision=6))
        print(f"max |R^2 difference| = {np.max(np.abs(ref - second.r2[0])):.2e}")


def paper() -> None:
    n = 20_480
    x, y = make_data(np.random.default_rng(0), 2, n)
    args = (x[:, :n].astype(np.float32), y[:, :n], x[:, n:].astype(np.float32), y[:, n:])
    result, seconds = ours(*args)
    print(f"paper size: 2 encodings x 5 blocks, {n} fit + {n} test samples")
    print(f"wall time {seconds:.1f} s (including compile), peak RSS {peak_rss_gib():.2f} GiB")
    print("R^2:", np.array2string(result.r2, precision=4))
    print("alpha:", result.alpha.tolist())
    print("gamma:", np.array2string(result.gamma, precision=3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="fit and test samples")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn run")
    parser.add_argument("--paper", action="store_true", help="paper-size run of ours only")
    args = parser.parse_args()
    if args.paper:
        paper()
    else:
        compare(args.n, not args.no_sklearn)


if __name__ == "__main__":
    main()
