"""Floods against `prospero view`, over real sockets, with the server in its own process.

    python experiments/viewer_floods.py                      # this checkout
    python experiments/viewer_floods.py --repo /tmp/before   # another checkout (git worktree)

Starts ``python -m cli view MODEL --no-browser`` in ``--repo`` and, one after the other:

1. **concurrent**: ``--concurrent`` connections (2,000) opened at once, each asking
   ``GET /api/state``: how many got an answer, a reset, or nothing within 30 s;
2. **idle**: ``--idle`` connections (1,000: half send nothing, half a request head they
   never finish) held open by a second process while a prober asks ``/api/state`` on a
   fresh connection every 25 ms for the server's timeout and 10 s more: the prober's
   worst and 99th-percentile latency, and how many idle connections the server closed,
   and when;
3. **large file**: the watched file replaced by a valid 3,000,000-line program (about
   60 MB): the prober's latency while it is read, and the time until the new version shows;
4. **FIFO**: the watched file replaced by a named pipe: the prober's latency, the error shown;
5. the server's resident memory (``VmRSS``) before, after each flood, after both floods
   once more, and 5 s later.

Every wait has a deadline, so a server that hangs is reported, not waited for. Writes
``experiments/results/viewer_floods[-LABEL].json``; ``--table`` prints the medians of the
runs there, by label (``after-1``, ``after-2``… are one column)::

    python experiments/viewer_floods.py --table
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


async def ask_state(port: int, deadline: float = 5.0) -> tuple[str, float]:
    """One ``GET /api/state`` on a fresh connection: ("ok" | "reset" | "timeout" | "error:..",
    seconds)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = await reader.read()
            writer.close()
        outcome = "ok" if reply.startswith(b"HTTP/1") and b" 200 " in reply[:16] else "bad"
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        outcome = "reset"
    except TimeoutError:
        outcome = "timeout"
    except OSError as err:
        outcome = f"error: {err.strerror or err}"
    return outcome, time.perf_counter() - started


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "median_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
    }


async def concurrent(port: int, count: int) -> dict[str, Any]:
    results = await asyncio.gather(*(ask_state(port, 30.0) for _ in range(count)))
    outcomes: dict[str, int] = {}
    for outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"requests": count, "outcomes": outcomes,
            **summary([t for o, t in results if o == "ok"] or [float("nan")])}  # fmt: skip


async def probe(port: int, seconds: float, until: Any = None) -> dict[str, Any]:
    """Ask the state every 25 ms for ``seconds`` (or until ``until()``)."""
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and await until()):
        outcome, took = await ask_state(port)
        latencies.append(took)
        failures += outcome != "ok"
        await asyncio.sleep(0.025)
    return {"failures": failures, **summary(latencies)}


async def hold_idle(port: int, count: int, seconds: float) -> dict[str, Any]:
    """In a process of its own (so that its 1,000 sockets do not slow the prober's event
    loop): open ``count`` connections and wait up to ``seconds`` for the server to close
    them."""
    held = []
    for k in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        if k % 2:
            writer.write(b"GET /api/state HTTP/1.1\r\nHost: x\r\n")  # never finished
        held.append((reader, writer))
    opened = time.monotonic()
    print("opened", flush=True)  # the prober starts
    closed: list[float] = []

    async def wait_close(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            await reader.read()
        closed.append(time.monotonic() - opened)

    waiters = [asyncio.create_task(wait_close(r)) for r, _ in held]
    await asyncio.wait(waiters, timeout=seconds)
    for _, writer in held:
        writer.close()
    return {"opened": len(held), "closed_by_server": len(closed),
            "closed_median_s": statistics.median(closed) if closed else None}  # fmt: skip


async def idle(port: int, count: int, timeout: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--hold", str(port), str(count), str(timeout + 10)]
    holder = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    assert holder.stdout is not None
    await holder.stdout.readline()  # "opened"
    probed = await probe(port, timeout + 10)
    held = json.loads(await holder.stdout.read())
    await holder.wait()
    return {**held, "probe": probed}


def large_program(path: Path, lines: int) -> None:
    """A valid 2-D program of ``lines`` lines: x + y + x + x + ... (hex IDs keep it short)."""
    with path.open("w") as f:
        f.write("x var-x\ny var-y\n0 add x y\n")
        f.write("".join(f"{i:x} add {i - 1:x} x\n" for i in range(1, lines - 2)))


async def state(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


async def flood(port: int, pid: int, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"rss_mb": {"start": rss_mb(pid)}}
    report["concurrent"] = await concurrent(port, args.concurrent)
    report["rss_mb"]["after_concurrent"] = rss_mb(pid)
    report["idle"] = await idle(port, args.idle, args.timeout)
    report["rss_mb"]["after_idle"] = rss_mb(pid)
    report["again"] = await concurrent(port, args.concurrent)  # does memory keep growing?
    report["again"]["idle"] = (await idle(port, args.idle, args.timeout))["closed_by_server"]
    report["rss_mb"]["after_again"] = rss_mb(pid)
    if args.large:
        try:
            before = (await state(port))["version"]
        except (OSError, TimeoutError, ValueError):
            before = None
        big = model.with_name("big.vm")
        large_program(big, args.large)
        started = time.monotonic()
        os.replace(big, model)

        async def changed() -> bool:
            try:
                now = await state(port)
            except (OSError, TimeoutError, ValueError):
                return False
            return now["version"] != before and not now.get("loading", False)

        report["large"] = {"lines": args.large, "probe": await probe(port, 300, changed),
                           "seconds_to_new_version": time.monotonic() - started}  # fmt: skip
        report["rss_mb"]["after_large"] = rss_mb(pid)
    model.unlink()
    os.mkfifo(model)
    fifo = await probe(port, 3)
    try:
        fifo["error"] = (await state(port))["error"]
    except (OSError, TimeoutError, ValueError) as err:
        fifo["error"] = f"no answer: {type(err).__name__}"
    report["fifo"] = fifo
    await asyncio.sleep(5)
    report["rss_mb"]["settled"] = rss_mb(pid)
    return report


def table() -> str:
    """A Markdown table of the medians over the runs in ``experiments/results``, one column
    per label's prefix (``after-1``, ``after-2``… make the column ``after``)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((ROOT / "experiments" / "results").glob("viewer_floods-*.json")):
        runs.setdefault(path.stem.split("-")[1], []).append(json.loads(path.read_text()))
    rows = {
        "2,000 concurrent: answered": lambda r: r["concurrent"]["outcomes"].get("ok", 0),
        "2,000 concurrent: reset": lambda r: r["concurrent"]["outcomes"].get("reset", 0),
        "2,000 concurrent: no answer in 30 s": lambda r: r["concurrent"]["outcomes"].get(
            "timeout", 0
        ),
        "1,000 idle: closed by the server": lambda r: r["idle"]["closed_by_server"],
        "1,000 idle: closed after (s)": lambda r: r["idle"]["closed_median_s"],
        "1,000 idle: prober's worst (ms)": lambda r: r["idle"]["probe"]["max_ms"],
        "1,000 idle: prober's p99 (ms)": lambda r: r["idle"]["probe"]["p99_ms"],
        "3 M lines: new version after (s)": lambda r: r["large"]["seconds_to_new_version"],
        "3 M lines: prober's worst (ms)": lambda r: r["large"]["probe"]["max_ms"],
        "3 M lines: prober's p99 (ms)": lambda r: r["large"]["probe"]["p99_ms"],
        "3 M lines: prober's failures": lambda r: r["large"]["probe"]["failures"],
        "FIFO: prober's failures": lambda r: r["fifo"]["failures"],
        "FIFO: prober's worst (ms)": lambda r: r["fifo"]["max_ms"],
        "RSS (MB): start": lambda r: r["rss_mb"]["start"],
        "RSS (MB): after the two floods": lambda r: r["rss_mb"]["after_idle"],
        "RSS (MB): after both, again": lambda r: r["rss_mb"].get("after_again"),
    }
    labels = sorted(runs)
    lines = [f"| median of {len(runs[labels[0]])} runs | " + " | ".join(labels) + " |",
             "|---" * (len(labels) + 1) + "|"]  # fmt: skip
    for name, get in rows.items():
        cells = []
        for label in labels:
            values = [get(r) for r in runs[label]]
            values = [v for v in values if v is not None]
            median = statistics.median(values) if values else float("nan")
            cells.append(f"{median:,.0f}" if median >= 100 else f"{median:.3g}")
        if all(cell == "nan" for cell in cells):
            continue
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--table"]:
        print(table())
        return
    if sys.argv[1:2] == ["--hold"]:  # the idle connections' process (see idle())
        port, count, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(asyncio.run(hold_idle(port, count, seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose viewer to run")
    parser.add_argument("--label", default="", help="suffix of the JSON file")
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=15.0, help="the server's idle timeout")
    parser.add_argument("--large", type=int, default=3_000_000, help="lines (0: skip)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="floods-"))
    model = work / "model.vm"
    shutil.copy(SHARED / "models" / "hi.vm", model)
    command = [sys.executable, "-m", "cli", "view", str(model), "--no-browser", "--no-cache"]
    server = subprocess.Popen(command, cwd=args.repo, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        port = int(re.search(r":(\d+)/", line).group(1))  # type: ignore[union-attr]
        time.sleep(2)  # the first read of the file
        report = asyncio.run(flood(port, server.pid, model, args))
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    report["repo"] = str(args.repo)
    report["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.repo,
                                      capture_output=True, text=True).stdout.strip()  # fmt: skip
    out = (
        ROOT
        / "experiments"
        / "results"
        / f"viewer_floods{'-' + args.label if args.label else ''}.json"
    )
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
