"""Hostile programs on the default device: the images of `tests/test_exactness.py`'s
rewritten patterns (huge divisors, chains of huge constants), by ``pj.render``'s default
(on a GPU: brute force, the closure unsealed, XLA's algebraic simplifier off) and with
``exact=True``, against the float64 oracle's image. Needs the tests' dependencies.

    python experiments/gpu_hostile.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

import prospero_jax as pj

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_exactness import REWRITTEN


def main() -> None:
    print("device", jax.devices()[0])
    for name, text in REWRITTEN.items():
        program = pj.parse(text, source=name)
        oracle = pj.reference.render(program, 16)
        for exact in (False, True):
            image = pj.render(program, 16, exact=exact)
            print(f"{name}: exact={exact}: {int(np.count_nonzero(image != oracle))} pixels differ")


if __name__ == "__main__":
    main()
