"""The unrolled evaluator: one Python loop over the tape, shared by the oracle and JAX.

Input: a Program, an array namespace (``numpy`` or ``jax.numpy``), the inputs' values and
a function that turns a constant (its ordinal among the program's constants, and its
value) into a value of the working dtype.
Output: the program's value (the last instruction's).

Every instruction is evaluated by its rules in :data:`prospero_jax.ir.ops.OPS`, chosen when
planning: the value rule (points), the interval rule (``(lo, hi)`` pairs) or the value
and partials rules together (dual numbers: ``(value, tangent)`` pairs). Values are
dropped right after their last use (:func:`prospero_jax.ir.passes.last_uses`), so at most
``max_live`` intermediates exist at once: with NumPy that is the liveness GC that keeps
the oracle near 1 GB at 1024²; under JAX tracing it keeps the tracer list short, and
XLA's buffer assignment does the same job in the compiled code.

A ``seal`` (see :func:`run`) is applied to every value as it is made: the JAX lowering
passes one that hides each value from XLA's algebraic simplifier, so the compiled code
computes each instruction as the op table says (see :mod:`prospero_jax.evaluators.lower`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from jax import lax

from prospero_jax.ir.ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, Namespace, Op, Rule, interval_step
from prospero_jax.ir.passes import last_uses
from prospero_jax.ir.program import Program, refuse_atoms


@dataclass(frozen=True)
class Step:
    """One instruction, ready to run: how to compute it and what to drop after."""

    kind: int  # opcode for inputs and const, -1 for a rule
    rule: Rule | None
    args: tuple[int, ...]
    const: float
    slot: int  # a const's ordinal among the program's constants, an atom's among its atoms
    frees: tuple[int, ...]
    atom: Callable[..., Any] | None = None  # an atom's rule: atom(xp, params, x, y, z)
    params: np.ndarray | None = None  # an atom's numbers
    product: bool = False  # its value is a product (the op table's ``Op.product``)


Rules = Literal["value", "interval", "dual"]


def plan(program: Program, rules: Rules = "value") -> tuple[Step, ...]:
    """Precompute the evaluation steps of ``program`` (done once per program, not per call).

    ``rules`` picks what each step computes: values, intervals (pairs ``(lo, hi)``) or
    dual numbers (pairs ``(value, tangent)``).
    """
    if rules == "dual":
        refuse_atoms(program, "differentiating (atoms have no derivatives)")
    frees = last_uses(program)
    steps = []
    slots = np.cumsum(program.opcodes == CONST) - 1
    ordinals = np.cumsum([OPS[code].source is not None for code in program.opcodes]) - 1
    for i, (code, row, c) in enumerate(
        zip(program.opcodes.tolist(), program.args.tolist(), program.consts.tolist(), strict=True)
    ):
        op = OPS[code]
        rule: Rule | None = op.rule
        if op.rule is not None and rules != "value":
            rule = functools.partial(interval_step if rules == "interval" else dual_step, op)
        kind = code if op.rule is None else -1
        slot = int(slots[i]) if code == CONST else -1
        atom, params = None, None
        if op.source is not None:
            source = op.source if rules == "value" else op.source_interval
            atom = functools.partial(_atom, source, rules == "interval")
            slot, params = int(ordinals[i]), program.params[ordinals[i]]
        row_args = tuple(row[: op.arity])
        step = Step(kind, rule, row_args, c, slot, tuple(frees[i]), atom, params, op.product)
        steps.append(step)
    return tuple(steps)


def _atom(
    source: Callable[..., Any], bounds: bool, xp: Namespace, params: Any, *inputs: Any
) -> Any:
    """An atom's value (or interval, with ``bounds``) at the inputs, its numbers ``params``
    (a NumPy row, or an array the caller passes) in the inputs' dtype. Under JAX the
    numbers pass through an optimization barrier, as every value does
    (:func:`prospero_jax.evaluators.lower.sealed`): as constants, XLA's simplifier would
    rewrite ``0 · y`` to 0 and ``x + 0`` to ``x`` (wrong for infinite ``y`` and for
    ``x = -0``)."""
    first = inputs[0][0] if bounds else inputs[0]
    dtype = xp.asarray(first).dtype
    p = xp.asarray(params.astype(dtype) if isinstance(params, np.ndarray) else params)
    if xp is not np:
        p = lax.optimization_barrier(p)  # type: ignore[no-untyped-call]
    return source(xp, p, *inputs)


def dual_step(op: Op, xp: Namespace, *args: tuple[Any, Any]) -> tuple[Any, Any]:
    """``op`` on dual numbers ``(value, tangent)``: its value and ``Σ ∂op/∂arg · d(arg)``.

    Two rules keep a derivative finite wherever the value is (float32 overflows where
    float64 does not, e.g. ``exp`` in a far-away smooth blend):

    * a row whose value is not finite (``±inf``, NaN) carries no derivative: its
      partials are 0, so an overflowed or underflowed branch that a ``min``/``max``
      discards passes nothing on, and neither does a finite op of it (``atan(inf)``);
    * a zero partial selects nothing: ``0 · d(arg)`` is 0 even where ``d(arg)`` is NaN
      (a ``min``'s discarded side), as a symbolic zero would be; and a NaN partial of a
      finite value (an indeterminate form such as ``atan2(0, inf)``'s ``inf / inf``)
      counts as 0, as the op table's conventions take 0 where a derivative does not
      exist.

    Both are selects on primal values, so the tangent stays linear in the arguments'
    tangents and reverse mode (its transpose) obeys the same rules: a zero cotangent
    never meets an infinite partial.
    """
    assert op.rule is not None
    assert op.partials is not None
    values = [a for a, _ in args]
    out = op.rule(xp, *values)
    finite = xp.isfinite(out)
    tangent = None
    for p, (_, t) in zip(op.partials(xp, out, *values), args, strict=True):
        selects = finite & (p != 0) & (p == p)  # p == p: not NaN
        term = xp.where(selects, xp.where(selects, p, 0) * t, 0)
        tangent = term if tangent is None else tangent + term
    return out, tangent


def run(
    steps: tuple[Step, ...],
    xp: Namespace,
    x: Any,
    y: Any,
    z: Any,
    constant: Callable[[int, float], Any],
    seal: Callable[[Any], Any] | None = None,
    numbers: Callable[[int, np.ndarray], Any] | None = None,
    zero: Any = None,
) -> Any:
    """Evaluate planned steps on inputs ``x, y, z`` with namespace ``xp``.

    ``constant(slot, c)`` makes the working-dtype value of a ``const`` (``slot``: its
    ordinal among the program's constants; ``c``: its value). ``seal(value)``, if given,
    is applied to every instruction's value (inputs and constants included) before it is
    used; it must return the same numbers. ``numbers(slot, params)``, if given, gives an
    atom's numbers (``slot``: its ordinal among the atoms; ``params``: the program's),
    else they are the program's. ``zero``, if given, is added to every product's value
    (``Op.product``): a −0.0 the compiler cannot see (:func:`~prospero_jax.evaluators.
    lower.unseen_zero`), so XLA cannot fuse a product and the sum that uses it into one
    multiply-add (``x + -0.0`` is ``x``, also for ±0, ±inf and NaN). The result is the
    last step's value, not broadcast unless ``seal`` broadcasts: a constant program
    gives a scalar.
    """
    values = run_steps(steps, 0, len(steps), {}, xp, (x, y, z), constant, seal, numbers, zero)
    return values[len(steps) - 1]


def run_steps(
    steps: tuple[Step, ...],
    start: int,
    stop: int,
    values: dict[int, Any],
    xp: Namespace,
    inputs: tuple[Any, Any, Any],
    constant: Callable[[int, float], Any],
    seal: Callable[[Any], Any] | None = None,
    numbers: Callable[[int, np.ndarray], Any] | None = None,
    zero: Any = None,
) -> dict[int, Any]:
    """Steps ``start`` to ``stop - 1``, given the values alive before ``start`` (by index).

    Returns the values alive after them: those a later step reads, and the last step's.
    (:func:`run` is all the steps at once; the ``chunked`` strategy runs them in pieces.)
    """
    values = dict(values)
    by_kind = {VAR_X: inputs[0], VAR_Y: inputs[1], VAR_Z: inputs[2]}
    for i in range(start, stop):
        step = steps[i]
        if step.rule is not None:
            values[i] = step.rule(xp, *(values[a] for a in step.args))
            if step.product and zero is not None:
                values[i] = values[i] + zero
        elif step.atom is not None and step.params is not None:
            params = step.params if numbers is None else numbers(step.slot, step.params)
            values[i] = step.atom(xp, params, *inputs)
        elif step.kind == CONST:
            values[i] = constant(step.slot, step.const)
        else:
            values[i] = by_kind[step.kind]
        if seal is not None:
            values[i] = seal(values[i])
        for j in step.frees:
            del values[j]
    return values


def live_after(steps: tuple[Step, ...], stops: list[int]) -> list[tuple[int, ...]]:
    """The indices of the values alive after step ``stop - 1``, for each of ``stops``."""
    wanted = set(stops)
    alive: set[int] = set()
    found: dict[int, tuple[int, ...]] = {}
    for i, step in enumerate(steps):
        alive.add(i)
        alive.difference_update(step.frees)
        if i + 1 in wanted:
            found[i + 1] = tuple(sorted(alive))
    return [found[stop] for stop in stops]
