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

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PROSPERO_SHARED", ROOT.parent / "shared"))

# Compiled kernels survive between test runs (CI on the same machine, local reruns).
pj.enable_compilation_cache(pj.default_cache_dir().parent / "jax-tests")


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
    """The float64 oracle's values of prospero at the sizes the tests compare (~15 s)."""
    return {n: pj.reference.values(prospero, n) for n in (256, 512, 1024)}


# CI runs a fixed sequence of examples, so a run is reproducible; locally, hypothesis
# explores new ones each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
