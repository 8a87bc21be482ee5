"""Beyond one device: sharded renders on forced host devices, and a two-process render.

Both run in fresh processes: the number of host devices is fixed when JAX's CPU backend
starts, and ``jax.distributed`` is joined once per process.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prospero_jax as pj
from tests.conftest import shared_path

_SHARDED = """
import json, sys
import jax, numpy as np
import prospero_jax as pj
from typer.testing import CliRunner
from cli.main import app
from prospero_jax.renderers import kernel_calls as _kernel_calls
from prospero_jax.renderers import brute as _render

assert jax.device_count() == 4, jax.devices()
out = {}
for name in ("demo", "quarter"):
    program = pj.shapes.demo_program() if name == "demo" else pj.load(sys.argv[2])
    for mode in ("brute", "culled"):
        out[f"{name}-{mode}"] = pj.render(program, 200, mode=mode, devices="all")
        out[f"{name}-{mode}-two"] = pj.render(program, 200, mode=mode, devices=jax.devices()[:2])
        band = pj.render(program, 200, mode=mode, devices="all", rows=(33, 150))
        out[f"{name}-{mode}-band"] = band
sweep, quarter = [[0.3], [0.5], [0.7]], pj.load(sys.argv[2])  # 3 frames, 4 devices: 1 padding
for mode in ("brute", "culled"):
    out[f"batch-{mode}"] = pj.render_batch(quarter, sweep, 200, mode=mode, devices="all")
result = CliRunner().invoke(app, ["render", "--no-cache", "--devices", "all", "-s", "200",
                                  "-o", sys.argv[1] + "/cli.pgm"])
assert result.exit_code == 0, result.output
result = CliRunner().invoke(app, ["sweep", sys.argv[2], "--no-cache", "--devices", "all",
    "--constant", "f", "--from", "0.3", "--to", "0.7", "--frames", "3", "-s", "200", "--mode",
    "brute", "--format", "pgm", "-o", sys.argv[1] + "/frames"])
assert result.exit_code == 0, result.output
np.savez(sys.argv[1] + "/sharded.npz", **out)
print(json.dumps({"batched": _render._batched.cache_info().misses,
                  "sharded": _kernel_calls._sharded.cache_info().misses}))
"""


def _run(args: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sharded_renders_equal_one_device(tmp_path: Path) -> None:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    quarter = shared_path("models/quarter.vm")
    stdout = _run(["-c", _SHARDED, str(tmp_path), str(quarter)], env=env)
    used = json.loads(stdout.splitlines()[-1])
    assert used["batched"] > 0  # brute force went through the sharded batch
    assert used["sharded"] > 0  # and culling through shard_map
    sharded = np.load(tmp_path / "sharded.npz")
    for name, program in (("demo", pj.shapes.demo_program()), ("quarter", pj.load(quarter))):
        whole = pj.render(program, 200)
        for mode in ("brute", "culled"):
            np.testing.assert_array_equal(sharded[f"{name}-{mode}"], whole)
            np.testing.assert_array_equal(sharded[f"{name}-{mode}-two"], whole)
            np.testing.assert_array_equal(sharded[f"{name}-{mode}-band"], whole[33:150])
    np.testing.assert_array_equal(
        pj.read_pgm(tmp_path / "cli.pgm"), pj.render(pj.shapes.demo_program(), 200)
    )
    frames = pj.render_batch(pj.load(quarter), [[0.3], [0.5], [0.7]], 200, mode="brute")
    np.testing.assert_array_equal(sharded["batch-brute"], frames)
    np.testing.assert_array_equal(sharded["batch-culled"], frames)
    for i in range(3):
        np.testing.assert_array_equal(pj.read_pgm(tmp_path / f"frames/frame_000{i}.pgm"), frames[i])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _two_processes(args: list[str]) -> list[tuple[str, str]]:
    """Run ``prospero ARGS`` as processes 0 and 1 of a job on loopback: their outputs."""
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "cli", *args, "--no-cache", "--coordinator", address,
               "--num-processes", "2"]  # fmt: skip
    children = [
        subprocess.Popen(
            [*command, "--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [child.communicate(timeout=240) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (_stdout, stderr) in zip(children, results, strict=True):
        assert child.returncode == 0, stderr[-3000:]
    return results


def test_two_processes_render_the_single_process_image(tmp_path: Path) -> None:
    program = shared_path("models/quarter.vm")
    out = tmp_path / "two.pgm"
    results = _two_processes(["render", str(program), "-s", "201", "-o", str(out)])
    assert "wrote" in results[0][0]
    assert "process 1 rendered its rows" in results[1][0]
    np.testing.assert_array_equal(pj.read_pgm(out), pj.render(pj.load(program), 201))


def test_two_processes_stream_and_resume_one_file(tmp_path: Path) -> None:
    """Each process writes its share of the bands into one partial file; process 0 finishes
    it. Here they resume a render that one process began and was interrupted in."""
    program = pj.load(shared_path("models/quarter.vm"))
    out = tmp_path / "two.png"

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pj.render_to_file(program, out, 300, band_rows=64, progress=stop_after_two)
    args = ["render", str(shared_path("models/quarter.vm")), "-s", "300", "--band-rows", "64"]
    results = _two_processes([*args, "-o", str(out)])
    assert "2 of 5 bands resumed" in results[0][0]
    assert "process 1 rendered 1 of 5 bands" in results[1][0]  # bands 2 and 4 went to process 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), pj.render(program, 300))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.png"]  # no partial files left


@pytest.mark.parametrize(("size", "processes"), [(201, 2), (7, 3), (1024, 5)])
def test_process_rows_cover_the_image_once(size: int, processes: int) -> None:
    rows = [pj.process_rows(size, p, processes) for p in range(processes)]
    assert rows[0][0] == 0
    assert rows[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(rows))
    assert max(b - a for a, b in rows) - min(b - a for a, b in rows) <= 1
