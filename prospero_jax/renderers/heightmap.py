"""Heightmaps: a program of (x, y, z) → the first surface seen from above, and its normals.

Input: a Program and a solid's :class:`~prospero_jax.renderers.view.View`: an image side
``N``, a region, a depth ``D`` (samples on ``linspace(zmax, zmin, D)``, top first; by
default ``(-1, 1)``) and optionally a 3 × 3 ``rotation`` (:meth:`View.pose
<prospero_jax.renderers.view.View.pose>`); a target.
Output: a :class:`Heightmap`: ``z[row, col]``, the z of the first sample from the top
where the value is < 0 at pixel ``(xs[col], ys[row])`` (NaN where the column is empty;
"< 0" as images decide it: the sign program's unless the target is exact; a turned
view's is the source's sign program turned, which :meth:`View.pose
<prospero_jax.renderers.view.View.pose>` turns atom by atom),
and ``normal``, ∇f/|∇f| there (forward mode through the op table's partials, at surface
pixels only; on CPU on pruned tapes, a tape per tile of the image:
:mod:`~prospero_jax.renderers.heightmap_normals`; NaN where empty). Images from it:
:func:`shade_heightmap`. For ``jax.grad``:
:func:`surface_depth`, the surface's z as a differentiable function of the program's
constants (the implicit function theorem).

How, culled (the default on CPU): one interval hierarchy over boxes in x, y and z, front
to back (:func:`~prospero_jax.renderers.octree.first_inside`): a box proved inside gives its
columns its top sample, one proved outside is dropped, one below what its columns have
already found is dropped, and the leaf boxes left ambiguous are evaluated at their samples
a layer at a time, top down. Brute force (the default on accelerators) evaluates every
sample until its column is found: on accelerators, one call per tile searches the tile's
columns on the device, a depth a step, until each has found its sample or the depths run
out; on CPU, slice by slice with the 2-D brute-force renderer. On CPU the two agree voxel
for voxel (both evaluate the same program at the same float32 points, where culled ==
brute bit for bit); on an accelerator, whose compiler fuses (and contracts multiply-adds)
as it likes, only where the deciding sample's value is not within rounding of 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, UInt8

from prospero_jax.evaluators.lower import to_function, to_parametric
from prospero_jax.ir.passes import dimensions
from prospero_jax.ir.program import Program
from prospero_jax.renderers.brute import jitted, jitted_kernel, render_tiles
from prospero_jax.renderers.heightmap_normals import surface_normals
from prospero_jax.renderers.hierarchy import root_side
from prospero_jax.renderers.octree import FAR, LEAF, THICK, first_inside
from prospero_jax.renderers.render import drawn
from prospero_jax.renderers.view import (
    InvalidView,
    Progress,
    Shorthand,
    Target,
    View,
    check_count,
    check_samples,
    culls,
    resolve,
)

#: Bytes a heightmap holds per pixel (z, normal, the sweep's first-sample indices), and
#: the most it may hold: about 7,300² pixels.
BYTES_PER_PIXEL = 40
HEIGHTMAP_MEMORY = 2 * 2**30
#: What :func:`shade_heightmap` draws.
HEIGHTMAP_SHADES = ("lit", "normals", "depth")
#: The light of ``lit`` images: from the upper left, towards the viewer.
LIGHT = np.array([-0.4, 0.5, 0.77]) / np.linalg.norm([-0.4, 0.5, 0.77])


class Heightmap(NamedTuple):
    """The first surface from the top: ``z`` (float64, NaN where empty) and unit
    ``normal`` (``(N, N, 3)``, made unit length in the target's dtype and held in it: a
    float32 image's normals, 12 bytes a pixel; NaN where empty, None if not asked for),
    rows top to bottom."""

    z: Float[np.ndarray, "n n"]
    normal: Float[np.ndarray, "n n 3"] | None
    depth: int


def depths(depth: int) -> np.ndarray:
    """The sample depths, top first: ``linspace(1, -1, depth)`` (float64)."""
    if depth < 2:
        raise ValueError(f"depth must be at least 2 samples, got {depth}")
    return np.linspace(1.0, -1.0, depth)


def check_solid(program: Program) -> None:
    """A ``ValueError`` unless ``program``'s value depends on z: heightmaps, meshes and
    depths of a 2-D program would be its shape extruded, not what was meant."""
    if dimensions(program) != 3:
        raise ValueError(
            f"{program.source}: a 2-D program (its value does not depend on var-z), not a "
            "solid: draw it with render (`prospero render`)"
        )


def check_heightmap(view: View) -> View:
    """``view`` if a heightmap of it (``view.samples`` deep) fits the limits of time and
    memory, else :class:`InvalidView`; checked before anything is allocated."""
    if view.rows is not None:
        raise InvalidView("rows", "a heightmap is of the whole image: give no rows")
    size, depth = view.size, view.samples
    needed = size * size * BYTES_PER_PIXEL
    if needed > HEIGHTMAP_MEMORY:
        raise InvalidView(
            "size",
            f"a {size}² heightmap needs {needed / 2**30:.1f} GiB in memory (its z, normals "
            f"and work arrays), above the {HEIGHTMAP_MEMORY / 2**30:.0f} GiB limit: use a "
            "smaller size, or render parts of the view as regions",
        )
    blamed = "size" if view.depth is None else "depth"  # the default depth is the size
    check_samples(blamed, size * size * depth, f"a {size}² heightmap {depth} deep")
    return view


def render_heightmap(
    program: Program,
    size: int | View = 256,
    depth: int | None = None,
    *,
    mode: str = "auto",
    normals: bool = True,
    progress: Progress | None = None,
    **options: Unpack[Shorthand],
) -> Heightmap:
    """The heightmap of ``program`` over a solid's :class:`View` (the module docstring).

    ``size`` is a View, or an image side that ``depth`` (samples of z, default the side,
    at least 2) and :class:`Shorthand`'s keywords complete (``region``, ``zrange`` (default
    ``(-1, 1)``), ``rotation``; ``target`` or ``dtype``, ``device``, ``exact``); ``mode``
    as :func:`prospero_jax.render` takes it; ``progress(done, total)`` counts layers of
    depth samples (culled), depths (brute on CPU) or tiles (brute on accelerators). Sizes
    beyond the limits of time and memory, bands of rows and 2-D programs are refused
    before any work."""
    view, target = resolve(size, options, depth)
    check_heightmap(view)
    check_solid(program)
    original, turn = program, view.rotation
    culled = culls(mode, target)
    # Inside or not: culled, the sign program. A turned view turns the source's (its
    # atoms' forms with it) rather than deriving the turned program's anew: a new turn
    # costs no specialising (the viewer's bear: ~23 ms a view, prospero's size ~0.25 s)
    # and every turn's sign program has the same rows.
    unturned = drawn(original, target, culled)
    program, posed = view.pose(original)
    sign = program if unturned is original else view.pose(unturned)[0]
    view = posed
    zs = view.zs()
    with target.precision():
        if culled:
            index = _culled(sign, view, zs, target, progress, program)
        else:
            index = _brute(sign, view, zs, target, progress)
    evaluated = zs.astype(target.dtype).astype(np.float64)  # the depths the program saw
    # A column with none (an index len(zs) or more) reads the NaN at the end, clipped to
    # it: np.take's clip reads the int32 index as it is (a fancy index converted it
    # element by element) and spares _culled a clipping pass (a 512² index of random
    # samples: clip, cast and gather 0.6 ms, np.take's 0.4 ms).
    z = np.take(np.append(evaluated, np.nan), index, mode="clip")
    normal = surface_normals(original, turn, view, z, target) if normals else None
    return Heightmap(z, normal, view.samples)


def _brute(
    program: Program, view: View, zs: np.ndarray, target: Target, progress: Progress | None
) -> np.ndarray:
    """First inside sample per pixel (``len(zs)``: none), every sample evaluated until
    found: on accelerators by the column search, on CPU slice by slice (XLA:CPU runs a
    loop's body about 2.4× slower than the same work called from the host:
    experiments/RESULTS.md)."""
    if target.platform == "cpu":
        first = _slices(program, view, zs, target, progress)
    else:
        first = _searched(program, view, zs, target, progress)
    return np.where(first < 0, len(zs), first)


def _slices(
    program: Program, view: View, zs: np.ndarray, target: Target, progress: Progress | None
) -> np.ndarray:
    """:func:`_brute` a depth at a time: each a 2-D brute-force render."""
    first = np.full((view.size, view.size), -1, np.int64)
    kernel = jitted_kernel(program, target.seals)
    for k, z in enumerate(zs):
        inside = render_tiles(kernel, replace(view, z=float(z)), target) > 0
        first[(first < 0) & inside] = k
        if progress is not None:
            progress(k + 1, len(zs))
    return first


def _searched(
    program: Program, view: View, zs: np.ndarray, target: Target, progress: Progress | None
) -> np.ndarray:
    """:func:`_brute` a tile at a time, each tile's columns searched on the device."""
    search = _column_search(program, target.seals)
    first = render_tiles(search, view, target, progress=progress, z=zs)
    return first.astype(np.int64)


@functools.lru_cache(maxsize=32)
def _column_search(program: Program, seal: bool = True) -> Callable[..., jax.Array]:
    """The jitted brute-force column search ``(xs[t], ys[t], zs[d]) → int32[t, t]``: per
    pixel, the first index of ``zs`` (top first) where the value is < 0, -1 where none is;
    a depth a step, in one device loop that stops once every pixel of the tile has found
    its sample. (XLA fuses the loop's body as it likes: a sample whose float32 value is
    within rounding of 0 may fall on the other side of it than in the 2-D kernel.)
    ``seal``: as :attr:`~prospero_jax.renderers.view.Target.seals` says for the target."""
    field = to_function(program, seal=seal)

    def search(xs: jax.Array, ys: jax.Array, zs: jax.Array) -> jax.Array:
        def unfinished(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
            k, first = carry
            return (k < zs.shape[0]) & jnp.any(first < 0)

        def step(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            k, first = carry
            inside = field(xs[None, :], ys[:, None], zs[k]) < 0  # NaN is not inside
            return k + 1, jnp.where((first < 0) & inside, k, first)

        start = jnp.full((ys.shape[0], xs.shape[0]), -1, jnp.int32)
        return jax.lax.while_loop(unfinished, step, (jnp.int32(0), start))[1]

    return jitted(search, seal)


def _culled(
    program: Program,
    view: View,
    zs: np.ndarray,
    target: Target,
    progress: Progress | None,
    points: Program | None = None,
) -> np.ndarray:
    """First inside sample per pixel (``len(zs)`` or more: none), by the octree (front to
    back); ``points``: the program the compiled leaf tier evaluates
    (:func:`~prospero_jax.renderers.octree.first_inside`)."""
    size, leaf = view.size, LEAF
    side = root_side(size, leaf)
    xs, ys = view.axes()
    xs = np.pad(xs, (0, side - size), mode="edge").astype(target.dtype)
    ys = np.pad(ys, (0, side - size), mode="edge").astype(target.dtype)
    samples = root_side(len(zs), THICK)  # a power of two, the last depth repeated
    padded = np.pad(zs.astype(target.dtype), (0, samples - len(zs)), mode="edge")
    first = np.full((side, side), FAR, np.int32)
    first[size:, :] = first[:, size:] = -1  # padding: never evaluated
    first_inside(
        program, xs, ys, padded, target, first, leaf=leaf, points=points, progress=progress
    )
    # Beyond the depths (FAR: none found; or a padding sample), where render_heightmap's
    # clipped lookup reads NaN.
    return first[:size, :size]


def surface_depth(
    program: Program,
    size: int | View = 128,
    depth: int | None = None,
    *,
    newton_steps: int = 4,
    **options: Unpack[Shorthand],
) -> Callable[[jax.Array], jax.Array]:
    """``z(constants)``: the heightmap's ``(size, size)`` surface z of ``program`` with its
    ``const`` values replaced by ``constants`` (NaN where the column is empty), a function
    ``jax.grad`` and ``jax.jit`` see through. The view is :func:`render_heightmap`'s (a
    turned view's z is along its own axis: the program is evaluated at ``rotation @ p``).

    Forward: the culled heightmap (on the host, through ``jax.pure_callback``), then
    ``newton_steps`` Newton steps along z at each surface pixel, so that z is the
    continuous surface's, not the sample grid's (bracketed: a step that would leave the
    interval between the first sample inside and the one above it bisects it instead,
    so z is the top surface's even where a column grazes a silhouette). Backward:
    the implicit function theorem, ``dz/dθ = −(∂f/∂θ) / (∂f/∂z)`` at ``(x, y, z)``, one
    reverse-mode pass over the field for all pixels (the op table's partials); empty
    pixels, and pixels where ``|∂f/∂z|`` is below ``1e-6`` (grazing the surface), pass no
    gradient. Constants are in tape order, as :attr:`Program.constants`; the function
    refuses (``ValueError``, when traced) an array of any other shape.
    """
    view, target = resolve(size, options, depth)
    check_heightmap(view)
    check_solid(program)
    newton_steps = check_count("newton_steps", newton_steps, 0)
    size, (bottom, top) = view.size, view.zrange
    step = (top - bottom) / (view.samples - 1)
    field, _ = to_parametric(program)
    count = len(program.constants)
    xs, ys = view.axes()
    grid_x, grid_y = (jnp.asarray(a) for a in np.meshgrid(xs, ys))
    turn = np.eye(3) if view.rotation is None else np.array(view.rotation)

    def at(constants: jax.Array, z: jax.Array) -> jax.Array:
        """The value at every pixel's ``(x, y, z)`` of the view."""
        x, y, z_ = (turn[i, 0] * grid_x + turn[i, 1] * grid_y + turn[i, 2] * z for i in range(3))
        return field(constants, x, y, z_)

    def sampled(constants: np.ndarray) -> np.ndarray:
        fitted = program.with_constants(np.asarray(constants, np.float64))
        heightmap = render_heightmap(fitted, view, target=target, normals=False)
        return heightmap.z.astype(np.asarray(constants).dtype)

    def along_z(constants: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The value and ∂f/∂z at every pixel's ``(x, y, z)``."""
        return jax.jvp(lambda z_: at(constants, z_), (z,), (jnp.ones_like(z),))

    def checked(constants: jax.Array) -> jax.Array:
        if jnp.shape(constants) != (count,) or not jnp.issubdtype(
            jnp.result_type(constants), jnp.floating
        ):
            got = f"{jnp.result_type(constants)} {tuple(jnp.shape(constants))}"
            raise ValueError(
                f"constants must be a float array of shape ({count},), one per const of "
                f"{program.source}, in tape order; got {got}"
            )
        return surface(constants)

    @jax.custom_vjp
    def surface(constants: jax.Array) -> jax.Array:
        shape = jax.ShapeDtypeStruct((size, size), constants.dtype)  # type: ignore[no-untyped-call]
        start = jax.pure_callback(sampled, shape, constants)
        found = jnp.isfinite(start)
        # The bracket: the first sample inside and the one above it, outside (none above
        # the top sample). Newton steps that would leave it bisect it instead, so z stays
        # on the top surface, not the back of a sphere near its silhouette.
        low = jnp.where(found, start, 0.0)
        high = jnp.where(found, jnp.minimum(start + step, top), 0.0)
        f_low = f_high = jnp.full_like(low, jnp.nan)  # the values there, once seen
        # From the outside end: Newton from there does not overshoot a convex surface.
        z = high if newton_steps else low
        for _ in range(newton_steps):
            value, slope = along_z(constants, z)
            inside = value < 0
            low, f_low = jnp.where(inside, z, low), jnp.where(inside, value, f_low)
            high, f_high = jnp.where(inside, high, z), jnp.where(inside, f_high, value)
            newton = z - jnp.where(jnp.abs(slope) > 1e-6, value / slope, 0.0)
            # Else the secant through the bracket's ends (once both are seen), else halve it.
            secant = low - f_low * (high - low) / (f_high - f_low)
            fallback = jnp.where((secant > low) & (secant < high), secant, (low + high) / 2)
            within = (newton > low) & (newton < high)
            z = jnp.where(value == 0, z, jnp.where(within, newton, fallback))
        return jnp.where(found, z, jnp.nan)

    def forward(constants: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        z = surface(constants)
        return z, (constants, z)

    def backward(saved: tuple[jax.Array, jax.Array], cotangent: jax.Array) -> tuple[jax.Array]:
        constants, z = saved
        found = jnp.isfinite(z)
        z_at = jnp.where(found, z, 0.0)
        _, slope = along_z(constants, z_at)
        usable = found & (jnp.abs(slope) > 1e-6)
        weight = jnp.where(usable, -jnp.nan_to_num(cotangent) / jnp.where(usable, slope, 1), 0)
        _, pullback = jax.vjp(lambda c: at(c, z_at), constants)
        return (pullback(weight)[0],)

    surface.defvjp(forward, backward)
    return checked


def shade_heightmap(heightmap: Heightmap, kind: str = "lit") -> UInt8[np.ndarray, "..."]:
    """An 8-bit image of ``heightmap``: ``lit`` (greyscale, a fixed light from the upper
    left: ambient 0.15 plus diffuse), ``normals`` (RGB, ``(n + 1) / 2``) or ``depth``
    (greyscale, z from -1 to 1 as 1 to 255); empty columns are black."""
    if kind not in HEIGHTMAP_SHADES:
        shades = ", ".join(HEIGHTMAP_SHADES)
        raise ValueError(f"shade must be one of {shades}, got {kind!r}")
    empty = ~np.isfinite(heightmap.z)
    if kind == "depth":
        level = np.clip((heightmap.z + 1) / 2 * 254 + 1, 1, 255)
        return np.where(empty, 0, np.round(level)).astype(np.uint8)
    if heightmap.normal is None:
        raise ValueError(f"a {kind!r} image needs the heightmap's normals")
    normal = np.nan_to_num(heightmap.normal.astype(np.float64))  # shaded as in float64
    if kind == "normals":
        colour = np.round((normal + 1) / 2 * 255)
        return np.where(empty[..., None], 0, colour).astype(np.uint8)
    diffuse = np.clip(normal @ LIGHT, 0, 1)
    level = np.round((0.15 + 0.85 * diffuse) * 255)
    return np.where(empty, 0, level).astype(np.uint8)
