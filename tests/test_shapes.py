"""The shape builder: shapes mean what they say, emit valid deduplicated `.vm` text."""

from __future__ import annotations

import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.ir import shapes as s


def value(shape: s.Shape, x: float, y: float) -> float:
    return float(pj.reference.evaluate(s.to_program(shape), x, y))


def test_primitives_are_signed_distances() -> None:
    assert value(s.circle(0.5, 0, 0.25), 0.5, 0) == pytest.approx(-0.25)
    assert value(s.circle(0.5, 0, 0.25), 1.0, 0) == pytest.approx(0.25)
    assert value(s.rectangle(-1, -1, 1, 0.5), 0, 0) == pytest.approx(-0.5)
    assert value(s.half_plane(1, 0, 0.2), 0.7, 3) == pytest.approx(0.5)


def test_combinators_and_transforms() -> None:
    a, b = s.circle(0, 0, 1), s.circle(1, 0, 1)
    assert value(s.union(a, b), 1.8, 0) < 0
    assert value(s.intersection(a, b), 1.8, 0) > 0
    assert value(s.difference(a, b), 0.9, 0) > 0
    assert value(s.difference(a, b), -0.9, 0) < 0
    assert value(s.translate(a, 3, 0), 3.5, 0) == pytest.approx(-0.5)
    assert value(s.scale(a, 2), 1.5, 0) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="positive"):
        s.scale(a, 0)
    with pytest.raises(ValueError, match="at least one"):
        s.union()


def test_demo_is_a_large_valid_program_without_duplicates() -> None:
    demo = s.demo_program()
    assert len(demo) > 1000
    assert pj.deduplicate(demo) == demo
    assert pj.parse(demo.to_vm()) == demo
    image = pj.reference.render(demo, 128)
    assert 0.05 < (image > 0).mean() < 0.5


def test_emitted_text_parses_and_round_trips() -> None:
    text = s.to_vm(s.union(s.circle(0, 0, 0.5), s.rectangle(0, 0, 1, 1)), comment="two")
    assert text.startswith("# two\n")
    program = pj.parse(text)
    assert np.isclose(pj.reference.evaluate(program, 0.0, 0.0), -0.5)
