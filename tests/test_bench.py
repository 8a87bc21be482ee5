"""`prospero bench` and :func:`prospero_jax.bench`: the report's structure, not its timings.

One small program, every mode, two sizes, measured once for the module; the tests check
that every field is present and consistent (stages are non-negative, the warm staging
reads the persistent cache, every mode draws the oracle's image, the JSON file is the
report) and that bad options are one-line errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import prospero_jax as pj
from cli.main import app
from prospero_jax.benchmarks import measure
from prospero_jax.benchmarks.measure import first_frame_s, hlo_facts
from prospero_jax.ir.shapes import circle, difference, rectangle, to_program, union

SIZES = [16, 40]
runner = CliRunner()


@pytest.fixture(scope="module")
def model() -> pj.Program:
    shape = union(
        difference(circle(0.0, 0.0, 0.7), circle(0.2, 0.1, 0.3)), rectangle(-0.9, -0.9, -0.2, -0.5)
    )
    return to_program(shape, "bench-model")


@pytest.fixture(scope="module")
def report(model: pj.Program) -> dict[str, Any]:
    return pj.bench(model, SIZES, modes=pj.BENCH_MODES, repeats=2, budget_s=0.5, command="test")


def test_report_describes_the_run(report: dict[str, Any], model: pj.Program) -> None:
    assert report["command"] == "test"
    assert report["jax"]
    assert report["jaxlib"]
    assert report["machine"]["cpus"] >= 1
    assert report["program"] == {
        "source": "bench-model",
        "instructions": len(model),
        "digest": model.digest,
    }
    assert report["settings"]["sizes"] == SIZES
    assert report["settings"]["modes"] == list(pj.BENCH_MODES)
    assert [o["size"] for o in report["oracle"]] == SIZES
    for entry in report["oracle"]:
        assert 0 < entry["min_s"] <= entry["median_s"] <= entry["max_s"]
        assert "image" not in entry
    json.dumps(report, allow_nan=False)  # JSON as it stands


def test_one_row_per_mode_and_size(report: dict[str, Any]) -> None:
    rows = [(r["mode"], r["size"]) for r in report["results"]]
    assert rows == [(m, s) for m in pj.BENCH_MODES for s in SIZES]


@pytest.mark.parametrize("mode", pj.BENCH_MODES)
def test_rows_are_consistent(report: dict[str, Any], mode: str) -> None:
    oracle = {o["size"]: o["median_s"] for o in report["oracle"]}
    for row in (r for r in report["results"] if r["mode"] == mode):
        assert row["pixels_differing"] == 0, "every mode draws the oracle's image"
        for stage in ("trace_s", "lower_s", "compile_s", "first_run_s"):
            assert row[stage] >= 0
        if mode == "host":  # the host tier compiles nothing
            assert row["compile_s"] == 0
            assert row["compilations"] == 0
        else:
            assert row["compile_s"] > 0
            assert row["compilations"] >= 1
        steady = row["steady"]
        assert steady["repeats"] == len(steady["times_s"]) >= 2
        assert steady["min_s"] <= steady["median_s"] <= steady["max_s"]
        assert math.isclose(row["oracle_ratio"], oracle[row["size"]] / steady["median_s"])
        assert row["peak_rss_mb"] >= row["rss_start_mb"] > 0
        warm = row["warm_cache"]
        assert warm["cache_hits"] >= (mode != "host"), "warm staging reads the persistent cache"
        assert warm["cache_misses"] == 0
        if mode in ("unrolled", "interpreter"):
            assert row["staging"] == "aot"
            assert row["memory"]["output_bytes"] >= row["size"] ** 2 // 4  # uint8 tile(s)
            hlo = row["hlo"]
            assert hlo["instructions"] >= hlo["largest_fusion"] > 0
            assert hlo["fusions"] >= 1
            assert row["export"]["same_image"]
            assert row["export"]["executable_same_image"]
            assert row["export"]["bytes"] > 0
        else:
            assert row["staging"] == "events"
            assert row["memory"] is None
            assert row["hlo"] is None
            assert "export" not in row


@pytest.mark.parametrize(
    ("hwm", "start", "peak"), [(620.84, 620.89, 620.89), (700.0, 620.0, 700.0), (None, 1.0, None)]
)
def test_a_rows_peak_holds_its_start(
    monkeypatch: pytest.MonkeyPatch, hwm: float | None, start: float, peak: float | None
) -> None:
    """The kernel's approximate counters can read VmHWM a few pages under a later VmRSS."""
    monkeypatch.setattr(measure, "_rss_mb", lambda field: hwm if field == "VmHWM" else None)
    assert measure._peak_since(start) == peak


def test_oracle_skipped_above_its_limit(model: pj.Program) -> None:
    report = pj.bench(
        model, [24], modes=["unrolled"], repeats=2, budget_s=0.1, oracle_max=16,
        warm=False, export=False,
    )  # fmt: skip
    assert report["oracle"] == [{"size": 24, "skipped": "above --oracle-max 16"}]
    (row,) = report["results"]
    assert row["oracle_ratio"] is None
    assert row["pixels_differing"] is None
    assert "warm_cache" not in row
    assert "export" not in row


def test_cli_writes_the_report_as_json(tmp_path: Path, model: pj.Program) -> None:
    program = tmp_path / "model.vm"
    program.write_text(model.to_vm())
    out = tmp_path / "out.json"
    args = ["bench", str(program), "--sizes", "16,24", "--modes", "unrolled,culled"]
    result = runner.invoke(app, [*args, "--repeats", "2", "--budget", "0.1", "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert "unrolled" in result.stdout
    assert "× oracle" in result.stdout
    report = json.loads(out.read_text())
    command = report["command"]
    assert command.startswith(f"prospero bench {program} --sizes 16,24 --modes unrolled,culled")
    assert f"--json {out}" in command
    assert "--repeats 2" in command
    assert [(r["mode"], r["size"]) for r in report["results"]] == [
        ("unrolled", 16), ("unrolled", 24), ("culled", 16), ("culled", 24),
    ]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "0"], "--sizes: image size must be from 1"),
        (["--sizes", "a,b"], "--sizes must be comma-separated integers"),
        (["--modes", "fast"], "modes must be among"),
        (["--json", "no/such/dir/out.json"], "does not exist"),
        (["--device", "tpu"], "no 'tpu' device"),
    ],
)
def test_cli_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "--sizes", "8", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_hlo_facts_counts_instructions_and_fusions() -> None:
    text = """HloModule m

%fused_computation (p0: f32[4], p1: f32[4]) -> f32[4] {
  %p0 = f32[4]{0} parameter(0)
  %p1 = f32[4]{0} parameter(1)
  %add = f32[4]{0} add(%p0, %p1)
  ROOT %mul = f32[4]{0} multiply(%add, %p1)
}

ENTRY %main (a: f32[4], b: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %b = f32[4]{0} parameter(1)
  ROOT %fusion = f32[4]{0} fusion(%a, %b), kind=kLoop, calls=%fused_computation
}
"""
    assert hlo_facts(text) == {"instructions": 7, "fusions": 1, "largest_fusion": 4}


def test_break_even_is_when_a_compile_is_repaid(report: dict[str, Any]) -> None:
    """Per size, the mode with the soonest first image is the baseline; every other
    mode's total time after its ``frames`` images is the smaller, not one image before."""
    for size in SIZES:
        rows = [r for r in report["results"] if r["size"] == size]
        base = min(rows, key=first_frame_s)
        for row in rows:
            even = row["break_even"]
            assert even["against"] == base["mode"]
            if row is base:
                assert even["frames"] == 0
                continue
            step = base["steady"]["median_s"] - row["steady"]["median_s"]
            if even["frames"] is None:
                assert step <= 0
                continue
            extra = first_frame_s(row) - first_frame_s(base)
            behind = [extra - (n - 1) * step for n in (even["frames"], even["frames"] - 1)]
            assert behind[0] <= 0 < behind[1]


def test_the_host_tier_is_benched_against_the_kernels(report: dict[str, Any]) -> None:
    """Both culling tiers draw the same sign program; the host tier's first image comes
    soonest (nothing to compile), so the kernels' row says when they repay."""
    for size in SIZES:
        rows = {r["mode"]: r for r in report["results"] if r["size"] == size}
        assert first_frame_s(rows["host"]) < first_frame_s(rows["culled"])
        soonest = min(rows.values(), key=first_frame_s)["mode"]
        assert rows["culled"]["break_even"]["against"] == soonest
        assert rows[soonest]["break_even"]["frames"] == 0


def test_host_needs_a_program_it_can_cull() -> None:
    program = pj.parse("x var-x\ny var-y\nr sin x")
    with pytest.raises(ValueError, match="has no host tier"):
        pj.bench(program, [16], modes=["host"], repeats=2, budget_s=0.1)
