"""Rendering one image: Program → uint8 image, by brute force or by culling.

Input: a Program, what to draw (a :class:`~prospero_jax.renderers.view.View`, or an
image side with a region, z and rows beside it), where to run (a
:class:`~prospero_jax.renderers.view.Target`, or a dtype and devices) and a mode.
Output: the view's ``(height, size)`` uint8 image, 255 where the value is < 0.

Two contracts (:func:`drawn`). By default an image equals the float64 oracle of the
program wherever ``|value| ≥ 1e-5``: culling draws the program's sign program (the same
sign in real arithmetic, fewer rows, which prune further), brute force the program as
written (per pixel its ops are cheaper than the sign program's atoms: 7.6k against ~34k
flops on prospero, and they compile in seconds, not minutes). With ``exact``
(``Target.exact``) both draw the program itself, op by op in the working dtype, and agree
bit for bit; so do both modes on a program that is already a sign program
(``render(specialise(p))``: specialising is idempotent). ``brute`` evaluates the unrolled closure at
every pixel (:mod:`prospero_jax.renderers.brute`); ``culled`` evaluates intervals over a
tile hierarchy and prunes the tape per tile (:mod:`prospero_jax.renderers.culled`);
``auto`` is :func:`~prospero_jax.renderers.view.culls`'s rule. Images above
:data:`~prospero_jax.renderers.view.MEMORY_LIMIT` pixels are refused with a pointer to
:func:`prospero_jax.render_to_file`, which streams them to disk.
"""

from __future__ import annotations

import functools
from typing import Any, Unpack

import numpy as np
from jaxtyping import UInt8

from prospero_jax.ir.program import Program
from prospero_jax.ir.specialise import specialise
from prospero_jax.renderers.brute import jitted_kernel, render_tiles
from prospero_jax.renderers.culled import render_culled
from prospero_jax.renderers.view import (
    Progress,
    Shorthand,
    Target,
    View,
    check_memory,
    culls,
    resolve,
)
from prospero_jax.runtime import derived as _derived


def render(
    program: Program,
    size: int | View = 1024,
    *,
    mode: str = "auto",
    tile: int | None = None,
    progress: Progress | None = None,
    stats: list[dict[str, Any]] | None = None,
    **options: Unpack[Shorthand],
) -> UInt8[np.ndarray, "height size"]:
    """Render ``program`` as the challenge's ``size × size`` image (module docstring).

    ``size`` is an image side or a :class:`View`; :class:`Shorthand`'s keywords complete
    it (``region=(xmin, xmax, ymin, ymax)``, default the ±1 square; ``z``; ``rows=(start,
    stop)``, a band: the same pixels as the whole image has there; ``rotation``: the slice
    at ``z`` of the turned model) and say where to run
    (``target``, or ``dtype``, ``device``, ``devices="all"``: sharded, same image).
    ``mode`` is ``auto``, ``brute`` or ``culled``; ``exact=True`` draws the program op by
    op instead of its sign program (module docstring); ``tile`` overrides the brute-force
    tile side; ``progress(done, total)`` is called as work finishes (tiles in brute force,
    levels or blocks when culling); a ``stats`` list gets, when culling, a dict per level of
    the hierarchy (``tile``: its side in pixels, ``tapes``, ``rows``: what it evaluated).
    """
    view, where = resolve(size, options)
    check_memory(view.height * view.size)
    culled = culls(mode, where)
    # A turned view turns what is drawn: the source's sign program, its atoms' forms
    # turned with it (prospero turned: 2,550 rows, culled on the host tier at first,
    # against 7,765 rows for the turned program's own, derived anew in ~0.2 s).
    program, view = view.pose(drawn(program, where, culled))
    with where.precision():
        if culled:
            return render_culled(program, view, where, progress=progress, stats=stats)
        kernel = jitted_kernel(program, where.seals)
        return render_tiles(kernel, view, where, tile=tile, progress=progress)


def drawn(program: Program, target: Target, culled: bool = True) -> Program:
    """The program an image of ``program`` evaluates: its sign program when it is culled,
    the program itself in brute force or with ``target.exact`` (module docstring). A
    turned view draws this program turned (:meth:`View.pose
    <prospero_jax.renderers.view.View.pose>`, which turns a sign program's atoms)."""
    return sign_program(program) if culled and not target.exact else program


@functools.lru_cache(maxsize=16)
def sign_program(program: Program) -> Program:
    """:func:`~prospero_jax.ir.specialise.specialise` of ``program``, kept on disk between
    processes once a cache directory is set (:mod:`prospero_jax.runtime.derived`): a warm
    render of prospero reads it in milliseconds instead of deriving it in ~0.25 s."""
    return _derived.kept(
        f"sign-{program.digest}", lambda: specialise(program).to_bytes(), Program.from_bytes
    )
