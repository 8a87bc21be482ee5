"""Measuring compile time against run time, per strategy, image size and device.

Input: a Program, image sizes, modes (:data:`MODES`: the compilation strategies of
:mod:`prospero_jax.benchmarks.strategies`, run through the brute-force tile loop, and the
interval renderer on its two tiers: ``culled``, the XLA kernels, and ``host``, NumPy with
nothing to compile), devices, a dtype and repeat limits.
Output: a JSON-ready ``dict``: the machine, JAX and jaxlib versions, the program, and one
row per (mode, size, device), next to the float64 NumPy oracle's time at each size.

How each number is taken (every time is wall-clock ``time.perf_counter``; every run
returns the finished image as a NumPy array, so it has waited for the device):

* **trace, lower, compile**: for the jitted strategies (``unrolled``, ``interpreter``),
  ahead of time: ``jax.jit(tile).trace(...)``, ``.lower()``, ``.compile()``, each timed
  (``"staging": "aot"``). The others compile inside their first call (``chunked``: one
  jit per piece; ``eager``: one per distinct op and shape; ``culled``: its interpreter
  kernels, asked for by ``tier="kernels"``; ``host``: nothing, the host tier; both draw
  the sign program, as ``pj.render`` does), so their stage times are the sums
  of JAX's own monitoring durations recorded during that call (``"staging": "events"``;
  ``jax.monitoring``'s ``/jax/core/compile/*_duration`` events, which the AOT stages
  also emit);
* **first run**: the first render's wall time, minus any staging inside it;
* **steady**: then ``repeats`` renders (at least 2; fewer than ``repeats`` once
  ``budget_s`` seconds are spent): min, median, max;
* **memory**: XLA's ``memory_analysis()`` of the compiled tile kernel (AOT only) and the
  process's peak resident set during the row (Linux: ``VmHWM``, reset per row through
  ``/proc/self/clear_refs``; elsewhere the process's lifetime peak);
* **HLO**: the optimized module's instruction count, fusion count and largest fusion
  (instructions in one fused computation), and XLA's flop estimate (AOT only);
* **cold vs warm persistent cache**: each row stages with a private, initially empty
  persistent compilation cache (and JAX's in-memory caches cleared), so its first
  compile is cold; then the in-memory caches are cleared again and staging is repeated,
  reading the row's cache from disk;
* **export**: ``jax.export`` of the jitted tile kernel, serialized (StableHLO: portable,
  compiled again when loaded): its size, the time to deserialize and compile it, whether
  its image is the same; and the compiled executable itself, serialized by
  ``jax.experimental.serialize_executable`` (tied to this jaxlib and device): its size and
  load time (AOT only);
* **oracle**: :func:`prospero_jax.reference.render` (float64 NumPy with liveness GC)
  at each size up to ``oracle_max``; every row reports ``oracle_s / steady median`` and
  how many pixels differ from the oracle's image.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from jax.experimental.serialize_executable import deserialize_and_load, serialize

from prospero_jax.benchmarks.strategies import CHUNK, STRATEGIES, Kernel, tile_kernel
from prospero_jax.ir.program import Program
from prospero_jax.renderers import reference
from prospero_jax.renderers.brute import render_tiles, tile_size
from prospero_jax.renderers.culled import render_culled
from prospero_jax.renderers.hierarchy import host_depths
from prospero_jax.renderers.render import drawn
from prospero_jax.renderers.view import Target, View, check_size, resolve_device
from prospero_jax.runtime import executables as _executables

MODES = (*STRATEGIES, "culled", "host")
DEFAULT_MODES = ("unrolled", "chunked", "interpreter", "culled")
#: The culling modes: the tier each asks for (both draw the sign program, as ``pj.render``).
_TIERS = {"culled": "kernels", "host": "host"}
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"
_HITS = "/jax/compilation_cache/cache_hits"
_MISSES = "/jax/compilation_cache/cache_misses"

Log = Callable[[str], None]
Render = Callable[[], np.ndarray]


def bench(
    program: Program,
    sizes: list[int],
    *,
    modes: tuple[str, ...] | list[str] = DEFAULT_MODES,
    devices: list[str | None] | None = None,
    dtype: str = "float32",
    repeats: int = 5,
    budget_s: float = 10.0,
    oracle_max: int = 2048,
    chunk: int = CHUNK,
    warm: bool = True,
    export: bool = True,
    command: str = "",
    log: Log | None = None,
) -> dict[str, Any]:
    """Measure every (mode, size, device) and the oracle at each size (module docstring).

    ``devices`` are platform names (``None``: JAX's default device); ``log(message)`` is
    told what is being measured next. Returns the report: ``command``, ``machine``,
    ``jax``, ``jaxlib``, ``program``, ``settings``, ``oracle`` (one entry per size: its
    steady times, or why it was skipped) and ``results`` (one row per mode, size and
    device: ``staging``, ``trace_s``, ``lower_s``, ``compile_s``, ``compilations``,
    ``first_run_s``, ``steady``, ``memory``, ``rss_start_mb``, ``peak_rss_mb``, ``hlo``,
    ``warm_cache``, ``export``, ``oracle_ratio``, ``pixels_differing``, ``break_even``:
    see :func:`_break_even`).
    """
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise ValueError(f"modes must be among {', '.join(MODES)}, got {', '.join(unknown)}")
    if not sizes:
        raise ValueError("sizes must name at least one image side")
    for size in sizes:
        check_size(size)
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2, got {repeats}")
    if "host" in modes and host_depths(drawn(program, Target(dtype)), dtype) is None:
        raise ValueError(
            f"host: {program.source} has no host tier (its sign program holds ops other "
            "than min, max and atoms, or is deeper than 64)"
        )
    say = log or (lambda _: None)
    targets = [resolve_device(d) for d in (devices or [None])]
    oracle: dict[int, dict[str, Any]] = {}
    for size in sizes:
        if size > oracle_max:
            oracle[size] = {"size": size, "skipped": f"above --oracle-max {oracle_max}"}
            continue
        say(f"oracle at {size}²")
        oracle[size] = _time_oracle(program, size, repeats, budget_s)
    rows = []
    for device in targets:
        for mode in modes:
            for size in sizes:
                say(f"{mode} at {size}² on {device.platform}")
                with _private_cache(), Target(dtype, device).precision():
                    row = _measure(
                        program, mode, size, device, dtype, repeats, budget_s, chunk,
                        warm=warm, export=export,
                    )  # fmt: skip
                truth = oracle[size].get("image")
                image = row.pop("image")
                if truth is not None:
                    row["pixels_differing"] = int(np.count_nonzero(image != truth))
                    row["oracle_ratio"] = oracle[size]["median_s"] / row["steady"]["median_s"]
                else:
                    row["pixels_differing"] = row["oracle_ratio"] = None
                rows.append(row)
    for entry in oracle.values():
        entry.pop("image", None)
    _break_even(rows)
    return {
        "command": command,
        "machine": _machine(),
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "program": {
            "source": program.source,
            "instructions": len(program),
            "digest": program.digest,
        },
        "settings": {
            "sizes": sizes,
            "modes": list(modes),
            "dtype": dtype,
            "repeats": repeats,
            "budget_s": budget_s,
            "chunk": chunk,
            "oracle_max": oracle_max,
        },
        "oracle": [oracle[s] for s in sizes],
        "results": rows,
    }


def first_frame_s(row: dict[str, Any]) -> float:
    """A row's time to its first image: tracing, lowering, compiling and the first run."""
    return float(row["trace_s"] + row["lower_s"] + row["compile_s"] + row["first_run_s"])


def _break_even(rows: list[dict[str, Any]]) -> None:
    """Add ``break_even`` to each row: against the mode whose first image comes soonest at
    the same size and device (``against``), the number of images after which this mode's
    total time (first image, then steady renders) is the smaller (``frames``; ``None``:
    never, its steady render is no faster; ``0`` for that mode itself). This is the
    compile-versus-run trade of each tier: when a program's compiled form repays its
    compile."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["size"], row["device"]), []).append(row)
    for group in groups.values():
        base = min(group, key=first_frame_s)
        for row in group:
            extra = first_frame_s(row) - first_frame_s(base)
            saved = base["steady"]["median_s"] - row["steady"]["median_s"]
            frames = 0 if row is base else (1 + math.ceil(extra / saved) if saved > 0 else None)
            row["break_even"] = {"against": base["mode"], "frames": frames}


def _measure(
    program: Program,
    mode: str,
    size: int,
    device: jax.Device,
    dtype: str,
    repeats: int,
    budget_s: float,
    chunk: int,
    *,
    warm: bool,
    export: bool,
) -> dict[str, Any]:
    """One row: cold staging, first run, steady runs, memory, then warm staging, export."""
    _clear_caches()
    peak_reset = _reset_peak_rss()
    rss_start = _rss_mb("VmRSS")
    side = tile_size(size, device)
    kernel = tile_kernel(program, mode, chunk=chunk) if mode not in _TIERS else None
    row: dict[str, Any] = {"mode": mode, "size": size, "device": str(device), "dtype": dtype}
    compiled: Any = None
    if kernel is not None and kernel.jit:
        row["staging"] = "aot"
        compiled, stages, facts = _stage(kernel, side, dtype, device)
        row |= stages | facts
        run = _tiles(compiled, size, dtype, device, side)
        first, events = _timed_with_events(run)
        row["first_run_s"] = first
    else:
        row["staging"] = "events"
        run = (
            _tiles(kernel.function, size, dtype, device, side)
            if kernel is not None
            else _culled(program, size, Target(dtype, device, tier=_TIERS[mode]))
        )
        first, events = _timed_with_events(run)
        staged = events.seconds(_TRACE) + events.seconds(_LOWER) + events.seconds(_COMPILE)
        row |= events.stages() | {"memory": None, "hlo": None}
        row["first_run_s"] = max(0.0, first - staged)
    row["compilations"] = events.counts[_COMPILE] + (compiled is not None)
    image = run()
    row["steady"] = _repeat(run, repeats, budget_s)
    row["rss_start_mb"] = rss_start
    row["peak_rss_mb"] = _peak_since(rss_start)
    row["peak_rss_scope"] = "row" if peak_reset else "process"
    if warm:
        _clear_caches()
        if compiled is not None and kernel is not None:
            _, stages, _ = _stage(kernel, side, dtype, device, events_too=True)
            row["warm_cache"] = stages
        else:
            _, events = _timed_with_events(run)
            row["warm_cache"] = events.stages()
    if export and kernel is not None and kernel.jit:
        row["export"] = _export(kernel, side, size, dtype, device, image)
    row["image"] = image
    return row


def _culled(program: Program, size: int, target: Target) -> Render:
    sign = drawn(program, target)
    return lambda: render_culled(sign, View(size), target)


def _tiles(
    kernel: Callable[..., Any], size: int, dtype: str, device: jax.Device, side: int
) -> Render:
    return lambda: render_tiles(kernel, View(size), Target(dtype, device), tile=side)


def _tile_args(side: int, dtype: str, device: jax.Device) -> tuple[jax.Array, ...]:
    xs = jax.device_put(np.zeros(side, dtype), device)
    return xs, xs, jax.device_put(np.zeros((), dtype), device)


def _stage(
    kernel: Kernel, side: int, dtype: str, device: jax.Device, *, events_too: bool = False
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Trace, lower and compile the tile kernel ahead of time: (compiled, times, facts)."""
    args = _tile_args(side, dtype, device)
    with _events() as events:
        start = time.perf_counter()
        traced = jax.jit(kernel.function).trace(*args)
        traced_at = time.perf_counter()
        lowered = traced.lower()
        lowered_at = time.perf_counter()
        compiled = lowered.compile()
        done = time.perf_counter()
    stages = {
        "trace_s": traced_at - start,
        "lower_s": lowered_at - traced_at,
        "compile_s": done - lowered_at,
    }
    if events_too:
        stages |= {"cache_hits": events.counts[_HITS], "cache_misses": events.counts[_MISSES]}
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    facts = {
        "memory": None
        if memory is None
        else {
            "temp_bytes": int(memory.temp_size_in_bytes),
            "argument_bytes": int(memory.argument_size_in_bytes),
            "output_bytes": int(memory.output_size_in_bytes),
            "code_bytes": int(memory.generated_code_size_in_bytes),
        },
        "hlo": hlo_facts(compiled.as_text())
        | {"flops": float(cost.get("flops", 0.0)) if isinstance(cost, dict) else None},
    }
    return compiled, stages, facts


def _export(
    kernel: Kernel, side: int, size: int, dtype: str, device: jax.Device, image: np.ndarray
) -> dict[str, Any]:
    """Serialize the jitted tile kernel with ``jax.export``, reload it, render again."""
    args = _tile_args(side, dtype, device)
    target = "cuda" if device.platform == "gpu" else device.platform
    start = time.perf_counter()
    blob = jax.export.export(jax.jit(kernel.function), platforms=[target])(*args).serialize()
    exported_at = time.perf_counter()
    reloaded = jax.export.deserialize(blob)
    loaded_at = time.perf_counter()
    with _events() as events:
        compiled = jax.jit(reloaded.call).trace(*args).lower().compile()
    compiled_at = time.perf_counter()
    again = render_tiles(compiled, View(size), Target(dtype, device), tile=side)
    # The compiled executable itself, serialized: reloading it skips XLA entirely.
    executable, in_tree, out_tree = serialize(compiled)
    load_start = time.perf_counter()
    loaded = deserialize_and_load(executable, in_tree, out_tree, execution_devices=[device])
    executable_loaded_at = time.perf_counter()
    third = render_tiles(loaded, View(size), Target(dtype, device), tile=side)
    return {
        "export_s": exported_at - start,
        "bytes": len(blob),
        "deserialize_s": loaded_at - exported_at,
        "compile_s": compiled_at - loaded_at,
        "cache_hits": events.counts[_HITS],
        "same_image": bool(np.array_equal(again, image)),
        "executable_bytes": len(executable),
        "executable_load_s": executable_loaded_at - load_start,
        "executable_same_image": bool(np.array_equal(third, image)),
    }


def hlo_facts(text: str) -> dict[str, int]:
    """Instruction count, fusion count and largest fused computation of an HLO module's text."""
    instructions = fusions = largest = current = 0
    fused = False
    for line in text.splitlines():
        if line.endswith("{") and not line.startswith(" "):  # a computation starts
            fused, current = "fused_computation" in line or "fusion" in line.split("(")[0], 0
        elif _INSTRUCTION.match(line):
            instructions += 1
            fusions += ", kind=k" in line
            if fused:
                current += 1
                largest = max(largest, current)
    return {"instructions": instructions, "fusions": fusions, "largest_fusion": largest}


_INSTRUCTION = re.compile(r"^\s+(?:ROOT\s+)?%?[\w.\-]+ = ")


def _repeat(run: Render, repeats: int, budget_s: float) -> dict[str, Any]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - start < budget_s):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return {
        "min_s": min(times),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "repeats": len(times),
        "times_s": times,
    }


def _time_oracle(program: Program, size: int, repeats: int, budget_s: float) -> dict[str, Any]:
    image = reference.render(program, size)  # the warm-up, and the image rows compare with
    steady = _repeat(lambda: reference.render(program, size), repeats, budget_s)
    return {"size": size, **steady, "image": image}


class _Events:
    """Durations and counts of JAX monitoring events, by event name."""

    def __init__(self) -> None:
        self.durations: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.counts: collections.Counter[str] = collections.Counter()

    def seconds(self, event: str) -> float:
        return float(self.durations[event])

    def stages(self) -> dict[str, Any]:
        return {
            "trace_s": self.seconds(_TRACE),
            "lower_s": self.seconds(_LOWER),
            "compile_s": self.seconds(_COMPILE),
            "cache_hits": self.counts[_HITS],
            "cache_misses": self.counts[_MISSES],
        }


@contextlib.contextmanager
def _events() -> Iterator[_Events]:
    events = _Events()

    def on_duration(event: str, duration_secs: float, **_: str | int) -> None:
        events.durations[event] += duration_secs
        events.counts[event] += 1

    def on_event(event: str, **_: str | int) -> None:
        events.counts[event] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)


def _timed_with_events(run: Render) -> tuple[float, _Events]:
    with _events() as events:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start, events


@contextlib.contextmanager
def _private_cache() -> Iterator[Path]:
    """JAX's persistent compilation cache in a fresh directory, caching every compile;
    the previous settings are restored afterwards. The culled renderer's stored
    executables (:mod:`prospero_jax.runtime.executables`) are off meanwhile: the bench measures
    JAX's own trace, lower, compile and cache."""
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    update = cast(Callable[[str, object], None], jax.config.update)
    saved = {name: getattr(jax.config, name) for name in names}
    with (
        tempfile.TemporaryDirectory(prefix="prospero-bench-cache-") as directory,
        _executables.disabled(),
    ):
        for name, value in zip(names, (directory, 0.0, 0), strict=True):
            update(name, value)
        compilation_cache.reset_cache()
        try:
            yield Path(directory)
        finally:
            for name, value in saved.items():
                update(name, value)
            compilation_cache.reset_cache()


def _reset_peak_rss() -> bool:
    """Reset the kernel's record of this process's peak RSS (Linux); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_since(start_mb: float | None) -> float | None:
    """The peak RSS in MiB since ``start_mb`` was read: never below it.

    Linux keeps a process's RSS in per-CPU counters and reads them approximately, so
    ``VmHWM`` (reset just before the start was read) can come out a few pages below a
    ``VmRSS`` read a moment later (CI saw 620.84 < 620.89 MiB); the peak over a span holds
    its start.
    """
    peak = _rss_mb("VmHWM")
    if peak is None or start_mb is None:
        return peak
    return max(peak, start_mb)


def _rss_mb(field: str) -> float | None:
    """This process's resident set now (``VmRSS``) or at its peak (``VmHWM``), in MiB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        if field == "VmRSS":
            return None
        import resource

        scale = 1 if platform.system() == "Darwin" else 1024  # bytes vs KiB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(match[1]) / 1024 if match else None


def _machine() -> dict[str, Any]:
    return {
        "system": platform.platform(),
        "processor": _cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _jaxlib_version() -> str:
    from importlib.metadata import version

    return version("jaxlib")


def _clear_caches() -> None:
    """Drop JAX's in-memory compilation caches (the persistent cache on disk stays)."""
    jax.clear_caches()  # type: ignore[no-untyped-call]
