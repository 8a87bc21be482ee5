"""Atoms (``affine``, ``quadric``: the sign program's rows) through every evaluator that reads
them, by ``tests/test_ops.py``'s contract.

An atom is judged by its own rule run by NumPy in the evaluator's dtype (its numbers and
the points rounded to that dtype, each operation rounded as IEEE 754 says, in the rule's
order): the value evaluators agree bit for bit, the leaf kernel's ``value < 0`` exactly,
and every interval holds the judged values at its box's corners and awkward points inside
(the bounds are the rule at the minimising and maximising corners, so they hold in
floating point). Evaluators of derivatives refuse atoms with a clear error: a sign
program keeps the original's sign, not its value.
"""

from __future__ import annotations

import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.ir.ops import OPCODE, OPS, PARAMS
from tests.test_ops import (
    EVALUATORS,
    Evaluator,
    assert_values,
    bad,
    boxes_for,
    grid,
    interpreted,
    subnormal,
)

AFFINE = [
    (1.0, 0.0, 0.0, 0.0),
    (0.0, 1.0, 0.0, 0.5),
    (8.13008, 0.0, 0.0, 2.95),
    (-3.5, 2.25, 0.75, -1.0),
    (0.0, 0.0, 0.0, 2.0),
    (1e-3, -1e20, 0.0, 7.0),
]
#: (w₁, l₁, w₂, l₂, w₃, l₃, k), each lᵢ four numbers: circles, their negations, an
#: ellipse, one term, mixed signs, three terms.
QUADRIC = [
    (1, (8.13, 0, 0, 2.95), 1, (0, 8.13, 0, 6.025), 0, (0, 0, 0, 0), -0.0306),
    (-1, (8.13, 0, 0, 2.95), -1, (0, 8.13, 0, 6.025), 0, (0, 0, 0, 0), 0.0306),
    (2, (1, 0, 0, -0.5), 0.5, (0, 1, 0, 0.25), 0, (0, 0, 0, 0), -1),
    (1, (1, 1, 0, 0), 0, (0, 0, 0, 0), 0, (0, 0, 0, 0), -1),
    (1, (1, 0, 0, 0), -1, (0, 1, 0, 0), 0, (0, 0, 0, 0), 0),
    (1, (1, 0, 0, 0), 1, (0, 1, 0, 0), 1, (0.5, 0.5, 1, 0.1), -0.25),
]
#: Polygons (``affine-max``) and their complements (``affine-min``): two to four forms,
#: fewer repeating the first as :func:`~prospero_jax.ir.passes.fold_hulls` writes them.
HULLS = [
    ((1.0, 0.0, 0.0, -0.5), (-1.0, 0.0, 0.0, -0.5)),
    ((0.0, 1.0, 0.0, -0.25), (1.0, 1.0, 0.0, -0.5), (-8.13008, 0.5, 0.0, 2.95)),
    ((1.0, 0.0, 0.0, -0.5), (-1.0, 0.0, 0.0, -0.5), (0.0, 1.0, 0.0, -0.5), (0.0, -1.0, 0.0, -0.5)),
    ((1e-3, -1e20, 0.0, 7.0), (-3.5, 2.25, 0.75, -1.0)),
]
ATOM_EVALUATORS = {
    name: e for name, e in EVALUATORS.items() if name.split("-")[0] in ("oracle", "jit", "eager")
} | {name: e for name, e in EVALUATORS.items() if e.kind in ("signs", "intervals")}
CASES = (
    [("affine", p) for p in AFFINE]
    + [("quadric", p) for p in QUADRIC]
    + [(kind, p) for kind in ("affine-max", "affine-min") for p in HULLS]
)


def numbers(kind: str, p: tuple) -> list[float]:  # type: ignore[type-arg]
    if kind == "affine":
        return list(p)
    if kind.startswith("affine-"):
        return [v for k in range(4) for v in p[k if k < len(p) else 0]]
    w1, l1, w2, l2, w3, l3, k = p
    return [w1, *l1, w2, *l2, w3, *l3, k]


def atom_program(kind: str, p: tuple) -> pj.Program:  # type: ignore[type-arg]
    text = " ".join(repr(float(v)) for v in numbers(kind, p))
    return pj.parse(f"x var-x\ny var-y\nr {kind} {text}", source=kind)


def judged(kind: str, p: tuple, x: np.ndarray, y: np.ndarray, dtype: str) -> np.ndarray:  # type: ignore[type-arg]
    """The atom's rule, run by NumPy in ``dtype`` (as float64)."""
    op = OPS[OPCODE[kind]]
    assert op.source is not None
    params = np.zeros(PARAMS)
    params[: len(numbers(kind, p))] = numbers(kind, p)
    with np.errstate(all="ignore"):
        value = op.source(
            np, params.astype(dtype), x.astype(dtype), y.astype(dtype), np.zeros((), dtype)
        )
    return np.asarray(np.broadcast_to(value, np.broadcast_shapes(x.shape, y.shape)), np.float64)


@pytest.mark.parametrize("name", sorted(ATOM_EVALUATORS))
@pytest.mark.parametrize(("kind", "p"), CASES, ids=[f"{k}{i}" for i, (k, _) in enumerate(CASES)])
def test_atoms_conform(kind: str, p: tuple, name: str) -> None:  # type: ignore[type-arg]
    evaluator: Evaluator = ATOM_EVALUATORS[name]
    program, op = atom_program(kind, p), OPS[OPCODE[kind]]
    if evaluator.kind == "intervals":
        boxes, px, py, number = boxes_for(OPS[OPCODE["add"]], evaluator.dtype)  # x × y boxes
        got = evaluator.run(program, boxes)
        lo, hi = (np.asarray(v, np.float64) for v in (got.lo, got.hi))
        values = judged(kind, p, px, py, evaluator.dtype)
        values = np.where(subnormal(values, evaluator.dtype), 0.0, values)
        known = ~(np.isnan(lo) | np.isnan(hi))
        assert known.any()
        missed = known[number] & ~((values >= lo[number]) & (values <= hi[number]))
        assert not missed.any(), f"misses {values[missed][:4]} at {bad(px, py, missed)}"
        return
    x, y = grid(evaluator.dtype)
    expected = judged(kind, p, x, y, evaluator.dtype)
    got = np.asarray(evaluator.run(program, x, y))
    # Compiled code may fuse a product into the next sum (one rounding instead of two):
    # values agree within 4 ulps of the terms' magnitude, and signs wherever the judged
    # value is farther from 0 than that. NumPy (the oracle) rounds every step.
    near = np.abs(expected) <= 4 * np.finfo(evaluator.dtype).eps * magnitude(kind, p, x, y)
    if name == "oracle":
        near[:] = False
    if evaluator.kind == "signs":
        wrong = ~subnormal(expected, evaluator.dtype) & ~near & (got != (expected < 0))
        assert not wrong.any(), f"value < 0 differs at {bad(x, y, wrong)}"
        return
    exact = evaluator if name == "oracle" else Evaluator("values", evaluator.run, evaluator.dtype)
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite
        margin = 4 * np.finfo(evaluator.dtype).eps * magnitude(kind, p, x, y)
        close = np.abs(got - expected) <= margin
    fused = finite & np.isfinite(got) & close & (got != expected)
    if name == "oracle":
        assert not fused.any()
    got = np.where(fused, expected, got)  # within the fused-rounding margin: judged equal
    assert_values(op, got, expected, x, y, exact, signed_zeros=not near.any())


def magnitude(kind: str, p: tuple, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """The size of the terms an atom's rule sums, in float64 (for rounding margins)."""
    n = numbers(kind, p)
    with np.errstate(all="ignore"):
        x, y = x.astype(np.float64), y.astype(np.float64)
        if kind == "affine":
            return np.abs(n[0] * x) + np.abs(n[1] * y) + abs(n[3])
        total = np.full(x.shape, abs(n[15]))
        for k in (0, 5, 10):
            line = np.abs(n[k + 1] * x) + np.abs(n[k + 2] * y) + abs(n[k + 4])
            total = total + abs(n[k]) * line * line
        return total


def test_atoms_have_no_derivatives_and_say_so() -> None:
    import jax

    program = atom_program(*CASES[0])
    for derivatives in ("unrolled", "interpreter"):
        f = pj.to_function(program, derivatives=derivatives)
        with pytest.raises(ValueError, match="specialised program"):
            jax.grad(f)(0.1, 0.2)
    with pytest.raises(ValueError, match="specialised program"):
        interpreted(program, np.zeros((2, 2)), np.zeros((2, 2)))
    assert np.isfinite(float(pj.to_function(program)(0.1, 0.2)))  # values are fine


def test_atoms_are_written_and_read_back_as_vm_text() -> None:
    for kind, p in CASES:
        program = atom_program(kind, p)
        again = pj.parse(program.to_vm())
        assert again == program
        np.testing.assert_array_equal(again.params, program.params)
    with pytest.raises(pj.VMError, match="'affine' takes 4 numbers, got 3"):
        pj.parse("r affine 1 2 3")
    with pytest.raises(pj.VMError, match="is not finite"):
        pj.parse("r affine 1 2 3 inf")


class _NotNumPy:
    """NumPy under another name: the op table's rules keep their ``+ -0`` for it."""

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("kind", "p"), CASES)
def test_numpy_skips_the_rounding_zero_with_the_same_numbers(
    kind: str,
    p: tuple,  # type: ignore[type-arg]
    dtype: str,
) -> None:
    # NumPy never fuses a product into a sum, so its rules drop the `+ -0` that keeps XLA
    # from doing so (ops._product): bit for bit what the full rule computes, -0 and
    # subnormal results included, and the full rule still where the numbers are NaN.
    op = OPS[OPCODE[kind]]
    assert op.source is not None
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-2, 2, 500), [0.0, -0.0, 1e-39, -1e-39, 1e30]])
    y = rng.permutation(x)
    params = np.zeros(PARAMS)
    params[: len(numbers(kind, p))] = numbers(kind, p)
    for q in (params, np.where(np.arange(PARAMS) == 0, np.nan, params)):
        q, xs, ys, z = (np.asarray(v, dtype) for v in (q, x, y, 0.25))
        with np.errstate(all="ignore"):
            fast = op.source(np, q, xs, ys, z)
            full = op.source(_NotNumPy(), q, xs, ys, z)
        assert np.array_equal(fast.view(np.uint8), full.view(np.uint8))
