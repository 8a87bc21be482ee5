"""Passes keep every value (checked against the oracle); analyses count what they say."""

from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import prospero_jax as pj
from prospero_jax.ir import passes
from prospero_jax.ir.ops import CONST, OPCODE
from tests.conftest import shared_path
from tests.programs import examples, programs

POINTS = np.random.default_rng(0).uniform(-1.2, 1.2, size=(2, 500))


def same_values(a: pj.Program, b: pj.Program) -> bool:
    va, vb = (pj.reference.evaluate(p, *POINTS) for p in (a, b))
    return bool(np.array_equal(va, vb, equal_nan=True))


@settings(max_examples=examples(150), deadline=None)
@given(programs())
def test_every_pass_preserves_values_bit_for_bit(program: pj.Program) -> None:
    for rewrite in (pj.fold_constants, pj.deduplicate, pj.eliminate_dead_code, pj.simplify):
        assert same_values(program, rewrite(program)), rewrite.__name__
    structural = passes.simplify(program, by_value=False)
    assert same_values(program, structural)
    # Equal numbers stay apart: what merges depends on the structure alone.
    assert np.count_nonzero(structural.opcodes == CONST) >= np.count_nonzero(
        pj.simplify(program).opcodes == CONST
    )


@st.composite
def polygons(draw: st.DrawFn) -> pj.Program:
    """Specialised-looking programs: ``affine`` rows (some alike, some zero coefficients of
    either sign), and ``min``/``max`` rows over earlier rows and the inputs."""
    number = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.25, 1e-30, 3.0])
    rows = ["_0 var-x"]
    names = ["_0"]
    for i in range(1, draw(st.integers(3, 40))):
        if draw(st.integers(0, 2)) == 0 or i < 3:
            coefficients = " ".join(repr(draw(number)) for _ in range(4))
            rows.append(f"_{i} affine {coefficients}")
        else:
            a, b = (draw(st.sampled_from(names[-5:] if draw(st.booleans()) else names))
                    for _ in range(2))  # fmt: skip
            rows.append(f"_{i} {draw(st.sampled_from(['min', 'max']))} {a} {b}")
        names.append(f"_{i}")
    return pj.parse("\n".join(rows))


@settings(max_examples=examples(100), deadline=None)
@given(polygons())
def test_folding_polygons_keeps_every_value(program: pj.Program) -> None:
    folded = passes.fold_hulls(program)
    assert same_values(program, folded)
    assert len(folded) <= len(program)
    assert len(set(folded.ids)) == len(folded.ids)
    assert passes.fold_hulls(folded) is folded


def test_a_square_and_a_triangle_are_a_row_each() -> None:
    sides = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    square = [f"s{k} affine {a} {b} 0 -0.5" for k, (a, b) in enumerate(sides)]
    square += ["m0 max s0 s1", "m1 max s2 s3", "sq max m0 m1"]
    triangle = ["t0 affine 1 1 0 -1", "t1 affine -1 0 0 0", "t2 affine 0 -1 0 0"]
    triangle += ["n0 min t0 t1", "n1 min n0 t2"]
    program = pj.parse("\n".join([*square, *triangle, "out min sq n1"]))
    folded = passes.fold_hulls(program)
    assert [OPCODE[name] for name in ("affine-max", "affine-min", "min")] == list(folded.opcodes)
    assert same_values(program, folded)


def test_simplify_on_prospero_and_models(prospero: pj.Program, hi: pj.Program) -> None:
    for program in (prospero, hi):
        simple = pj.simplify(program)
        assert same_values(program, simple)
        assert pj.simplify(simple) == simple  # a fixed point
    assert len(pj.simplify(prospero)) < len(prospero)


def test_fold_dedup_dce_each_do_their_job() -> None:
    p = pj.parse(
        "a const 2\nb const 3\nc mul a b\nx var-x\nd add x c\ne add c x\nf const 2\n"
        "unused sqrt x\ng max d e\nh sub g f"
    )
    folded = pj.fold_constants(p)
    assert folded.opcodes[2] == CONST
    assert folded.consts[2] == 6.0
    deduped = pj.deduplicate(folded)
    assert "e" not in deduped.ids
    assert "f" not in deduped.ids
    apart = pj.deduplicate(folded, by_value=False)  # c (6) and f (2) differ, a and f not
    assert "e" not in apart.ids
    assert "f" in apart.ids
    live = pj.eliminate_dead_code(deduped)
    assert "unused" not in live.ids
    assert "b" not in live.ids
    assert live.ids[-1] == "h"
    assert same_values(p, live)


def test_folding_keeps_non_finite_results_unfolded() -> None:
    p = pj.parse("z const 0\nl ln z\nx var-x\nr add x l")
    assert pj.fold_constants(p).opcodes[1] != CONST


def test_max_live_and_depth_on_a_hand_counted_program() -> None:
    # x, y alive; s = x+y frees both; t = s*s frees s; then c, r.
    p = pj.parse("x var-x\ny var-y\ns add x y\nt mul s s\nc const 1\nr sub t c")
    assert pj.max_live(p) == 3  # x, y and s while s is computed
    assert pj.describe(p)["depth"] == 4


def test_oracle_frees_values_after_last_use(prospero: pj.Program) -> None:
    side = 48
    xs = np.linspace(-1, 1, side)
    tracemalloc.start()
    pj.reference.evaluate(prospero, xs[None, :], xs[:, None])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    array_bytes = side * side * 8
    assert peak < 2 * pj.max_live(prospero) * array_bytes  # not len(prospero) arrays


def test_turning_a_sign_program_turns_every_form_of_its_atoms() -> None:
    """``transform_inputs`` of a sign program (the viewer turns solids so) is the program at
    the turned points: every affine form of every atom kind is turned, a polygon's four."""
    sign = pj.specialise(pj.load(shared_path("models/colonnade.vm")))
    kinds = {OPCODE[name] for name in ("affine", "quadric", "affine-max", "affine-min")}
    assert kinds <= set(sign.opcodes.tolist())
    turn = pj.view_rotation(30, 60)
    points = np.random.default_rng(1).uniform(-1, 1, (3, 500))
    np.testing.assert_allclose(
        pj.reference.evaluate(passes.transform_inputs(sign, turn), *points),
        pj.reference.evaluate(sign, *(turn @ points)),
        rtol=1e-9,
        atol=1e-9,
    )
