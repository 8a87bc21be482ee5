"""XLA flags the tape interpreter needs, set before JAX starts its backend.

XLA:CPU runs a ``while`` loop whose carried state exceeds a small byte threshold as one
runtime call per iteration; raising the threshold compiles the whole loop into one kernel,
which made the interpreter's loops about 5× faster (``experiments/RESULTS.md``). This only
takes effect if JAX's CPU backend has not started yet when ``prospero_jax`` is imported;
otherwise rendering is slower but still correct. A flag already in ``XLA_FLAGS`` wins.
"""

from __future__ import annotations

import os

FLAG = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"


def install() -> None:
    """Append :data:`FLAG` to ``XLA_FLAGS`` unless backend options are already given."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_extra_options" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
