"""The unrolled evaluator: one Python loop over the tape, shared by the oracle and JAX.

Input: a Program, an array namespace (``numpy`` or ``jax.numpy``), the inputs' values and
a function that turns a constant into a value of the working dtype.
Output: the program's value (the last instruction's).

Every instruction is evaluated by its rule in :data:`prospero_jax._ops.OPS`: the value
rule (points) or the interval rule (``(lo, hi)`` pairs), chosen when planning. Values are
dropped right after their last use (:func:`prospero_jax._passes.last_uses`), so at most
``max_live`` intermediates exist at once: with NumPy that is the liveness GC that keeps
the oracle near 1 GB at 1024²; under JAX tracing it keeps the tracer list short, and
XLA's buffer assignment does the same job in the compiled code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from prospero_jax._ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, Namespace, Rule, interval_step
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


def plan(program: Program, rules: Literal["value", "interval"] = "value") -> tuple[Step, ...]:
    """Precompute the evaluation steps of ``program`` (done once per program, not per call).

    ``rules`` picks what each step computes: values, or intervals (pairs ``(lo, hi)``).
    """
    frees = last_uses(program)
    steps = []
    for i, (code, row, c) in enumerate(
        zip(program.opcodes.tolist(), program.args.tolist(), program.consts.tolist(), strict=True)
    ):
        op = OPS[code]
        rule = op.rule if rules == "value" or op.rule is None else _interval_rule(op)
        kind = code if op.rule is None else -1
        steps.append(Step(kind, rule, tuple(row[: op.arity]), c, tuple(frees[i])))
    return tuple(steps)


def _interval_rule(op: Any) -> Rule:
    return functools.partial(interval_step, op)


def run(
    steps: tuple[Step, ...],
    xp: Namespace,
    x: Any,
    y: Any,
    z: Any,
    constant: Callable[[float], Any],
) -> Any:
    """Evaluate planned steps on inputs ``x, y, z`` with namespace ``xp``.

    ``constant(c)`` makes the working-dtype value of a ``const``. The result is the last
    step's value, not broadcast: a constant program gives a scalar.
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
    return values[-1]
