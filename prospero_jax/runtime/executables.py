"""Compiled kernels kept on disk as executables: a warm process skips trace, lowering and XLA.

Input: a jitted kernel, its arguments and static options. Output: the same result as
calling the kernel, computed by a compiled executable found in memory, on disk, or
compiled now (and then stored).

Why: JAX's persistent compilation cache (:mod:`prospero_jax.runtime.cache`) saves XLA's compile,
but every process still traces and lowers each kernel (about 0.3 s for the culled
renderer's kernels on a 2-core CPU, a third of a warm CLI render). Here the compiled
executable itself is stored (``jax.experimental.serialize_executable``) and loaded in
about 0.1 s.

Invariants: an executable is tied to the jaxlib build and the device, and is the output of
this package's code; all three are in the key (with the kernel's name, its static options,
its arguments' shapes and dtypes, and ``jax_enable_x64``), so a stale file is never loaded:
editing any module of the package changes the key. A file that fails to load, or to run
the first time, is removed and compiled again. Files are named by a tag of the build and
written atomically; storing one removes other builds' files. A failed write only costs the
next process a compile. Nothing is kept on disk until
:func:`set_directory` names a directory (:func:`prospero_jax.enable_compilation_cache`
does); until then :func:`call` is the plain jitted call. The files are unpickled when
loaded: like JAX's own cache, the directory must be one only its user writes.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any, BinaryIO, cast

import jax
import numpy as np
from jax.experimental.serialize_executable import deserialize_and_load, serialize

from prospero_jax.runtime.files import atomic_write


class Store:
    """Where executables are kept and which are in memory: all of this module's state.

    ``directory`` is None until :meth:`set_directory` names one (the disk is off);
    ``counts`` says how many executables were loaded from disk or compiled and stored;
    ``compiled`` holds the kernels this process has compiled (XLA's state, which
    :meth:`forget` does not reset).
    """

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.loaded: dict[str, Callable[..., Any]] = {}  # by key (see _key)
        self.memo: dict[tuple[Any, ...], Callable[..., Any]] = {}  # the same, cheaper key
        self.counts = {"loaded": 0, "compiled": 0}
        self.compiled: set[Any] = set()  # kernels this process compiled (see prepare)
        self.called: set[Any] = set()  # calls made through jax.jit, with no directory

    def set_directory(self, path: str | os.PathLike[str] | None) -> None:
        """Keep executables in ``path`` (created when needed); ``None`` turns the disk off."""
        self.directory = Path(path) if path is not None else None
        self.forget()

    def forget(self) -> None:
        """Drop the executables held in memory (the files stay), as a new process starts."""
        self.loaded.clear()
        self.memo.clear()

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """No stored executables inside the block (benchmarks of JAX's own pipeline)."""
        saved = self.directory
        self.set_directory(None)
        try:
            yield
        finally:
            self.set_directory(saved)


#: The process's store (:func:`prospero_jax.enable_compilation_cache` names its directory).
store = Store()
set_directory, forget, disabled = store.set_directory, store.forget, store.disabled


@functools.cache
def _build() -> tuple[str, str, str]:
    """JAX's and jaxlib's versions and a hash of every module of this package: the build's
    identity, so that an edited kernel is never served by a file its old code compiled."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for module in sorted(package.rglob("*.py")):
        digest.update(module.relative_to(package).as_posix().encode())
        digest.update(module.read_bytes())
    return jax.__version__, version("jaxlib"), digest.hexdigest()


#: One thread at a time loads or compiles an executable (:func:`call`).
_slow_path = threading.Lock()
#: The thread pools of :func:`run_at_once`, by size.
_pools: dict[int, ThreadPoolExecutor] = {}


def build_tag() -> str:
    """A short name for this build (jax, jaxlib, package source), the files' prefix."""
    return hashlib.sha256(repr(_build()).encode()).hexdigest()[:8]


def evict_other_builds(directory: Path, suffix: str = ".bin") -> None:
    """Remove the files another build stored: no build can load them (best effort)."""
    for stale in directory.glob(f"*{suffix}"):
        if not stale.name.startswith(f"{build_tag()}-"):
            stale.unlink(missing_ok=True)


def _flag(name: str) -> bool:
    return bool(getattr(jax.config, name))


def _dtype(leaf: Any) -> str:
    return str(leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf))


def _key(kernel: Any, args: tuple[Any, ...], static: dict[str, Any], device: jax.Device) -> str:
    leaves = [(np.shape(a), _dtype(a)) for a in jax.tree.leaves(args)]
    parts = (
        getattr(kernel, "__module__", ""),
        getattr(kernel, "__qualname__", repr(kernel)),
        sorted(static.items()),
        leaves,
        str(jax.tree.structure(args)),
        _flag("jax_enable_x64"),
        device.platform,
        device.device_kind,
        _build(),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _signature(leaf: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """A leaf's shape and dtype object (no string: a frame builds a few hundred)."""
    try:
        return leaf.shape, leaf.dtype
    except AttributeError:
        return np.shape(leaf), np.result_type(leaf)


def _quick(kernel: Any, args: tuple[Any, ...], static: dict[str, Any], device: jax.Device) -> Any:
    """What tells executables apart within this process, cheap to build."""
    return (
        kernel,
        tuple(sorted(static.items())),
        tuple(map(_signature, jax.tree.leaves(args))),
        _flag("jax_enable_x64"),
        device,
    )


def call(kernel: Any, args: tuple[Any, ...], device: jax.Device, **static: Any) -> Any:
    """``kernel(*args, **static)``, through a stored executable when a directory is set.

    ``args`` must already live on ``device`` (the executable runs there). Safe to call
    from several threads at once (:func:`run_at_once`): an executable not yet in memory is
    loaded or compiled by one thread at a time.
    """
    quick = _quick(kernel, args, static, device)
    if store.directory is None:
        store.called.add(quick)
        return kernel(*args, **static)
    executable = store.memo.get(quick)
    if executable is not None:
        return executable(*args)
    with _slow_path:
        return _loaded_call(kernel, args, device, static, quick)


def at_once(device: jax.Device) -> int:
    """How many independent kernel calls to run at once on ``device``: on a CPU, the
    cores this process may run on (``taskset -c 0`` makes it 1), as XLA:CPU runs an
    interpreter's loop on one core; elsewhere 1 (the device queues them)."""
    if device.platform != "cpu":
        return 1
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(cores) if cores is not None else (os.cpu_count() or 1)


def run_at_once(work: Callable[[Any], Any], items: Sequence[Any], threads: int) -> list[Any]:
    """``[work(item) for item in items]``, ``threads`` items at a time on a pool of
    threads kept for the process (made when first needed), each in the caller's float
    precision (``jax.enable_x64``, :meth:`~prospero_jax.renderers.view.Target.precision`,
    is a thread's own: a pool thread would call a float64 kernel with float32 arrays) and
    context variables (NumPy's ``errstate``); ``work`` must not wait on the pool itself."""
    pool = _pools.get(threads)
    if pool is None:
        pool = _pools.setdefault(threads, ThreadPoolExecutor(threads, "prospero-calls"))
    x64, context = _flag("jax_enable_x64"), contextvars.copy_context()

    def carried(item: Any) -> Any:
        with jax.enable_x64(x64):
            return context.copy().run(work, item)

    return list(pool.map(carried, items))


def _loaded_call(
    kernel: Any, args: tuple[Any, ...], device: jax.Device, static: dict[str, Any], quick: Any
) -> Any:
    """:func:`call`'s way for an executable not yet in memory (the lock held)."""
    executable = store.memo.get(quick)
    if executable is not None:  # another thread loaded it meanwhile
        return executable(*args)
    key = _key(kernel, args, static, device)
    executable = store.loaded.get(key)
    if executable is not None:
        store.memo[quick] = executable
        return executable(*args)
    assert store.directory is not None
    path = store.directory / f"{build_tag()}-{key}.bin"
    executable = _load(path, device)
    if executable is not None:
        out = _run_once(executable, args)
        if out is not None:
            store.counts["loaded"] += 1
            store.loaded[key] = store.memo[quick] = executable
            return out
        path.unlink(missing_ok=True)  # it loaded but does not run: compile it again
    executable, out = _compile_and_store(kernel, args, static, path, device)
    store.counts["compiled"] += 1
    store.loaded[key] = store.memo[quick] = executable
    return out


Job = tuple[Any, tuple[Any, ...], dict[str, Any]]
"""A kernel call to prepare: ``(kernel, args, static)``, ``args`` arrays or
``jax.ShapeDtypeStruct``s."""


def readiness(jobs: Sequence[Job], device: jax.Device) -> str:
    """What the executables of these calls cost before they run: ``"ready"`` (in memory),
    ``"stored"`` (all on disk: loaded), or ``"missing"`` (some must be compiled)."""
    quick = [_quick(kernel, args, static, device) for kernel, args, static in jobs]
    if all(q in store.memo or q in store.called for q in quick):
        return "ready"
    if store.directory is None:
        return "missing"
    for kernel, args, static in jobs:
        key = _key(kernel, args, static, device)
        if key not in store.loaded and not (store.directory / f"{build_tag()}-{key}.bin").exists():
            return "missing"
    return "stored"


def prepare(jobs: Sequence[Job], device: jax.Device) -> None:
    """Have the executables of these calls ready before they are made: each that is
    neither in memory nor on disk is compiled now, all of them at once, a thread each
    (XLA compiles without holding the GIL), so a cold render waits for its slowest
    kernel, not for their sum. Nothing happens without a directory (calls then go to
    ``jax.jit``, which compiles each on first use) or with fewer than two to compile."""
    if store.directory is None:
        return
    missing: dict[Any, tuple[Job, str]] = {}
    for job in jobs:
        kernel, args, static = job
        quick, key = _quick(kernel, args, static, device), _key(kernel, args, static, device)
        path = store.directory / f"{build_tag()}-{key}.bin"
        if quick not in store.memo and key not in store.loaded and not path.exists():
            missing[quick] = (job, key)
    if len(missing) < 2:
        return  # one compile has nothing to overlap with: the call compiles it
    directory, x64 = store.directory, _flag("jax_enable_x64")

    def build(job: Job, key: str) -> Callable[..., Any]:
        kernel, args, static = job
        path = directory / f"{build_tag()}-{key}.bin"
        with jax.enable_x64(x64):  # the caller's precision (a thread-local setting)
            compiled = _compile(kernel, args, static)
            if kernel in store.compiled or kernel._cache_size():
                # XLA may have compiled this before in the process, which can make a file
                # that does not run (see _compile_and_store): check it, as calls do.
                zeros = jax.tree.map(lambda a: np.zeros(np.shape(a), _dtype(a)), args)
                return _kept(compiled, path, zeros, device)[0]
            # A first compile in a fresh process stores a sound file (a file that fails
            # anyway is dropped and compiled again by the process that loads it).
            _store(path, compiled)
            return cast(Callable[..., Any], compiled)

    with _jax_cache_off(), ThreadPoolExecutor(len(missing)) as pool:
        built = list(pool.map(lambda item: build(*item), missing.values()))
    for (quick, (job, key)), executable in zip(missing.items(), built, strict=True):
        store.counts["compiled"] += 1
        store.compiled.add(job[0])
        store.loaded[key] = store.memo[quick] = executable


def _compile(kernel: Any, args: tuple[Any, ...], static: dict[str, Any]) -> Any:
    return kernel.lower(*args, **static).compile()


@contextlib.contextmanager
def _jax_cache_off() -> Iterator[None]:
    """JAX's persistent cache off inside the block (see :func:`_compile_and_store`)."""
    update = cast(Callable[[str, object], None], jax.config.update)  # untyped in jax
    was_on = _flag("jax_enable_compilation_cache")
    update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        update("jax_enable_compilation_cache", was_on)


def _compile_and_store(
    kernel: Any, args: tuple[Any, ...], static: dict[str, Any], path: Path, device: jax.Device
) -> tuple[Callable[..., Any], Any]:
    """Compile, store, and run once: the executable and this call's outputs.

    An XLA:CPU executable that JAX's persistent cache loaded, or that XLA compiled a
    second time in one process, serializes into a file that loads but fails when run
    ("Function ... not found"): so the compile bypasses that cache, and the stored file is
    loaded back and run on this call's arguments before it is kept (if it fails, it is
    dropped and the freshly compiled executable serves this process).
    """
    with _jax_cache_off():
        compiled = _compile(kernel, args, static)
    store.compiled.add(kernel)
    return _kept(compiled, path, args, device)


def _kept(
    compiled: Any, path: Path, args: tuple[Any, ...], device: jax.Device
) -> tuple[Callable[..., Any], Any]:
    """Store ``compiled`` at ``path``; the executable to use (the stored one, loaded back,
    if it runs on ``args``, else ``compiled``) and its outputs on ``args``."""
    if _store(path, compiled):
        reloaded = _load(path, device)
        out = _run_once(reloaded, args) if reloaded is not None else None
        if reloaded is not None and out is not None:
            return reloaded, out
        path.unlink(missing_ok=True)
    return compiled, compiled(*args)


def _run_once(executable: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``executable(*args)``, waited for; None if XLA fails to run it."""
    try:
        out = executable(*args)
        jax.block_until_ready(out)  # type: ignore[no-untyped-call]
    except jax.errors.JaxRuntimeError:
        return None
    return out


def _load(path: Path, device: jax.Device) -> Callable[..., Any] | None:
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        payload, in_tree, out_tree = pickle.loads(blob)
        loaded: Callable[..., Any] = deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=[device]
        )
        return loaded
    except Exception:  # a truncated or foreign file: drop it and compile again
        path.unlink(missing_ok=True)
        return None


def _write_all(stream: BinaryIO, blob: bytes) -> None:
    stream.write(blob)


def _store(path: Path, compiled: Any) -> bool:
    """Write ``compiled`` to ``path`` atomically; whether it was written. Files of other
    builds in the directory are removed first, so upgrades and edits do not pile up."""
    try:
        if path.parent.is_dir():
            evict_other_builds(path.parent)
        blob = pickle.dumps(serialize(compiled))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda stream: _write_all(stream, blob))
    except (OSError, pickle.PicklingError, TypeError, ValueError):
        return False  # not stored: the next process compiles again
    return True
