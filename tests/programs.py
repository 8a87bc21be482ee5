"""Random `.vm` programs for property tests (hypothesis strategies)."""

from __future__ import annotations

import os

from hypothesis import strategies as st

import prospero_jax as pj
from prospero_jax.ir.ops import OPCODE, OPS

#: ``PROSPERO_EXAMPLES=N`` runs every property test on N times its examples (a soak run,
#: with a fresh seed outside CI: ``experiments/RESULTS.md``, "Property tests").
SCALE = int(os.environ.get("PROSPERO_EXAMPLES", "1"))


def examples(count: int) -> int:
    """A property test's number of examples, scaled by ``PROSPERO_EXAMPLES``."""
    return count * SCALE


ALL_OPS = tuple(op.name for op in OPS if op.rule is not None)
#: Ops whose derivative exists almost everywhere and is well conditioned on [-1, 1]².
SMOOTH_OPS = ("neg", "square", "add", "sub", "mul", "min", "max", "abs", "sin", "cos", "atan")


@st.composite
def programs(
    draw: st.DrawFn, ops: tuple[str, ...] = ALL_OPS, max_size: int = 40, solid: bool = False
) -> pj.Program:
    """A random program over x and y (and z if ``solid``, whose value then depends on z):
    constants in [-2, 2], each op on earlier values.

    Constants are 0 or at least 1e-3 in magnitude: XLA treats subnormal numbers one way
    when it folds constants at compile time and another at run time (flushing them to
    zero), so a program whose value is a subnormal constant has no single right image.
    """
    lines = ["_0 var-x", "_1 var-y", "_2 var-z"] if solid else ["_0 var-x", "_1 var-y"]
    count = draw(st.integers(1, max_size))
    for i in range(len(lines), count + len(lines)):
        if draw(st.integers(0, 5)) == 0:
            value = draw(st.one_of(st.just(0.0), st.floats(1e-3, 2), st.floats(-2, -1e-3)))
            lines.append(f"_{i} const {value!r}")
            continue
        name = draw(st.sampled_from(ops))
        arity = OPS[OPCODE[name]].arity
        # Favour recent values, so programs are deep rather than wide.
        args = [f"_{draw(st.integers(max(0, i - 6), i - 1))}" for _ in range(arity)]
        lines.append(" ".join([f"_{i}", name, *args]))
    if solid:  # a solid's value depends on z (2-D programs are refused as solids)
        last = len(lines)
        lines.append(f"_{last} add _{last - 1} _2")
    return pj.parse("\n".join(lines), source="<random>")


class _Lines:
    """A program being written: each method appends a row and returns its name."""

    def __init__(self, solid: bool) -> None:
        self.rows = ["_0 var-x", "_1 var-y"] + (["_2 var-z"] if solid else [])

    def add(self, op: str, *args: object) -> str:
        name = f"_{len(self.rows)}"
        self.rows.append(" ".join([name, op, *map(str, args)]))
        return name

    def const(self, value: float) -> str:
        return self.add("const", repr(value))


_COEFFICIENT = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.05, 4), st.floats(-4, -0.05))


@st.composite
def _affine(draw: st.DrawFn, out: _Lines, inputs: list[str], copies: int = 1) -> list[str]:
    """a·x + b·y (+ c·z) + d written as a chain of mul/add/sub/neg in a random order,
    ``copies`` times (the same numbers, each copy its own rows)."""
    coefficients = [draw(_COEFFICIENT) for _ in inputs]
    d = draw(st.floats(-1.5, 1.5))
    forms = [draw(st.integers(0, 3)) for _ in inputs]
    constant = not any(coefficients) or draw(st.booleans())
    signs = [draw(st.booleans()) for _ in inputs]
    names = []
    for _ in range(copies):
        terms = []
        for var, a, form in zip(inputs, coefficients, forms, strict=True):
            if a == 0:
                continue
            if a == 1:
                terms.append(var)
            elif form == 0:
                terms.append(out.add("mul", var, out.const(a)))
            elif form == 1:
                terms.append(out.add("mul", out.const(a), var))
            elif form == 2:
                terms.append(out.add("div", var, out.const(1 / a)))
            else:
                terms.append(out.add("neg", out.add("mul", var, out.const(-a))))
        if constant:
            terms.append(out.const(d))
        total = terms[0]
        for term, plus in zip(terms[1:], signs, strict=False):
            total = (
                out.add("add", total, term) if plus else out.add("sub", total, out.add("neg", term))
            )
        names.append(total)
    return names


@st.composite
def _shape(draw: st.DrawFn, out: _Lines, inputs: list[str], depth: int) -> str:
    """A signed shape: half-planes, polygons (min or max of half-planes: ir/passes.py's
    ``fold_hulls``), circles and ellipses (sqrt of squares minus r, or their squares),
    combined by min/max/neg/mul by constants, with the odd op that no rewrite touches."""
    kind = draw(st.integers(0, 8 if depth > 0 else 3))
    if kind == 0:  # a half-plane
        return draw(_affine(out, inputs))[0]
    if kind == 8:  # a polygon (max of half-planes) or its complement (min), maybe negated
        op = draw(st.sampled_from(["min", "max"]))
        sides = [draw(_affine(out, inputs))[0] for _ in range(draw(st.integers(2, 7)))]
        while len(sides) > 1:  # joined in a random order: chains and trees
            i = draw(st.integers(0, len(sides) - 2))
            sides[i : i + 2] = [out.add(op, sides[i], sides[i + 1])]
        return out.add("neg", sides[0]) if draw(st.booleans()) else sides[0]
    if kind in (1, 2):  # a circle or ellipse: sqrt(Σ lᵢ²) - r, r - sqrt(...), or Σ lᵢ² - r²
        squares = []
        for _ in range(draw(st.integers(1, 3))):
            way = draw(st.integers(0, 2))  # square l, mul l l, mul l l' (l' a copy of l)
            lines = draw(_affine(out, inputs, copies=2 if way == 2 else 1))
            squares.append(
                out.add("square", lines[0]) if way == 0 else out.add("mul", lines[0], lines[-1])
            )
        total = squares[0]
        for s in squares[1:]:
            total = out.add("add", total, s)
        r = out.const(draw(st.floats(0.0, 1.2)))
        if kind == 2:
            return out.add("sub", total, out.add("square", r))
        root = out.add("sqrt", total)
        return out.add("sub", root, r) if draw(st.booleans()) else out.add("sub", r, root)
    if kind == 3:  # a value no rewrite folds: sin or abs of an affine form
        return out.add(draw(st.sampled_from(["sin", "abs", "cos"])), draw(_affine(out, inputs))[0])
    a = draw(_shape(out, inputs, depth - 1))
    if kind == 4:
        return out.add("neg", a)
    if kind == 5:  # scaled by a nonzero constant, either side, or divided
        c = draw(st.one_of(st.floats(0.1, 3), st.floats(-3, -0.1)))
        if draw(st.booleans()):
            return out.add("div", a, out.const(c))
        return out.add("mul", *draw(st.permutations([a, out.const(c)])))
    b = draw(_shape(out, inputs, depth - 1))
    if kind == 6:
        return out.add(draw(st.sampled_from(["min", "max"])), a, b)
    return out.add(draw(st.sampled_from(["add", "sub", "mul"])), a, b)  # values, not signs


@st.composite
def specialisable(draw: st.DrawFn, solid: bool = False) -> pj.Program:
    """A random program of the kinds the sign program rewrites (ir/specialise.py): affine
    chains, circles and ellipses as square roots of sums of squares, nested min, max and
    neg, scaling by constants; over x and y (and z if ``solid``)."""
    out = _Lines(solid)
    inputs = ["_0", "_1", "_2"] if solid else ["_0", "_1"]
    draw(_shape(out, inputs, depth=draw(st.integers(0, 4))))
    return pj.parse("\n".join(out.rows), source="<random>")
