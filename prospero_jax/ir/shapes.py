"""A small shape builder that emits `.vm` programs: the project's own models.

Input: Python calls (``circle``, ``rectangle``, ``half_plane``, ``union``, ...).
Output: `.vm` text (:func:`to_vm`) or a Program (:func:`to_program`).

A *shape* is a function from coordinate expressions ``(x, y)`` to an expression that is
negative inside the shape (a signed distance for circles, rectangles and half-planes;
combinations keep the sign right). Expressions are handles into a :class:`Builder`,
which writes one SSA instruction per new operation and shares identical ones, so the
emitted tape has no duplicates. Example::

    from prospero_jax import shapes as s
    ring = s.difference(s.circle(0, 0, 0.8), s.circle(0, 0, 0.5))
    text = s.to_vm(s.union(ring, s.rectangle(-0.1, -1, 0.1, 1)))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from prospero_jax.ir.parse import parse
from prospero_jax.ir.program import Program

Number = float | int


class Builder:
    """Collects `.vm` instructions; each distinct (opcode, args) is emitted once."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._memo: dict[tuple[str, ...], Expr] = {}

    def emit(self, opcode: str, *args: str) -> Expr:
        """The expression for ``opcode args``, emitting its instruction if it is new."""
        key = (opcode, *args)
        if key not in self._memo:
            name = f"_{len(self.lines):x}"
            self.lines.append(" ".join((name, opcode, *args)))
            self._memo[key] = Expr(self, name)
        return self._memo[key]

    def const(self, value: Number) -> Expr:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"constants must be finite, got {value}")
        return self.emit("const", repr(value + 0.0))  # + 0.0 turns -0.0 into 0.0

    def lift(self, value: Expr | Number) -> Expr:
        return value if isinstance(value, Expr) else self.const(value)

    def to_vm(self, comment: str | None = None) -> str:
        header = [f"# {line}" for line in comment.splitlines()] if comment else []
        return "\n".join(header + self.lines) + "\n"


@dataclass(frozen=True)
class Expr:
    """A value in a Builder's program; arithmetic on it emits instructions."""

    builder: Builder
    name: str

    def _op(self, opcode: str, *others: Expr | Number) -> Expr:
        args = [self.name, *(self.builder.lift(o).name for o in others)]
        return self.builder.emit(opcode, *args)

    # Python's operator protocol: one method per operator and side, each one line.
    def __add__(self, other: Expr | Number) -> Expr:
        return self._op("add", other)

    def __radd__(self, other: Number) -> Expr:
        return self.builder.const(other)._op("add", self)

    def __sub__(self, other: Expr | Number) -> Expr:
        return self._op("sub", other)

    def __rsub__(self, other: Number) -> Expr:
        return self.builder.const(other)._op("sub", self)

    def __mul__(self, other: Expr | Number) -> Expr:
        return self._op("mul", other)

    def __rmul__(self, other: Number) -> Expr:
        return self.builder.const(other)._op("mul", self)

    def __truediv__(self, other: Expr | Number) -> Expr:
        return self._op("div", other)

    def __neg__(self) -> Expr:
        return self._op("neg")

    def __abs__(self) -> Expr:
        return self._op("abs")

    def square(self) -> Expr:
        return self._op("square")

    def sqrt(self) -> Expr:
        return self._op("sqrt")

    def min(self, other: Expr | Number) -> Expr:
        return self._op("min", other)

    def max(self, other: Expr | Number) -> Expr:
        return self._op("max", other)


Shape = Callable[[Expr, Expr], Expr]


def circle(cx: Number, cy: Number, r: Number) -> Shape:
    """Disc of radius ``r`` centred at ``(cx, cy)``: ``|p - c| - r``."""
    return lambda x, y: ((x - cx).square() + (y - cy).square()).sqrt() - r


def rectangle(xmin: Number, ymin: Number, xmax: Number, ymax: Number) -> Shape:
    """Axis-aligned rectangle: ``max(xmin - x, x - xmax, ymin - y, y - ymax)``."""
    return lambda x, y: (xmin - x).max(x - xmax).max((ymin - y).max(y - ymax))


def half_plane(a: Number, b: Number, c: Number) -> Shape:
    """Points with ``a·x + b·y < c`` (a signed distance when ``(a, b)`` is a unit vector)."""
    return lambda x, y: x * a + y * b - c


def union(*shapes: Shape) -> Shape:
    """Points in any of ``shapes``: a balanced tree of ``min`` (depth log₂ n)."""
    return _reduce(shapes, Expr.min)


def intersection(*shapes: Shape) -> Shape:
    """Points in all of ``shapes``: a balanced tree of ``max``."""
    return _reduce(shapes, Expr.max)


def difference(shape: Shape, cut: Shape) -> Shape:
    """Points in ``shape`` and not in ``cut``: ``max(shape, -cut)``."""
    return lambda x, y: shape(x, y).max(-cut(x, y))


def translate(shape: Shape, dx: Number, dy: Number) -> Shape:
    """``shape`` moved by ``(dx, dy)``."""
    return lambda x, y: shape(x - dx, y - dy)


def scale(shape: Shape, factor: Number) -> Shape:
    """``shape`` scaled about the origin by ``factor`` > 0 (distances scale with it)."""
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    inverse = 1.0 / factor
    return lambda x, y: shape(x * inverse, y * inverse) * factor


def _reduce(shapes: tuple[Shape, ...], combine: Callable[[Expr, Expr], Expr]) -> Shape:
    if not shapes:
        raise ValueError("need at least one shape")

    def combined(x: Expr, y: Expr) -> Expr:
        values = [s(x, y) for s in shapes]
        while len(values) > 1:
            pairs = [combine(a, b) for a, b in zip(values[::2], values[1::2], strict=False)]
            values = pairs + ([values[-1]] if len(values) % 2 else [])
        return values[0]

    return combined


def to_vm(shape: Shape, comment: str | None = None) -> str:
    """The `.vm` text of ``shape``, its value the last line."""
    builder = Builder()
    x, y = builder.emit("var-x"), builder.emit("var-y")
    shape(x, y)
    return builder.to_vm(comment)


def to_program(shape: Shape, name: str = "<shape>") -> Program:
    """``shape`` as a Program (built through its `.vm` text, so the parser checks it)."""
    return parse(to_vm(shape), source=name)


# The built-in demo: "PROSPERO" over "JAX" in dot-matrix letters, in a frame.
_FONT = {
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
}


def dot_text(text: str) -> Shape:
    """``text`` (letters of the demo's font) as dots of radius 0.42 on a unit grid.

    The text's lower-left dot is at the origin; each letter is 5 × 7 cells, 6 apart.
    """
    dots = [
        circle(6 * k + col, 6 - row, 0.42)
        for k, letter in enumerate(text)
        for row, line in enumerate(_FONT[letter])
        for col, cell in enumerate(line)
        if cell == "#"
    ]
    return union(*dots)


def demo() -> Shape:
    """The built-in demo model: two lines of dot-matrix text and a row of rings, framed."""
    top = translate(scale(dot_text("PROSPERO"), 0.039), -0.895, 0.2)
    bottom = translate(scale(dot_text("JAX"), 0.075), -0.615, -0.75)
    rings = union(
        *(
            difference(circle(0.2 * k, -0.06, 0.05 + 0.01 * abs(k)), circle(0.2 * k, -0.06, 0.03))
            for k in range(-4, 5)
        )
    )
    frame = difference(rectangle(-0.96, -0.9, 0.96, 0.9), rectangle(-0.93, -0.87, 0.93, 0.87))
    return union(top, rings, bottom, frame)


def demo_program() -> Program:
    """The built-in demo as a Program (over 1,000 instructions)."""
    return to_program(demo(), name="<demo>")
