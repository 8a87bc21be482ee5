"""JAX's persistent compilation cache, pointed at the user's cache directory.

Input: an optional directory. Output: none; JAX's config is updated so that compiled XLA
executables are stored on disk and reused by later processes (the prospero closure's
compile drops from seconds to a fraction of one; tracing is still paid), and the culled
renderer's kernels are kept as whole executables in its ``executables`` folder (see
:mod:`prospero_jax.runtime.executables`: no tracing either).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

import jax

from prospero_jax.runtime import executables as _executables


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prospero-jax/jax`` (``~/.cache/prospero-jax/jax`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prospero-jax" / "jax"


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default: the user cache).

    The culled renderer's executables are kept in ``path / "executables"``.
    """
    directory = Path(path) if path is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    update = cast(Callable[[str, object], None], jax.config.update)  # untyped in jax
    update("jax_compilation_cache_dir", str(directory))
    update("jax_persistent_cache_min_compile_time_secs", 0.2)
    update("jax_persistent_cache_min_entry_size_bytes", 0)
    _executables.set_directory(directory / "executables")
    return directory
