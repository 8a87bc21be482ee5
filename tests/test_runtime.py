"""Process-wide settings: the one XLA flag (added at import, visible, left alone when the
user says so) and the allocator's reuse of freed memory (only when asked for: the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from prospero_jax.runtime import xla


def _flags_after_import(env: dict[str, str]) -> str:
    code = "import os, prospero_jax; print(os.environ.get('XLA_FLAGS', ''))"
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla.SWITCH)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_import_adds_the_loop_flag() -> None:
    assert _flags_after_import({}) == xla.FLAG


def test_the_user_can_turn_it_off_or_set_their_own() -> None:
    assert _flags_after_import({xla.SWITCH: "0"}) == ""
    own = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1"
    assert _flags_after_import({"XLA_FLAGS": own}) == own


_REFAULTS = """
import resource, sys
import numpy as np
import prospero_jax as pj
if sys.argv[1] == "reuse":
    assert pj.reuse_freed_memory()
elif sys.argv[1] == "cli":
    from typer.testing import CliRunner
    from cli.app import app
    assert CliRunner().invoke(app, ["info"]).exit_code == 0
array = np.ones(1 << 23)  # 64 MiB: glibc would hand it back to the kernel on free
del array
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
array = np.ones(1 << 23)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refaults(how: str) -> int:
    """Page faults of a second 64 MiB array after the first was freed, in a new process
    (``how``: ``default``, ``reuse`` after :func:`reuse_freed_memory`, or ``cli``)."""
    done = subprocess.run(
        [sys.executable, "-c", _REFAULTS, how], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_arrays_are_reused_when_asked_and_by_the_cli() -> None:
    # By default the second array faults its pages in afresh (huge pages: at least 32
    # faults); after reuse_freed_memory(), as in every CLI command, it takes the first's.
    assert _refaults("default") >= 32
    assert _refaults("reuse") < 8
    assert _refaults("cli") < 8


@pytest.mark.parametrize("shape", [1, 7, (3, 5), (1024, 2)])
@pytest.mark.parametrize("dtype", ["int32", "float32", "float64", "bool"])
def test_kernel_arguments_are_aligned_for_xla(shape: int | tuple[int, ...], dtype: str) -> None:
    # Kernel arguments start at a 64-byte boundary, so JAX hands them to XLA:CPU as they
    # are (a NumPy array is 16-byte aligned: copied at each call); the padded tapes of a
    # call are built that way.
    import numpy as np

    from prospero_jax.evaluators.tape import Tapes
    from prospero_jax.ir.parse import parse
    from prospero_jax.runtime.memory import ALIGNMENT, aligned_empty, aligned_zeros

    for make in (aligned_zeros, aligned_empty):
        out = make(shape, dtype)
        assert out.shape == np.zeros(shape).shape
        assert out.dtype == np.dtype(dtype)
        assert out.ctypes.data % ALIGNMENT == 0
        assert out.flags.c_contiguous
    assert not aligned_zeros(shape, dtype).any()
    tapes = Tapes.pack(parse("_0 var-x\n_1 const 2.5\n_2 mul _0 _1\n"), dtype="float32")
    for array in (*tapes.padded(100)[:3], tapes.params):
        assert array.ctypes.data % ALIGNMENT == 0
