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
