"""Shared fixtures: the challenge's inputs from ../shared, and a compile cache for the suite.

``PROSPERO_SHARED`` overrides where the shared inputs live (default: ``../shared`` beside
the project root). They are read in place, never copied.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import prospero_jax as pj
from prospero_jax.evaluators.oracle import evaluate

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PROSPERO_SHARED", ROOT.parent / "shared"))

# Compiled kernels survive between test runs (CI on the same machine, local reruns). Each
# xdist worker has a directory of its own: JAX writes a cache entry in place, and a worker
# reading one the other is writing would get a warning, which some tests make an error.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...; unset in one process
pj.enable_compilation_cache(pj.default_cache_dir().parent / f"jax-tests-{_WORKER or 'main'}")


def shared_path(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.fail(f"missing shared input {path} (set PROSPERO_SHARED to its directory)")
    return path


@pytest.fixture(autouse=True)
def _collectable() -> Iterator[None]:
    """Objects a CLI command froze (``gc.freeze()``: a process, a command) made collectable
    again after each test, so the suite's garbage cycles do not outlive their tests."""
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def prospero() -> pj.Program:
    return pj.load(shared_path("prospero.vm"))


@pytest.fixture(scope="session")
def hi() -> pj.Program:
    return pj.load(shared_path("models/hi.vm"))


@pytest.fixture(scope="session")
def quarter() -> pj.Program:
    return pj.load(shared_path("models/quarter.vm"))


@pytest.fixture(scope="session")
def oracle_values(prospero: pj.Program) -> dict[int, np.ndarray]:
    """The float64 oracle's values of prospero at the sizes the tests compare (~20 s),
    each image 64 rows at a time: the values of the whole grid at once, bit for bit (each
    op is elementwise), in three quarters of the time (a band's arrays stay in cache)."""
    values = {}
    for n in (256, 512, 1024):
        xs, ys = pj.reference.axes(n, pj.reference.DEFAULT_REGION)
        bands = [evaluate(prospero, xs, ys[a : a + 64, None]) for a in range(0, n, 64)]
        values[n] = np.concatenate(bands)
    return values


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that read the oracle's images run on one worker (``-n 2 --dist
    loadgroup``, the README's test command), which computes them once (with pytest-xdist
    installed: its marker is unknown without it)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if "oracle_values" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("oracle"))


# CI runs a fixed sequence of examples, so a run is reproducible; locally, hypothesis
# explores new ones each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
