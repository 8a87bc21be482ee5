"""What to draw and where to run it: the value types every renderer shares.

Input: an image size, a region, a z plane and a band of rows; for solids a depth (samples
along z over ``zrange``) and a rotation (:class:`View`); a working dtype and a device or
several (:class:`Target`); a render mode.
Output: validated, immutable values, the pixel grid of a view (:meth:`View.axes`), a
solid's depths (:meth:`View.zs`) and the program in the view's frame (:meth:`View.pose`).

Invariants: a :class:`View` is valid once built (a size from 1 to :data:`MAX_SIZE`, a
region of finite bounds with ``xmin < xmax`` and ``ymin < ymax``, a finite z, rows inside
the image, a depth of at least 2, a finite ``zrange`` with ``zmin < zmax``, a 3 × 3
rotation matrix), so renderers never check them again; the grid is the challenge's (``s =
linspace(-1, 1, N)``, ``x, y = meshgrid(s, -s)`` for the default region, bit for bit); a
:class:`Target` holds resolved JAX devices, and :meth:`Target.precision` is the one place
that turns on float64; :func:`culls` is the one rule for ``mode="auto"``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, TypeVar, cast

import jax
import numpy as np
from jaxtyping import Float64

from prospero_jax.ir.program import Program

Region = tuple[float, float, float, float]
#: A 3 × 3 rotation's rows, as :class:`View` holds it (hashable, immutable).
Rotation = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
#: ``progress(done, total)``: called as work finishes (tiles, levels, bands, frames).
Progress = Callable[[int, int], None]

#: The challenge's square: (xmin, xmax, ymin, ymax).
DEFAULT_REGION: Region = (-1.0, 1.0, -1.0, 1.0)
#: A solid's z span by default: (zmin, zmax).
DEFAULT_ZRANGE = (-1.0, 1.0)
#: Largest image side: a 2**18-px square is a 64 GiB PGM and hours of CPU time; beyond
#: it, files outgrow common size limits and renders take days.
MAX_SIZE = 1 << 18
#: Most samples of the field a solid's job may take (a heightmap's pixels × depth, a mesh's
#: grid points): 4096³.
MAX_SAMPLES = 4096**3
#: Largest coordinate magnitude a region may reach: float32 holds it, and its pixel steps.
REGION_LIMIT = 1e30
#: Most pixels :func:`prospero_jax.render` returns in memory (a 16384² image, 256 MB);
#: larger images are streamed to a file (:func:`prospero_jax.render_to_file`).
MEMORY_LIMIT = 16384**2
DTYPES = ("float32", "float64")
MODES = ("auto", "brute", "culled")
#: Who culls on a CPU (:class:`Target`).
TIERS = ("auto", "host", "kernels", "compiled")


def whole(value: Any, what: str) -> int:
    """``value`` as an int if it is a whole number (a Python or NumPy integer, not a bool or
    a float), else :class:`ValueError` naming ``what``."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be a whole number, got {value!r}") from None


def check_size(size: int) -> int:
    """``size`` if it is an image side from 1 to :data:`MAX_SIZE`, else :class:`ValueError`."""
    size = whole(size, "image size")
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(
            f"image size must be from 1 to {MAX_SIZE} px a side (a {MAX_SIZE}² image is a "
            f"{MAX_SIZE**2 / 2**30:.0f} GiB file), got {size}"
        )
    return size


def check_count(name: str, count: int, low: int) -> int:
    """``count`` (a solid's depth or resolution, named ``name``) as an int if it is a whole
    number of at least ``low``, else :class:`InvalidView` naming ``name``."""
    try:
        count = whole(count, name)
    except ValueError as err:
        raise InvalidView(name, str(err)) from None
    if count < low:
        raise InvalidView(name, f"{name} must be at least {low}, got {count}")
    return count


def check_samples(name: str, samples: int, what: str) -> None:
    """:class:`InvalidView` naming ``name`` if a solid's job, ``samples`` points of the field
    (``what``), is above :data:`MAX_SAMPLES`. Called before any allocation."""
    if samples > MAX_SAMPLES:
        raise InvalidView(
            name,
            f"{what} is {samples:.3g} samples of the field, above the limit of "
            f"{MAX_SAMPLES:.3g} (4096³: about half an hour of brute force on a CPU core; "
            "beyond it, hours)",
        )


def check_z(z: float) -> float:
    """``z`` if it is a finite number of magnitude at most :data:`REGION_LIMIT`."""
    if not abs(z) <= REGION_LIMIT:  # NaN fails this too
        raise ValueError(f"z must be finite, at most {REGION_LIMIT:g} in magnitude: got {z}")
    return float(z)


def check_region(region: Sequence[float]) -> Region:
    """``region`` as four floats ``(xmin, xmax, ymin, ymax)``, or :class:`ValueError`.

    Four finite numbers of magnitude at most :data:`REGION_LIMIT`, with ``xmin < xmax``
    and ``ymin < ymax``. Mirror images are not drawn by inverting a region: flip the
    image instead.
    """
    try:
        xmin, xmax, ymin, ymax = (float(v) for v in region)
    except (TypeError, ValueError):
        raise ValueError(
            f"region must be four numbers (xmin, xmax, ymin, ymax), got {region!r}"
        ) from None
    bounds = (xmin, xmax, ymin, ymax)
    shown = ", ".join(f"{v:g}" for v in bounds)
    if not all(abs(v) <= REGION_LIMIT for v in bounds):  # NaN and ±inf fail this too
        raise ValueError(
            f"region bounds must be finite, at most {REGION_LIMIT:g} in magnitude: got ({shown})"
        )
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"region must have xmin < xmax and ymin < ymax: got ({shown})")
    return bounds


def check_zrange(zrange: Sequence[float]) -> tuple[float, float]:
    """``zrange`` as ``(zmin, zmax)``: two finite numbers with ``zmin < zmax``."""
    try:
        lo, hi = (float(v) for v in zrange)
    except (TypeError, ValueError):
        raise ValueError(f"zrange must be two numbers (zmin, zmax), got {zrange!r}") from None
    if not (abs(lo) <= REGION_LIMIT and abs(hi) <= REGION_LIMIT):  # NaN and ±inf fail this
        raise ValueError(
            f"zrange must be finite, at most {REGION_LIMIT:g} in magnitude: got {lo:g}, {hi:g}"
        )
    if not lo < hi:
        raise ValueError(f"zrange must be (zmin, zmax) with zmin < zmax, got {lo:g}, {hi:g}")
    return lo, hi


def check_rotation(rotation: Any) -> Rotation:
    """``rotation`` (any 3 × 3 array-like) as :data:`Rotation` rows, if it is a rotation
    matrix (orthonormal to 1e-6), else :class:`ValueError`."""
    try:
        matrix = np.asarray(rotation, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if (
        matrix.shape != (3, 3)
        or not np.all(np.isfinite(matrix))
        or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-6)
    ):
        raise ValueError("rotation must be a 3 × 3 rotation matrix (prospero_jax.rotation)")
    return cast(Rotation, tuple(tuple(float(v) for v in row) for row in matrix))


def rotation(turn: float = 0.0, tilt: float = 0.0) -> Float64[np.ndarray, "3 3"]:
    """The 3 × 3 rotation a :class:`View` takes: ``turn`` degrees about the vertical (y)
    axis, then ``tilt`` degrees about the horizontal (x) axis. Points ``p`` of the view are
    drawn as the program's value at ``rotation @ p``."""
    for name, angle in (("turn", turn), ("tilt", tilt)):
        if not abs(angle) <= REGION_LIMIT:  # NaN fails this too
            raise InvalidView(name, f"{name} must be a finite angle in degrees, got {angle}")
    a, b = np.radians(turn), np.radians(tilt)
    about_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    turned: np.ndarray = about_y @ about_x
    return turned


def check_memory(pixels: int) -> int:
    """``pixels`` if an in-memory result of that many bytes is within :data:`MEMORY_LIMIT`."""
    if pixels > MEMORY_LIMIT:
        raise ValueError(
            f"{pixels:,} pixels is {pixels / 2**30:.1f} GiB in memory, above the "
            f"{MEMORY_LIMIT / 2**20:.0f} MiB limit: stream it to a file with "
            "prospero_jax.render_to_file, or render bands of rows"
        )
    return pixels


def axes(
    size: int, region: Sequence[float] = DEFAULT_REGION
) -> tuple[Float64[np.ndarray, " size"], Float64[np.ndarray, " size"]]:
    """Pixel-centre coordinates: ``xs`` left to right, ``ys`` top to bottom.

    For the default region this is the challenge's ``s = linspace(-1, 1, N)``,
    ``x, y = meshgrid(s, -s)``: ``xs == s`` and ``ys == -s``, bit for bit.
    """
    check_size(size)
    xmin, xmax, ymin, ymax = check_region(region)
    return np.linspace(xmin, xmax, size), np.linspace(ymax, ymin, size)


ArrayT = TypeVar("ArrayT", np.ndarray, jax.Array)


def to_pixels(value: ArrayT, xp: Any = np) -> ArrayT:
    """The image's one rule: 255 where ``value < 0``, else 0 (NaN gives 0); ``xp`` is
    ``numpy`` or ``jax.numpy`` (inside a kernel)."""
    return cast(ArrayT, xp.where(value < 0, xp.uint8(255), xp.uint8(0)))


class InvalidView(ValueError):
    """A :class:`View` field with a bad value: ``field`` names it (size, region, z, rows)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class View:
    """What to draw: the ``size × size`` image of ``region`` at depth ``z``, or the band
    ``rows = (start, stop)`` of it. Validated when built; immutable.

    A solid's view (heightmaps, meshes, the viewer) also says how deep: ``depth`` samples
    of z over ``zrange = (zmin, zmax)``, top first (:meth:`zs`; ``None``: as many as the
    image side). Any view may turn the model: ``rotation`` (3 × 3, e.g. from
    :func:`rotation`) draws the program's value at ``rotation @ (x, y, z)``
    (:meth:`pose`). A 2-D image of a turned solid is its slice at ``z``."""

    size: int = 1024
    region: Region = DEFAULT_REGION
    z: float = 0.0
    rows: tuple[int, int] | None = None
    depth: int | None = None
    zrange: tuple[float, float] = DEFAULT_ZRANGE
    rotation: Rotation | Float64[np.ndarray, "3 3"] | None = None  # held as Rotation

    def __post_init__(self) -> None:
        checks: tuple[tuple[str, Callable[[Any], Any]], ...] = (
            ("size", check_size),
            ("region", check_region),
            ("z", check_z),
            ("zrange", check_zrange),
        )
        for name, check in checks:
            try:
                object.__setattr__(self, name, check(getattr(self, name)))
            except ValueError as err:
                raise InvalidView(name, str(err)) from None
        if self.depth is not None:
            object.__setattr__(self, "depth", check_count("depth", self.depth, 2))
        if self.rotation is not None:
            try:
                object.__setattr__(self, "rotation", check_rotation(self.rotation))
            except ValueError as err:
                raise InvalidView("rotation", str(err)) from None
        if self.rows is not None:
            start, stop = (int(r) for r in self.rows)
            if not 0 <= start < stop <= self.size:
                bounds = f"0 <= start < stop <= {self.size}"
                raise InvalidView(
                    "rows", f"rows must be (start, stop) with {bounds}, got {self.rows}"
                )
            object.__setattr__(self, "rows", (start, stop))

    @property
    def height(self) -> int:
        """Rows drawn: the band's, or the whole image's."""
        return self.size if self.rows is None else self.rows[1] - self.rows[0]

    @property
    def pixel(self) -> float:
        """The distance between neighbouring pixel centres, in x."""
        return (self.region[1] - self.region[0]) / max(self.size - 1, 1)

    def axes(self) -> tuple[Float64[np.ndarray, " size"], Float64[np.ndarray, " height"]]:
        """The pixel centres drawn: every column's x, and the band's rows' y."""
        xs, ys = axes(self.size, self.region)
        return xs, ys if self.rows is None else ys[self.rows[0] : self.rows[1]]

    def band(self, start: int, stop: int) -> View:
        """Rows ``start`` to ``stop`` of the whole image."""
        return replace(self, rows=(start, stop))

    @property
    def samples(self) -> int:
        """A solid's depth samples: ``depth``, or the image side (at least 2)."""
        return self.depth if self.depth is not None else max(self.size, 2)

    def zs(self) -> Float64[np.ndarray, " samples"]:
        """A solid's sample depths, top first: ``linspace(zmax, zmin, samples)``."""
        return np.linspace(self.zrange[1], self.zrange[0], self.samples)

    def pose(self, program: Program) -> tuple[Program, View]:
        """``program`` in this view's frame (its value at ``rotation @ (x, y, z)``), and this
        view with the rotation consumed: a renderer poses once and passes the second on."""
        if self.rotation is None:
            return program, self
        from prospero_jax.ir.passes import transform_inputs

        return transform_inputs(program, np.array(self.rotation)), replace(self, rotation=None)


def resolve_device(device: str | jax.Device | None = None) -> jax.Device:
    """A JAX device from ``None`` (the default backend), a platform name or a Device.

    Platform names are those of ``jax.devices(name)``: ``cpu``, ``gpu``, ``cuda``, ``tpu``.
    The device is this process's own (in a multi-process job, ``jax.devices()`` also
    lists the other processes' devices, which this one cannot use).
    """
    if device is None or isinstance(device, jax.Device):
        return device or jax.local_devices()[0]
    try:
        return jax.local_devices(backend=device)[0]
    except RuntimeError:
        have = sorted({d.platform for d in jax.local_devices()})
        raise ValueError(f"no {device!r} device available (have: {', '.join(have)})") from None


def resolve_devices(
    devices: int | str | Sequence[jax.Device] | None, device: jax.Device
) -> tuple[jax.Device, ...]:
    """The devices to shard over: ``None`` (just ``device``), ``"all"`` (this process's
    devices of ``device``'s platform), a count ``N`` (the first N of them) or an explicit
    sequence."""
    if devices is None:
        return (device,)
    if isinstance(devices, int):
        have = jax.local_devices(backend=device.platform)
        if not 1 <= devices <= len(have):
            raise ValueError(f"devices {devices}: {len(have)} {device.platform} device(s) here")
        return tuple(have[:devices])
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(
                f"devices must be 'all', a count or a list of devices, got {devices!r}"
            )
        return tuple(jax.local_devices(backend=device.platform))
    if not devices:
        raise ValueError("devices must not be empty")
    return tuple(devices)


@dataclass(frozen=True)
class Target:
    """Where and how to run: the working ``dtype`` and the ``device``, or several
    ``devices`` to shard over (two or more; empty for one device), and whether images
    are drawn ``exact``: the program op by op, as written, everywhere, where by default
    culling draws its sign program (:func:`~prospero_jax.ir.specialise.specialise`: the
    same sign in real arithmetic, cheaper to cull). ``tier`` says who culls on a CPU:
    ``"auto"`` (the host tier, NumPy with nothing to compile or load, until it has cost the
    process what readying the kernels would; then the XLA kernels: see
    :func:`prospero_jax.renderers.hierarchy.tier`), ``"host"`` (the host tier wherever it
    can draw the program), ``"kernels"``, or ``"compiled"``: the kernels, and a solid's
    compiled closures (:mod:`~prospero_jax.renderers.octree`) bought at its first frame
    instead of rented, for a process that will draw many frames of one program (the
    viewer). Images are the same bit for bit on every tier; a solid's heightmap too, but
    by default where its compiled leaves (which evaluate the program as written, not its
    sign program) decide a sample within rounding of 0. Build it with
    :meth:`resolve`, which takes names (``"cpu"``, ``"all"``) as well as devices."""

    dtype: str = "float32"
    device: jax.Device = field(default_factory=lambda: resolve_device(None))
    devices: tuple[jax.Device, ...] = ()
    exact: bool = False
    tier: str = "auto"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {self.tier!r}")

    @classmethod
    def resolve(
        cls,
        dtype: str = "float32",
        device: str | jax.Device | None = None,
        devices: int | str | Sequence[jax.Device] | None = None,
        exact: bool = False,
        tier: str = "auto",
    ) -> Target:
        """A Target from a dtype name, a platform name or Device, and ``devices`` (``None``,
        ``"all"``, a count or a sequence); with several devices, ``device`` is the first."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        spread = resolve_devices(devices, resolve_device(device))
        return cls(dtype, spread[0], spread if len(spread) > 1 else (), bool(exact), tier)

    @property
    def platform(self) -> str:
        return str(self.device.platform)

    @property
    def seals(self) -> bool:
        """Whether brute force seals each value of the unrolled closure
        (:func:`~prospero_jax.evaluators.lower.sealed`): on CPU, where the sealed tape is
        one fused loop anyway, and wherever ``exact`` asks for the program op by op. Off
        CPU by default it does not: XLA:GPU then fuses the tape into tens of kernels
        instead of one per instruction (prospero 1024² on an H200: 2.4 ms against 21 ms a
        frame); the unsealed kernels compile with XLA's algebraic simplifier off
        (:data:`~prospero_jax.renderers.brute.NO_REWRITES`), so the image keeps the default
        contract, hostile constants included (``experiments/RESULTS.md``, "Why a kernel per
        row: the seal")."""
        return self.exact or self.platform == "cpu"

    def precision(self) -> AbstractContextManager[None]:
        """The one place float64 is turned on: ``jax.enable_x64`` for a float64 target."""
        return cast(AbstractContextManager[None], jax.enable_x64(self.dtype == "float64"))


def culls(mode: str, target: Target) -> bool:
    """The one rule for ``mode``: ``culled`` culls, ``brute`` does not, and ``auto`` culls on
    CPU (over 100× faster there for prospero; ``experiments/RESULTS.md``) and not on
    accelerators, where the fused closure runs a million pixels at once."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode == "culled" or (mode == "auto" and target.platform == "cpu")


class Shorthand(TypedDict, total=False):
    """Keywords every render entry point takes beside an image side: ``region``, ``z``,
    ``rows``, ``zrange`` and ``rotation`` stand for a :class:`View`'s fields (a solid's
    ``depth`` is an argument of its own);
    ``target``, or ``dtype``, ``device``, ``devices`` (``"all"``, a count or a list: shard
    over them), ``exact`` and ``tier``, for a :class:`Target`."""

    region: Sequence[float] | None
    z: float | None
    rows: tuple[int, int] | None
    zrange: Sequence[float] | None
    rotation: Any
    target: Target | None
    dtype: str | None
    device: str | jax.Device | None
    devices: int | str | Sequence[jax.Device] | None
    exact: bool | None
    tier: str | None


def resolve(size: int | View, options: Shorthand, depth: int | None = None) -> tuple[View, Target]:
    """The :class:`View` and :class:`Target` a render call's arguments stand for.

    ``size`` is a View, or an image side completed by ``options`` (and a solid's
    ``depth``); a View (or a Target) must not also be given the fields it holds. Unknown
    keywords are a ``TypeError``.
    """
    unknown = set(options) - set(Shorthand.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    region, zrange = options.get("region"), options.get("zrange")
    z, rows, turn = options.get("z"), options.get("rows"), options.get("rotation")
    if isinstance(size, View):
        named = {"region": region, "z": z, "rows": rows, "depth": depth, "zrange": zrange}
        given = [k for k, v in {**named, "rotation": turn}.items() if v is not None]
        if given:
            raise ValueError(f"give the {', '.join(given)} in the View, not beside it")
        view = size
    else:
        bounds = tuple(region) if region is not None else DEFAULT_REGION
        span = tuple(zrange) if zrange is not None else DEFAULT_ZRANGE
        view = View(size, bounds, z or 0.0, rows, depth, span, turn)  # type: ignore[arg-type]  # checked there
    target, dtype = options.get("target"), options.get("dtype")
    device, devices, exact = options.get("device"), options.get("devices"), options.get("exact")
    tier = options.get("tier")
    if target is None:
        return view, Target.resolve(
            dtype or "float32", device, devices, bool(exact), tier or "auto"
        )
    if any(v is not None for v in (dtype, device, devices, exact, tier)):
        raise ValueError("give the dtype, devices, exactness and tier in the Target, not beside it")
    return view, target
