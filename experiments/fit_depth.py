"""Recover a solid's constants from a target depth map: ``jax.grad`` through the heightmap
by the implicit function theorem (``pj.surface_depth``).

The solid is two spheres' union, ``min(|p - c1| - r1, |p - c2| - r2)`` (8 constants: two
centres, two radii). The target is its depth map (the z of the first surface from the top)
at the true constants; the model starts from constants perturbed by Gaussian noise of
``--noise``. The loss is the mean squared depth difference over the pixels that both
maps cover; Adam (``jax.example_libraries.optimizers``) follows its gradient, where
``dz/dθ = −(∂f/∂θ) / (∂f/∂z)`` at each surface pixel.

    python experiments/fit_depth.py            # about half a minute on one CPU core

Writes ``experiments/figures/fit_depth_loss.png`` (loss per step) and
``experiments/figures/fit_depth_before_after.png`` (target, start, fitted: lit heightmaps),
and prints the loss and the constants' error before and after. Needs matplotlib
(``pip install -e '.[experiments]'``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import optimizers

import prospero_jax as pj

FIGURES = Path(__file__).resolve().parent / "figures"
SPHERES = """# two spheres: centres (a, b, c), (d, e, f); radii r, s
x var-x
y var-y
z var-z
a const 0.25
b const 0.1
c const 0.05
r const 0.45
d const -0.3
e const -0.25
f const -0.1
s const 0.35
ax sub x a
ay sub y b
az sub z c
ax2 square ax
ay2 square ay
az2 square az
a1 add ax2 ay2
a2 add a1 az2
an sqrt a2
one sub an r
dx sub x d
dy sub y e
dz sub z f
dx2 square dx
dy2 square dy
dz2 square dz
d1 add dx2 dy2
d2 add d1 dz2
dn sqrt d2
two sub dn s
both min one two
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="depth map side and depth")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--noise", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    truth = pj.parse(SPHERES, source="two spheres")
    rng = np.random.default_rng(args.seed)
    start = truth.constants + rng.normal(0, args.noise, truth.constants.shape)
    depth_of = pj.surface_depth(truth, args.size, args.size)
    target = depth_of(jnp.asarray(truth.constants, jnp.float32))

    def loss(constants: jax.Array) -> jax.Array:
        z = depth_of(constants)
        both = jnp.isfinite(z) & jnp.isfinite(target)
        difference = jnp.where(both, z - jnp.where(both, target, 0), 0)
        return jnp.sum(difference**2) / jnp.maximum(jnp.sum(both), 1)

    init, update, params = optimizers.adam(args.learning_rate)
    state = init(jnp.asarray(start, jnp.float32))
    history = []
    started = time.perf_counter()
    for i in range(args.steps):
        value, grad = jax.value_and_grad(loss)(params(state))
        state = update(i, grad, state)
        history.append(float(value))
    seconds = time.perf_counter() - started
    fitted = np.asarray(params(state), np.float64)

    print(f"{len(truth)} instructions, {len(start)} constants, {args.steps} Adam steps, "
          f"{args.size}² × {args.size} heightmaps")  # fmt: skip
    marks = ", ".join(f"{i}: {history[i]:.3g}" for i in range(0, args.steps, args.steps // 8))
    print(f"loss at step {marks}, {args.steps - 1}: {history[-1]:.3g}")
    print(f"largest constant error: {np.abs(start - truth.constants).max():.4f} -> "
          f"{np.abs(fitted - truth.constants).max():.4f}")  # fmt: skip
    print(f"{seconds:.1f} s including compilation; jax {jax.__version__}")
    plot(history, truth, start, fitted, args.size)


def plot(history: list[float], truth: pj.Program, start: np.ndarray, fitted: np.ndarray,
         size: int) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.semilogy(np.maximum(history, 1e-20))
    ax.set_xlabel("Adam step")
    ax.set_ylabel("loss (depth MSE)")
    ax.set_title("Fitting two spheres to a depth map")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIGURES / "fit_depth_loss.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), dpi=120)
    programs = (truth, truth.with_constants(start), truth.with_constants(fitted))
    titles = ("target", "start (perturbed)", "fitted")
    for ax, program, title in zip(axes, programs, titles, strict=True):
        heightmap = pj.render_heightmap(program, 256, 256)
        ax.imshow(pj.shade_heightmap(heightmap, "lit"), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("lit heightmaps, 256² × 256")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(FIGURES / "fit_depth_before_after.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
