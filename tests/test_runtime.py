"""The one XLA setting: added at import, visible, and left alone when the user says so."""

from __future__ import annotations

import os
import subprocess
import sys

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
