"""Mesh files: a :class:`~prospero_jax.renderers.mesh.Mesh` → binary STL, binary PLY or OBJ.

Input: a Mesh (``vertices`` ``(V, 3)``, ``faces`` ``(F, 3)``, counter-clockwise seen from
outside), or a solid to mesh (:func:`mesh_file`, the CLI's ``mesh``), and a path whose
suffix picks the format.
Output: the file, written atomically (complete or not at all, as image files are:
:func:`prospero_jax.runtime.files.atomic_write`); vertices as float32.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Unpack

import numpy as np

from prospero_jax.ir.program import Program
from prospero_jax.renderers.mesh import TOLERANCE, Mesh, mesh
from prospero_jax.renderers.view import Progress, Shorthand, View
from prospero_jax.runtime.files import atomic_write, check_directory, file_format

#: The suffixes :func:`write_mesh` knows.
FORMATS = (".stl", ".ply", ".obj")


def mesh_format(path: str | os.PathLike[str]) -> str:
    """``path``'s mesh format (its suffix), or ``ValueError`` naming the ones there are."""
    return file_format(path, FORMATS, "mesh")


def write_mesh(path: str | os.PathLike[str], m: Mesh) -> Path:
    """Write ``m`` to ``path`` as binary STL, binary little-endian PLY or OBJ (by suffix),
    atomically."""
    suffix = mesh_format(path)
    writer = {".stl": _write_stl, ".ply": _write_ply, ".obj": _write_obj}[suffix]
    return atomic_write(path, lambda f: writer(f, m))


def mesh_file(
    program: Program,
    path: str | os.PathLike[str],
    resolution: int | View = 128,
    *,
    bounds: tuple[float, float] | None = None,
    method: str = "dual",
    tolerance: float = TOLERANCE,
    progress: Progress | None = None,
    **options: Unpack[Shorthand],
) -> Mesh:
    """Mesh the solid ``program`` (:func:`~prospero_jax.mesh`, whose arguments these are)
    and write the mesh to ``path`` (:func:`write_mesh`: the suffix picks the format);
    the path is checked before any work. Returns the mesh."""
    out = Path(path)
    mesh_format(out)
    check_directory(out)
    surface = mesh(
        program, resolution, bounds=bounds, method=method, tolerance=tolerance,
        progress=progress, **options,
    )  # fmt: skip
    write_mesh(out, surface)
    return surface


def _write_stl(f: BinaryIO, m: Mesh) -> None:
    a, b, c = (m.vertices[m.faces[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    record = np.zeros(len(m.faces), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    record["n"], record["v"] = normal, np.stack([a, b, c], axis=1)
    f.write(b"prospero-jax binary STL".ljust(80, b" "))
    f.write(struct.pack("<I", len(m.faces)))
    f.write(record.tobytes())


def _write_ply(f: BinaryIO, m: Mesh) -> None:
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment prospero-jax\n"
        f"element vertex {len(m.vertices)}\nproperty float x\nproperty float y\n"
        f"property float z\nelement face {len(m.faces)}\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    f.write(header.encode())
    f.write(m.vertices.astype("<f4").tobytes())
    face = np.zeros(len(m.faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
    face["n"], face["i"] = 3, m.faces
    f.write(face.tobytes())


def _write_obj(f: BinaryIO, m: Mesh) -> None:
    f.write(b"# prospero-jax\n")
    np.savetxt(f, m.vertices, fmt="v %.9g %.9g %.9g")
    np.savetxt(f, m.faces + 1, fmt="f %d %d %d")
