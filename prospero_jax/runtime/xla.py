"""The one XLA setting prospero-jax makes, isolated here: set at import, visible, overridable.

Input: the environment (``XLA_FLAGS``, ``PROSPERO_JAX_XLA_FLAGS``).
Output: ``XLA_FLAGS`` with :data:`FLAG` appended, before JAX starts its backend.

Why: XLA:CPU runs a ``while`` loop whose carried state exceeds a small byte threshold as
one runtime call per iteration; raising the threshold compiles the whole loop into one
kernel, which made the interpreter's loops about 5× faster (``experiments/RESULTS.md``).
It affects only how XLA:CPU compiles loops (no result changes), and the rest of a
process's JAX code gets it too. It takes effect only if JAX's CPU backend has not started
when ``prospero_jax`` is imported; otherwise culled rendering is slower but still correct.

Overrides: backend options already in ``XLA_FLAGS`` win (nothing is added), and
``PROSPERO_JAX_XLA_FLAGS=0`` turns the setting off. :func:`installed` says whether it is on.
"""

from __future__ import annotations

import os

FLAG = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"
#: Set to 0 to leave ``XLA_FLAGS`` alone.
SWITCH = "PROSPERO_JAX_XLA_FLAGS"


def install() -> bool:
    """Append :data:`FLAG` to ``XLA_FLAGS`` unless backend options are already given or
    :data:`SWITCH` is ``0``; whether the flag is now in ``XLA_FLAGS``."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get(SWITCH, "1") != "0" and "xla_backend_extra_options" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return installed()


def installed() -> bool:
    """Whether ``XLA_FLAGS`` holds :data:`FLAG` (ours or the user's own)."""
    return FLAG in os.environ.get("XLA_FLAGS", "")
