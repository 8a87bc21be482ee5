"""prospero-jax: a JAX-traced compiler for implicit-surface programs in the `.vm` format.

The pipeline, one subpackage per layer (``ir``, ``evaluators``, ``runtime``, ``renderers``,
``io``, ``benchmarks``; see ARCHITECTURE.md)::

    .vm text --parse--> Program --passes--> Program --lower--> f(x, y, z) --render--> image

Public API (the subpackages are the implementation):

* :func:`parse`, :func:`load`: `.vm` text or file → :class:`Program` (errors:
  :class:`VMError`, which names the source and line);
* :func:`simplify` and friends: Program → Program passes; :func:`describe`: facts;
  :func:`specialise`: the sign program (same sign in real arithmetic, affine and quadric
  parts and polygons folded into atoms, signs pushed through ``min``/``max``/``neg``), which images
  draw unless ``exact=True``;
* :func:`to_function`: Program → ``f(x, y, z=0.0)``, a pure field that composes with
  ``jit``, ``vmap``, ``grad``, ``jvp``, ``jacfwd``/``jacrev``;
* :func:`to_parametric`: Program → ``(f, constants)``, ``f(constants, x, y, z=0.0)``, to
  differentiate with respect to the constants (write them back with
  :meth:`Program.with_constants`);
* :func:`to_interval_function`: Program → ``g(x, y, z)`` on :class:`Interval` pytrees, sound;
* :class:`View` (what to draw: size, region, z, rows; for solids depth, zrange and a
  rotation from :func:`rotation`; validated once) and :class:`Target` (where to run:
  dtype, device or devices), which every renderer takes, 2-D and 3-D (keywords are a
  shorthand for them);
* :func:`render`: Program → ``(N, N)`` uint8 image (255 where the value is < 0), by brute
  force or by interval culling with per-tile tape pruning, on one device or sharded over
  several (``devices="all"``), whole or a band of rows; :func:`prune`: what culling keeps
  of a program in a box;
* :func:`render_file`: Program → an image file, streamed when large (the CLI's render);
  :func:`render_frames`: a constant swept over values, a frame file each;
* :func:`render_to_file`: Program → a PGM or PNG file of any size, streamed band by band,
  resumable after an interruption (:class:`StreamReport`);
* :func:`initialize`, :func:`render_across_processes`: multi-process renders over
  ``jax.distributed``, each process rendering its band of rows;
* :func:`render_batch`: one program, many sets of constants (``vmap`` over them in brute
  force) → a stack of images; :func:`sweep_constants` builds the sets for a sweep;
* :func:`render_heightmap`: a solid (x, y, z) and its View → :class:`Heightmap` (the
  first surface from the top and its normals), culled on an octree; :func:`shade_heightmap`
  → an image; :func:`render_heightmap_file` → an image file (the CLI's render3d);
  :func:`surface_depth`: that depth as a function of the constants for ``jax.grad``;
  :func:`mesh`: a solid and its View (or a resolution and bounds) → a closed, manifold
  triangle :class:`Mesh` (dual contouring on the octree's grid, sharp edges kept, flat
  parts merged; or marching cubes; :class:`MeshWarning` when it is empty, or capped flat
  where the solid crosses the bounds), :func:`write_mesh` → STL, PLY or OBJ;
  :func:`mesh_file`: both at once (the CLI's mesh);
* :func:`sample_gradient`, :func:`shade`: value and gradient near the outline
  (:class:`FieldSamples`: normals, |∇f|, distance estimate) → anti-aliased or colour
  images;
* :func:`write_image`: image → PGM, PPM or PNG file, atomically (errors:
  :class:`FileWriteError`, which names the file; a streamed render's: :class:`StreamError`,
  which also names the partial file kept);
* :data:`STRATEGIES`: how the brute-force tile kernel is compiled (unrolled, chunked,
  interpreter, eager); :func:`bench`: compile time against run time, per strategy, size
  and device, beside the oracle (what ``prospero bench`` prints);
* :func:`enable_compilation_cache`: JAX's persistent compilation cache on disk;
  :func:`reuse_freed_memory`: glibc keeps large freed arrays for reuse (process-wide, as
  the CLI does; meshes up to ~30 % faster);
* :mod:`prospero_jax.reference`: the float64 NumPy oracle and its images;
* :mod:`prospero_jax.shapes`: a builder that emits `.vm` programs (and the demo model).
"""

from importlib.metadata import PackageNotFoundError, version

from prospero_jax.runtime import xla as _xla_flags

_xla_flags.install()  # before anything starts JAX's backend; PROSPERO_JAX_XLA_FLAGS=0 skips it

from prospero_jax.benchmarks.measure import DEFAULT_MODES as DEFAULT_BENCH_MODES
from prospero_jax.benchmarks.measure import MODES as BENCH_MODES
from prospero_jax.benchmarks.measure import bench
from prospero_jax.benchmarks.strategies import CHUNK as DEFAULT_CHUNK
from prospero_jax.benchmarks.strategies import STRATEGIES
from prospero_jax.evaluators.interval import Interval, to_interval_function
from prospero_jax.evaluators.lower import to_function, to_parametric
from prospero_jax.io.image import read_pgm, write_image
from prospero_jax.io.mesh_file import mesh_file, write_mesh
from prospero_jax.io.output import (
    FileReport,
    render_file,
    render_frames,
    render_heightmap_file,
    streams,
)
from prospero_jax.io.stream import (
    BAND_ROWS,
    StreamError,
    StreamReport,
    partial_paths,
    render_to_file,
)
from prospero_jax.ir import shapes
from prospero_jax.ir.ops import OPS, Op
from prospero_jax.ir.parse import VMError, load, parse
from prospero_jax.ir.passes import (
    deduplicate,
    describe,
    eliminate_dead_code,
    fold_constants,
    max_live,
    simplify,
)
from prospero_jax.ir.program import Program
from prospero_jax.ir.specialise import specialise
from prospero_jax.renderers import reference
from prospero_jax.renderers.batch import render_batch, sweep_constants
from prospero_jax.renderers.culled import prune
from prospero_jax.renderers.distributed import initialize, process_rows, render_across_processes
from prospero_jax.renderers.heightmap import (
    Heightmap,
    render_heightmap,
    shade_heightmap,
    surface_depth,
)
from prospero_jax.renderers.mesh import Mesh, MeshWarning, mesh
from prospero_jax.renderers.render import render
from prospero_jax.renderers.shade import FieldSamples, sample_gradient, shade
from prospero_jax.renderers.view import (
    MAX_SIZE,
    MEMORY_LIMIT,
    REGION_LIMIT,
    InvalidView,
    Progress,
    Shorthand,
    Target,
    View,
    rotation,
)
from prospero_jax.runtime.cache import default_cache_dir, enable_compilation_cache
from prospero_jax.runtime.files import FileWriteError
from prospero_jax.runtime.memory import reuse_freed_memory

try:
    __version__ = version("prospero-jax")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

#: The old name of :func:`rotation` (kept for code written against it).
view_rotation = rotation

__all__ = [
    "BAND_ROWS",
    "BENCH_MODES",
    "DEFAULT_BENCH_MODES",
    "DEFAULT_CHUNK",
    "MAX_SIZE",
    "MEMORY_LIMIT",
    "OPS",
    "REGION_LIMIT",
    "STRATEGIES",
    "FieldSamples",
    "FileReport",
    "FileWriteError",
    "Heightmap",
    "Interval",
    "InvalidView",
    "Mesh",
    "MeshWarning",
    "Op",
    "Program",
    "Progress",
    "Shorthand",
    "StreamError",
    "StreamReport",
    "Target",
    "VMError",
    "View",
    "__version__",
    "bench",
    "deduplicate",
    "default_cache_dir",
    "describe",
    "eliminate_dead_code",
    "enable_compilation_cache",
    "fold_constants",
    "initialize",
    "load",
    "max_live",
    "mesh",
    "mesh_file",
    "parse",
    "partial_paths",
    "process_rows",
    "prune",
    "read_pgm",
    "reference",
    "render",
    "render_across_processes",
    "render_batch",
    "render_file",
    "render_frames",
    "render_heightmap",
    "render_heightmap_file",
    "render_to_file",
    "reuse_freed_memory",
    "rotation",
    "sample_gradient",
    "shade",
    "shade_heightmap",
    "shapes",
    "simplify",
    "specialise",
    "streams",
    "surface_depth",
    "sweep_constants",
    "to_function",
    "to_interval_function",
    "to_parametric",
    "write_image",
    "write_mesh",
]
