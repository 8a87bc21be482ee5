"""Fit a program's constants to a target image by gradient descent (``to_parametric``).

The target is a small model from the shape builder (a snowman: two discs, a hat of two
rectangles), rendered as the challenge's binary image. The model to fit is the same
program with every constant perturbed (centres, radii, corners: Gaussian noise of
``--noise``). The loss compares a soft occupancy ``sigmoid(-f / τ)`` (τ about one pixel)
with the target's, mean squared over a ``--size``² grid (an anti-aliased image, so the
loss is 0 at the target's constants); Adam
(``jax.example_libraries.optimizers``) follows ``jax.grad`` of it with respect to the
constants. The fitted constants are written back with ``Program.with_constants``.

    python experiments/fit_constants.py            # ~1 minute on one CPU core

Writes ``experiments/figures/fit_loss.png`` (loss per step, log scale) and
``experiments/figures/fit_before_after.png`` (target, start, fitted) and prints the loss
and intersection-over-union before and after. Needs matplotlib
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
from prospero_jax.ir import shapes

FIGURES = Path(__file__).resolve().parent / "figures"


def snowman() -> pj.Program:
    body = shapes.union(
        shapes.circle(0.0, -0.38, 0.42),
        shapes.circle(0.0, 0.22, 0.27),
        shapes.rectangle(-0.3, 0.42, 0.3, 0.5),
        shapes.rectangle(-0.17, 0.5, 0.17, 0.78),
    )
    return shapes.to_program(body, "snowman")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="loss grid side (pixels)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--noise", type=float, default=0.12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    target_program = snowman()
    rng = np.random.default_rng(args.seed)
    start = target_program.constants + rng.normal(0, args.noise, target_program.constants.shape)
    model = target_program.with_constants(start)
    field, constants = pj.to_parametric(model)

    xs, ys = pj.reference.axes(args.size, pj.reference.DEFAULT_REGION)
    x, y = jnp.asarray(xs[None, :], jnp.float32), jnp.asarray(ys[:, None], jnp.float32)
    tau = 2.0 / args.size  # about one pixel
    # The target image, anti-aliased the same way: the loss is 0 at the target's constants.
    target = jax.nn.sigmoid(-pj.to_function(target_program)(x, y) / tau)

    def loss(c: jax.Array) -> jax.Array:
        occupancy = jax.nn.sigmoid(-field(c, x, y) / tau)
        return jnp.mean((occupancy - target) ** 2)

    init, update, params = optimizers.adam(args.learning_rate)

    @jax.jit
    def step(i: int, state: optimizers.OptimizerState) -> tuple[jax.Array, object]:
        value, grad = jax.value_and_grad(loss)(params(state))
        return value, update(i, grad, state)

    state = init(constants)
    history = []
    started = time.perf_counter()
    for i in range(args.steps):
        value, state = step(i, state)
        history.append(float(value))
    seconds = time.perf_counter() - started
    fitted = target_program.with_constants(np.asarray(params(state), np.float64))

    def iou(program: pj.Program) -> float:
        a = pj.reference.render(program, 256) > 0
        b = pj.reference.render(target_program, 256) > 0
        return float((a & b).sum() / (a | b).sum())

    print(f"{len(model)} instructions, {len(constants)} constants, {args.steps} Adam steps")
    marks = ", ".join(f"{i}: {history[i]:.3g}" for i in range(0, args.steps, args.steps // 8))
    print(f"loss at step {marks}, {args.steps - 1}: {history[-1]:.3g}")
    print(f"loss decreased {history[0] / max(history[-1], 1e-30):.3g}x")
    print(f"IoU with the target at 256²: {iou(model):.3f} -> {iou(fitted):.3f}")
    print(f"{seconds:.1f} s including compilation; jax {jax.__version__}")
    print(
        "largest constant error: "
        f"{np.abs(model.constants - target_program.constants).max():.3f} -> "
        f"{np.abs(fitted.constants - target_program.constants).max():.3f}"
    )
    plot(history, target_program, model, fitted)


def plot(history: list[float], target: pj.Program, start: pj.Program, fitted: pj.Program) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.semilogy(np.maximum(history, 1e-20))  # float32 reaches exactly 0 at the target
    ax.set_xlabel("Adam step")
    ax.set_ylabel("loss (soft occupancy MSE)")
    ax.set_title("Fitting a snowman's constants")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIGURES / "fit_loss.png")
    plt.close(fig)

    outline = pj.reference.render(target, 256) > 0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), dpi=120)
    for ax, program, title in zip(
        axes, (target, start, fitted), ("target", "start (perturbed)", "fitted"), strict=True
    ):
        ax.imshow(pj.reference.render(program, 256), cmap="gray", extent=(-1, 1, -1, 1))
        ax.contour(
            np.flipud(outline),
            levels=[0.5],
            colors="tab:red",
            linewidths=0.8,
            extent=(-1, 1, -1, 1),
        )
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("white: the program's image; red: the target's outline")
    fig.tight_layout()
    fig.savefig(FIGURES / "fit_before_after.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
