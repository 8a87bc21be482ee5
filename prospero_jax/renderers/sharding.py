"""Work spread over several devices: the 1-D meshes and the padding every renderer uses.

Input: devices, and a list of work items (tiles, calls, frames).
Output: the shardings of a 1-D ``jax.sharding.Mesh`` over the devices (one axis split,
and replicated), and work lists padded to a multiple of the device count.

Invariant: padding repeats the last item, so idle devices redo real work whose result
is dropped, never read garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

T = TypeVar("T")


def line_mesh(devices: Sequence[jax.Device], axis: str) -> tuple[NamedSharding, NamedSharding]:
    """``(split, replicated)``: arrays split along their first axis over ``devices`` (named
    ``axis``), and arrays copied to every device, on one 1-D mesh."""
    mesh = Mesh(np.array(devices), (axis,))
    everywhere = P()  # type: ignore[no-untyped-call]
    return NamedSharding(mesh, P(axis)), NamedSharding(mesh, everywhere)  # type: ignore[no-untyped-call]


def pad_to(items: list[T], multiple: int) -> list[T]:
    """``items`` with its last item repeated up to a multiple of ``multiple`` (at least one)."""
    return items + items[-1:] * (-len(items) % multiple)
