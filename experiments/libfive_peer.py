"""What the scripts that time us against libfive share: the models and their regions,
the extra shapes written to a scratch directory, and one alternated round's processes.

Input: a model's name (a shared model, or one of ``EXTRA``), a scratch directory, the
path of libfive's ``vm_bench`` (built outside the project by
``../shared/peers/libfive/build.sh``). Output: each process's last line of JSON.
Regions as in ``../shared/peers/README.md``: bear ±1.5, tanglecube ±3, the others ±1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT.parent / "shared" / "models"
HALF = {"bear": 1.5, "tanglecube": 3.0}
XYZ = "x var-x\ny var-y\nz var-z\n"
SPHERE = XYZ + "xx square x\nyy square y\nzz square z\ns add xx yy\nt add s zz\nr sqrt t\n"
SPHERE += "c const 0.6\nv sub r c\n"


def box(centre: tuple[float, ...], half: tuple[float, ...], name: str) -> str:
    """Rows of a box ``max(|x - c| - h)`` over the axes, its value in row ``name``."""
    lines = []
    for axis, c, h in zip("xyz", centre, half, strict=True):
        lines += [f"{name}c{axis} const {c!r}", f"{name}d{axis} sub {axis} {name}c{axis}",
                  f"{name}a{axis} abs {name}d{axis}", f"{name}h{axis} const {h!r}",
                  f"{name}e{axis} sub {name}a{axis} {name}h{axis}"]  # fmt: skip
    return "\n".join([*lines, f"{name}m max {name}ex {name}ey", f"{name} max {name}m {name}ez"])


#: The union of two boxes of the mesh tests.
BOXES = "\n".join(
    [XYZ.strip(), box((-0.2, -0.1, 0.05), (0.4, 0.4, 0.3), "a"),
     box((0.3, 0.25, 0.15), (0.35, 0.3, 0.25), "b"), "v min a b\n"]
)  # fmt: skip
#: Shapes that are not shared models, written to the scratch directory when asked for.
EXTRA = {"sphere": SPHERE, "boxes": BOXES}


def model_path(name: str, scratch: Path) -> Path:
    """The ``.vm`` file of model ``name``."""
    if name in EXTRA:
        path = scratch / f"{name}.vm"
        path.write_text(EXTRA[name])
        return path
    return MODELS / f"{name}.vm"


def run_json(command: list[str], tree: str | None = None) -> dict[str, object]:
    """Run ``command`` and parse its last line of output as JSON; with ``tree`` (another
    checkout of prospero-jax, e.g. a worktree of an earlier commit) importing that one."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run(
        command, check=True, capture_output=True, text=True, env=env, cwd=tree
    ).stdout
    parsed: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return parsed


#: A command's prefix that keeps it on one core (``taskset``): our process has threads
#: beyond Python's (XLA's), which on two free cores gave the bear's 1024³ heightmap 1.39
#: cores (1.23 s; 1.7–2.0 s on one; experiments/RESULTS.md, "Twenty-sixth session"), so
#: "one thread" against libfive's means one core.
ONE_CORE = ["taskset", "-c", "0"]


def libfive_run(
    libfive: Path,
    model: Path,
    mode: str,
    size: int,
    half: float,
    repeats: int,
    prefix: list[str] | None = None,
) -> dict[str, object]:
    """libfive's ``vm_bench MODEL MODE N 1 HALF R``: one thread, over ``[-half, half]³``,
    the median of ``repeats`` runs after parsing; ``prefix``: e.g. :data:`ONE_CORE`."""
    command = [str(libfive), str(model), mode, str(size), "1", str(half), str(repeats)]
    return run_json([*(prefix or []), *command])


class LineWorker:
    """A process that answers each line sent to it with one line of JSON (a warm worker of
    ours: compiled once, then timed on request), with ``env`` and ``cwd`` as given."""

    def __init__(
        self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None
    ):
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd
        )

    def read(self) -> dict[str, object]:
        """Its next line of JSON; exits the script if the process has stopped."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"a worker stopped (exit {self.process.wait()})")
        parsed: dict[str, object] = json.loads(line)
        return parsed

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n")
        self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()
