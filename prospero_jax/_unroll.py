"""The unrolled evaluator: one Python loop over the tape, shared by the oracle and JAX.

Input: a Program, an array namespace (``numpy`` or ``jax.numpy``), the coordinate arrays
and a function that turns a constant into a scalar of the working dtype.
Output: the program's value, broadcast to the coordinates' shape.

Every instruction is evaluated by its rule in :data:`prospero_jax._ops.OPS`. Values are
dropped right after their last use (:func:`prospero_jax._passes.last_uses`), so at most
``max_live`` intermediates exist at once: with NumPy that is the liveness GC that keeps
the oracle near 1 GB at 1024²; under JAX tracing it keeps the tracer list short, and
XLA's buffer assignment does the same job in the compiled code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prospero_jax._ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, Namespace, Rule
from prospero_jax._passes import last_uses
from prospero_jax._tape import Program


@dataclass(frozen=True)
class Step:
    """One instruction, ready to run: how to compute it and what to drop after."""

    kind: int  # opcode for inputs and const, -1 for a rule
    rule: Rule | None
    args: tuple[int, ...]
    const: float
    frees: tuple[int, ...]


def plan(program: Program) -> tuple[Step, ...]:
    """Precompute the evaluation steps of ``program`` (done once per program, not per call)."""
    frees = last_uses(program)
    steps = []
    for i, (code, row, c) in enumerate(
        zip(program.opcodes.tolist(), program.args.tolist(), program.consts.tolist(), strict=True)
    ):
        op = OPS[code]
        kind = code if op.rule is None else -1
        steps.append(Step(kind, op.rule, tuple(row[: op.arity]), c, tuple(frees[i])))
    return tuple(steps)


def run(
    steps: tuple[Step, ...],
    xp: Namespace,
    x: Any,
    y: Any,
    z: Any,
    constant: Callable[[float], Any],
) -> Any:
    """Evaluate planned steps on coordinates ``x, y, z`` with namespace ``xp``.

    ``constant(c)`` makes the working-dtype scalar for a ``const``; the result is broadcast
    to the shape of ``x``, ``y`` and ``z`` together, so a constant program still gives an
    image.
    """
    inputs = {VAR_X: x, VAR_Y: y, VAR_Z: z}
    values: list[Any] = [None] * len(steps)
    for i, step in enumerate(steps):
        if step.rule is not None:
            values[i] = step.rule(xp, *(values[a] for a in step.args))
        elif step.kind == CONST:
            values[i] = constant(step.const)
        else:
            values[i] = inputs[step.kind]
        for j in step.frees:
            values[j] = None
    shape = xp.broadcast_shapes(xp.shape(x), xp.shape(y), xp.shape(z))
    return xp.broadcast_to(values[-1], shape)
