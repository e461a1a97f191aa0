"""The one-run-at-a-time PyTorch baseline: the numerical simulation written the eager way.

The same simulation, encoders, loss and optimiser as the spec (and as jaxmmcl), written the
way the official code does it: eager PyTorch, one run at a time, fresh latents drawn every
step, the loss's pairwise distances through broadcasting (a ``batch x batch x dim`` tensor),
Adam with ``clip_grad_norm_(2.0)``. It is a yardstick for ``benchmarks/compare.py``; nothing
in the package imports it.

The pieces are separate functions so a test can feed them the inputs and weights jaxmmcl uses
(:func:`simulation_from_jax`, :func:`encoders_from_flax`) and compare loss, gradient and one
Adam step (``tests/test_torch_baseline.py``).

    .venv/bin/python benchmarks/torch_baseline.py [--paper] [--steps 20]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

MIXING_SLOPE = 0.2
ENCODER_SLOPE = 0.01


@dataclass
class TorchSimulation:
    """Per-simulation parameters (float32 tensors), as in :mod:`jaxmmcl.latents`.

    ``factor_*`` are covariance factors (identity without statistical dependence), ``b`` the
    content-to-style map already scaled by the causal strength, ``a`` the style offset,
    ``mixing1``/``mixing2`` the mechanisms' weights ``(n_layers, d, d)``.
    """

    factor_c: torch.Tensor
    factor_s: torch.Tensor
    factor_m1: torch.Tensor
    factor_m2: torch.Tensor
    b: torch.Tensor
    a: torch.Tensor
    p_change: float
    mixing1: torch.Tensor
    mixing2: torch.Tensor


def _conditioned_matrix(gen: torch.Generator, dim: int, threshold: float) -> torch.Tensor:
    """Uniform [-1, 1] entries, unit-norm columns, redrawn until cond <= threshold."""
    while True:
        w = torch.rand(dim, dim, generator=gen) * 2 - 1
        w = w / torch.linalg.norm(w, dim=0, keepdim=True)
        if torch.linalg.cond(w).item() <= threshold:
            return w


def init_simulation(
    seed: int,
    n_c: int,
    n_s: int,
    n_m: int,
    *,
    p_change: float = 1.0,
    statistical: bool = False,
    causal_strength: float = 0.0,
    mixing_layers: int = 3,
    shared_mixing: bool = False,
) -> TorchSimulation:
    """Draws a simulation from a torch generator seeded with ``seed`` (the spec's recipe).

    The condition-number threshold is jaxmmcl's (a deterministic function of ``d``).
    """
    from jaxmmcl.mechanisms import condition_threshold

    gen = torch.Generator().manual_seed(seed)
    dim = n_c + n_s + n_m

    factors: dict[int, torch.Tensor] = {}

    def factor(size):
        # Blocks of one size share one Wishart draw, as in the paper's code (and jaxmmcl).
        if not statistical:
            return torch.eye(size)
        if size not in factors:
            factors[size] = torch.randn(size, size, generator=gen).T.contiguous()
        return factors[size]

    threshold = condition_threshold(dim)
    mixings = [
        torch.stack([_conditioned_matrix(gen, dim, threshold) for _ in range(mixing_layers)])
        for _ in range(1 if shared_mixing else 2)
    ]
    causal = causal_strength != 0
    return TorchSimulation(
        factor_c=factor(n_c),
        factor_s=factor(n_s),
        factor_m1=factor(n_m),
        factor_m2=factor(n_m),
        b=causal_strength * torch.randn(n_s, n_c, generator=gen),
        a=torch.randn(n_s, generator=gen) if causal else torch.zeros(n_s),
        p_change=float(p_change),
        mixing1=mixings[0],
        mixing2=mixings[-1],
    )


def simulation_from_jax(simulation) -> TorchSimulation:
    """The same simulation as a :class:`jaxmmcl.simulation.Simulation` (one run, unstacked)."""

    def t(x):
        return torch.from_numpy(np.array(x, dtype=np.float32))

    lat = simulation.latents
    f1, f2 = simulation.mechanisms
    return TorchSimulation(
        factor_c=t(lat.covariance["c"]),
        factor_s=t(lat.covariance["s"]),
        factor_m1=t(lat.covariance["m1"]),
        factor_m2=t(lat.covariance["m2"]),
        b=t(lat.causal["s"]["b"]),
        a=t(lat.causal["s"]["a"]),
        p_change=float(lat.p_change),
        mixing1=t(f1),
        mixing2=t(f2),
    )


def mix(weights: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The invertible MLP: square maps without bias (``nn.Linear``'s ``x @ W.T``), LeakyReLU(0.2)
    between them."""
    x = z
    for layer in range(weights.shape[0]):
        x = x @ weights[layer].T
        if layer < weights.shape[0] - 1:
            x = nn.functional.leaky_relu(x, MIXING_SLOPE)
    return x


def sample_pairs(
    sim: TorchSimulation, n: int, gen: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh latents and their observations ``(x1, x2)``, ``(n, d)`` each."""

    def gaussian(factor):
        return torch.randn(n, factor.shape[0], generator=gen) @ factor.T

    c = gaussian(sim.factor_c)
    s = gaussian(sim.factor_s) + c @ sim.b.T + sim.a
    mask = (torch.rand(s.shape, generator=gen) < sim.p_change).to(s.dtype)
    s_tilde = s + mask * gaussian(sim.factor_s)
    z1 = torch.cat([c, s, gaussian(sim.factor_m1)], dim=1)
    z2 = torch.cat([c, s_tilde, gaussian(sim.factor_m2)], dim=1)
    return mix(sim.mixing1, z1), mix(sim.mixing2, z2)


def make_encoder(dim: int, widths: tuple[int, ...], encoding_size: int) -> nn.Sequential:
    """``d -> widths... -> encoding_size`` with LeakyReLU(0.01) between layers, biases on."""
    layers: list[nn.Module] = []
    for a, b in zip((dim, *widths[:-1]), widths, strict=True):
        layers += [nn.Linear(a, b), nn.LeakyReLU(ENCODER_SLOPE)]
    layers.append(nn.Linear(widths[-1], encoding_size))
    return nn.Sequential(*layers)


def encoders_from_flax(params: dict) -> tuple[nn.Sequential, nn.Sequential]:
    """Torch copies of jaxmmcl's encoders (``{"g1": ...}`` or ``{"g1": ..., "g2": ...}``).

    A shared jaxmmcl encoder gives the same module twice. Flax's ``Dense`` kernel is
    ``(in, out)``; torch's ``Linear`` weight is its transpose.
    """

    def one(p):
        dense = p["params"]
        names = sorted(dense, key=lambda k: int(k.split("_")[1]))
        kernels = [np.asarray(dense[k]["kernel"], np.float32) for k in names]
        dims = [kernels[0].shape[0]] + [k.shape[1] for k in kernels]
        enc = make_encoder(dims[0], tuple(dims[1:-1]), dims[-1])
        linears = [m for m in enc if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, name, kernel in zip(linears, names, kernels, strict=True):
                lin.weight.copy_(torch.from_numpy(kernel.T.copy()))
                lin.bias.copy_(torch.from_numpy(np.array(dense[name]["bias"], np.float32)))
        return enc

    g1 = one(params["g1"])
    return g1, one(params["g2"]) if "g2" in params else g1


def info_nce(h1, h2, h1_neg, temperature: float = 1.0) -> torch.Tensor:
    """One direction of the loss, with the distances by broadcasting (``n x n x k``)."""
    pos = ((h1 - h2) ** 2).sum(-1)
    neg = ((h1[:, None, :] - h1_neg[None, :, :]) ** 2).sum(-1)
    logits = -torch.cat([neg, pos[:, None]], dim=1) / temperature
    log_mean_exp = torch.logsumexp(logits, dim=1) - math.log(logits.shape[1])
    return (pos / temperature + log_mean_exp).mean()


def symmetric_info_nce(h1, h2, h1_neg, h2_neg, temperature: float = 1.0) -> torch.Tensor:
    """``(L12 + L21) / 2``, the spec's loss."""
    return 0.5 * (info_nce(h1, h2, h1_neg, temperature) + info_nce(h2, h1, h2_neg, temperature))


def batch_loss(g1, g2, x1, x2, temperature: float = 1.0) -> torch.Tensor:
    """Loss on ``2n`` pairs: the first ``n`` are the positives, the last ``n`` the negatives."""
    n = x1.shape[0] // 2
    h1, h2 = g1(x1), g2(x2)
    return symmetric_info_nce(h1[:n], h2[:n], h1[n:], h2[n:], temperature)


def encoder_parameters(g1: nn.Module, g2: nn.Module) -> list[nn.Parameter]:
    """Trainable parameters of both encoders (once, if shared)."""
    params = list(g1.parameters())
    return params if g2 is g1 else params + list(g2.parameters())


def make_optimizer(
    params, learning_rate: float, steps: int, schedule: str = "constant"
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with the config's schedule (``constant`` or ``cosine`` decay to 0)."""
    opt = torch.optim.Adam(params, lr=learning_rate)

    def factor(step):
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step / steps, 1.0)))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(
    sim: TorchSimulation,
    g1: nn.Module,
    g2: nn.Module,
    opt: torch.optim.Optimizer,
    sched,
    batch_size: int,
    clip_norm: float = 2.0,
    temperature: float = 1.0,
    gen: torch.Generator | None = None,
) -> float:
    """One step: fresh batch (``batch_size`` pairs + as many negatives), backward, clip, Adam."""
    x1, x2 = sample_pairs(sim, 2 * batch_size, gen)
    loss = batch_loss(g1, g2, x1, x2, temperature)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(encoder_parameters(g1, g2), clip_norm)
    opt.step()
    sched.step()
    return loss.item()


@dataclass
class TorchRun:
    """Everything one run needs: simulation, encoders, optimiser, generator, config."""

    sim: TorchSimulation
    g1: nn.Module
    g2: nn.Module
    opt: torch.optim.Optimizer
    sched: object
    gen: torch.Generator
    batch_size: int
    clip_norm: float
    temperature: float

    def step(self) -> float:
        return train_step(
            self.sim,
            self.g1,
            self.g2,
            self.opt,
            self.sched,
            self.batch_size,
            self.clip_norm,
            self.temperature,
            self.gen,
        )


def init_run(
    seed: int,
    *,
    n_c: int,
    n_s: int,
    n_m: int,
    widths: tuple[int, ...],
    batch_size: int,
    steps: int,
    learning_rate: float,
    schedule: str = "constant",
    p_change: float = 0.75,
    statistical: bool = False,
    causal_strength: float = 0.0,
    shared: bool = False,
    clip_norm: float = 2.0,
    temperature: float = 1.0,
) -> TorchRun:
    """A fresh run (multimodal by default: f1 != f2, one encoder per modality)."""
    torch.manual_seed(seed)
    sim = init_simulation(
        seed,
        n_c,
        n_s,
        n_m,
        p_change=p_change,
        statistical=statistical,
        causal_strength=causal_strength,
        shared_mixing=shared,
    )
    dim = n_c + n_s + n_m
    g1 = make_encoder(dim, widths, n_c)
    g2 = g1 if shared else make_encoder(dim, widths, n_c)
    opt, sched = make_optimizer(encoder_parameters(g1, g2), learning_rate, steps, schedule)
    gen = torch.Generator().manual_seed(seed + 1)
    return TorchRun(sim, g1, g2, opt, sched, gen, batch_size, clip_norm, temperature)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="batch 6144, d = 15, paper widths")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.paper:
        d = 15
        cfg = dict(n_c=5, n_s=5, n_m=5, batch_size=6144, learning_rate=1e-4)
        cfg["widths"] = (10 * d, 50 * d, 50 * d, 50 * d, 50 * d, 10 * d)
    else:
        cfg = dict(n_c=2, n_s=2, n_m=2, batch_size=256, learning_rate=2e-3)
        cfg["widths"] = (32, 128, 128, 128, 128, 32)
    run = init_run(0, steps=args.steps, **cfg)
    run.step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = run.step()
    seconds = (time.perf_counter() - t0) / args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: {seconds:.4f} s/step")
    print(f"last loss {loss:.4f}")


if __name__ == "__main__":
    main()
