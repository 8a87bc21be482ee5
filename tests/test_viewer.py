"""`prospero view`'s server: the page, renders equal to pj.render's, live reload, parse
errors, and clear 4xx answers to bad requests while it keeps serving."""

from __future__ import annotations

import io
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prospero_jax as pj
from tests.conftest import shared_path
from viewer import server as _viewer


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[_viewer.Viewer, Path]]:
    program = tmp_path / "hi.vm"
    shutil.copy(shared_path("models/hi.vm"), program)
    running = _viewer.serve(program)
    assert running.ready(30)
    yield running, program
    running.close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def state(url: str) -> dict:  # type: ignore[type-arg]
    return json.loads(get(url + "api/state")[1])


def wait_for(check, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_the_page_and_a_render_equal_to_the_librarys(
    served: tuple[_viewer.Viewer, Path],
) -> None:
    running, program = served
    status, page = get(running.url)
    assert status == 200
    assert b'id="picture"' in page
    facts = state(running.url)
    assert facts["error"] is None
    assert facts["facts"]["instructions"] == 56
    status, png = get(running.url + "api/render?x0=-0.5&x1=0.5&y0=-0.25&y1=0.75&size=128")
    assert status == 200
    image = np.asarray(Image.open(io.BytesIO(png)))
    expected = pj.render(pj.load(program), 128, region=(-0.5, 0.5, -0.25, 0.75))
    np.testing.assert_array_equal(image, expected)
    last = state(running.url)["last"]
    assert last["size"] == 128
    assert last["levels"][0]["tapes"] == 1  # the culling figures: the root's one tape first
    assert last["levels"][-1]["tile"] == "pixels"


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    served: tuple[_viewer.Viewer, Path],
) -> None:
    running, _ = served
    bad = {
        "x0=1&x1=0&y0=-1&y1=1&size=64": "x0 < x1",
        "x0=a&x1=1&y0=-1&y1=1&size=64": "decimal number",
        "x0=-1_0&x1=1&y0=-1&y1=1&size=64": "decimal number",  # float() takes it
        "x0=-1&x1=1&y0=-1&y1=1&size=%EF%BC%96%EF%BC%94": "size",  # full-width digits
        "x0=-1&x1=1&y0=-1&y1=1&size=64&x0=0": "more than once",
        "x0=-1&x1=1&y0=-1&y1=1&size=64&colour=red": "unknown parameter",
        "x0=-1&x1=1&y0=-1&y1=1&size=64&seq=-3": "seq",
        "x0=-1&x1=1&y0=-1&y1=1&size=64&client=%3Cscript%3E": "client",
        "x0=-1&x1=1&y0=-1&y1=inf&size=64": "finite",
        "x0=-1&x1=1&y0=-1&y1=1&size=99999": "size",
        "x0=-1&x1=1&y0=-1&y1=1&size=64.5": "size",
        "x1=1&y0=-1&y1=1&size=64": "x0: missing",
    }
    for query, reason in bad.items():
        status, body = get(running.url + "api/render?" + query)
        assert status == 400, query
        assert reason in body.decode(), (query, body)
    assert get(running.url + "nowhere")[0] == 404
    assert get(running.url + "api/render?x0=-1&x1=1&y0=-1&y1=1&size=32")[0] == 200


def test_edits_reload_and_a_broken_file_shows_file_line_and_keeps_the_last_image(
    served: tuple[_viewer.Viewer, Path],
) -> None:
    running, program = served
    before = state(running.url)["version"]
    text = program.read_text()
    program.write_text(text + "\n_extra const 1\n")
    assert wait_for(lambda: state(running.url)["version"] > before)
    assert state(running.url)["error"] is None
    program.write_text(text + "\n_bad frob _0\n")
    assert wait_for(lambda: state(running.url)["error"] is not None)
    error = state(running.url)["error"]
    assert error.startswith(f"{program}:59: ")
    assert "frob" in error
    # The last good program still draws.
    assert get(running.url + "api/render?x0=-1&x1=1&y0=-1&y1=1&size=32")[0] == 200


def test_a_solid_is_drawn_lit_and_turned(tmp_path: Path) -> None:
    bear = tmp_path / "bear.vm"
    shutil.copy(shared_path("models/bear.vm"), bear)
    running = _viewer.serve(bear)
    try:
        assert wait_for(lambda: state(running.url)["solid"])
        query = "x0=-1.5&x1=1.5&y0=-1.5&y1=1.5&size=48"
        status, png = get(running.url + "api/render?" + query)
        assert status == 200
        image = np.asarray(Image.open(io.BytesIO(png)))
        heightmap = pj.render_heightmap(pj.load(bear), 48, region=(-1.5, 1.5, -1.5, 1.5))
        np.testing.assert_array_equal(image, pj.shade_heightmap(heightmap, "lit"))
        turned = get(running.url + "api/render?" + query + "&yaw=40&pitch=-20")[1]
        assert turned != png
        assert get(running.url + "api/render?" + query.replace("48", "1024"))[0] == 400
    finally:
        running.close()


def test_solids_are_drawn_on_the_compiled_tier_unless_a_tier_is_named(tmp_path: Path) -> None:
    # A solid is turned view after view: its compiled closures are bought at its first
    # view (pj.Target(tier="compiled")); 2-D views keep the target as given.
    program = tmp_path / "hi.vm"
    shutil.copy(shared_path("models/hi.vm"), program)
    plain, named = _viewer.Viewer(program), _viewer.Viewer(program, pj.Target(tier="host"))
    try:
        assert (plain.target.tier, plain.solids.tier) == ("auto", "compiled")
        assert (named.target.tier, named.solids.tier) == ("host", "host")
    finally:
        plain.close()
        named.close()


def test_a_request_its_client_has_overtaken_is_dropped(
    served: tuple[_viewer.Viewer, Path],
) -> None:
    running, _ = served
    query = "x0=-1&x1=1&y0=-1&y1=1&size=32&client=c"
    assert get(running.url + f"api/render?{query}&seq=5")[0] == 200
    status, body = get(running.url + f"api/render?{query}&seq=3")  # older than one already sent
    assert status == 409
    assert b"stale" in body


def test_the_view_command_says_what_is_wrong_and_teaches(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    missing = runner.invoke(app, ["view", str(tmp_path / "missing.vm"), "--no-browser"])
    assert missing.exit_code == 2
    assert "no such file" in missing.output
    helped = runner.invoke(app, ["view", "--help"])
    assert helped.exit_code == 0
    assert "pan and zoom" in helped.output


def test_a_request_the_page_cancelled_is_not_rendered(
    served: tuple[_viewer.Viewer, Path],
) -> None:
    import asyncio
    import threading

    import aiohttp

    running, _ = served
    get(running.url + "api/render?x0=-1&x1=1&y0=-1&y1=1&size=32")  # compiles; sets `last`
    before = state(running.url)["last"]
    busy = threading.Event()
    running._renders.submit(busy.wait)  # the device is busy: requests wait their turn
    query = "x0=-0.5&x1=0.5&y0=-0.5&y1=0.5&size=48&client=page&ticket=t7"

    async def page() -> tuple[int, dict]:  # type: ignore[type-arg]
        async with aiohttp.ClientSession() as session:
            live = await session.ws_connect(running.url + "api/live?client=page")
            pushed = json.loads((await live.receive()).data)  # the state, on connecting
            waiting = asyncio.ensure_future(session.get(running.url + "api/render?" + query))
            await asyncio.sleep(0.3)  # the request waits for the device
            await live.send_str(json.dumps({"cancel": ["t7"]}))
            await asyncio.sleep(0.2)
            busy.set()
            reply = await waiting
            await live.close()
            return reply.status, pushed

    status, pushed = asyncio.run(page())
    assert pushed["version"] >= 1
    assert status == 409
    assert state(running.url)["last"] == before  # nothing was rendered for it
    assert get(running.url + "api/render?x0=-1&x1=1&y0=-1&y1=1&size=16")[0] == 200


def test_the_url_names_the_port_bound(tmp_path: Path) -> None:
    program = tmp_path / "hi.vm"
    shutil.copy(shared_path("models/hi.vm"), program)
    running = _viewer.serve(program, host="0.0.0.0", port=0)  # all interfaces, a free port
    try:
        host, port = running.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        assert host == "0.0.0.0"
        assert int(port) == running.port > 0
        assert get(f"http://127.0.0.1:{port}/api/state")[0] == 200
    finally:
        running.close()


def test_a_new_programs_first_view_is_drawn_unseen_before_the_browser_asks(
    tmp_path: Path,
) -> None:
    # As each new program is read, the server draws the page's first view in its render
    # thread and throws it away: the kernels load and a solid's compiled closures (one
    # per shape: every turned view's) compile before the first request, which then
    # costs what any view does. No render's figures are reported for it.
    from prospero_jax.renderers import compiled_tier

    bear = tmp_path / "bear.vm"
    shutil.copy(shared_path("models/bear.vm"), bear)
    turned = pj.View(8, rotation=pj.rotation(30.0, 10.0)).pose(pj.load(bear))[0]
    compiled_tier._firsts_kernels.pop(compiled_tier.shaped(turned).key, None)
    running = _viewer.serve(bear)
    try:
        assert running.prepared.wait(120)
        assert state(running.url)["last"] == {}
        assert compiled_tier.shaped(turned).key in compiled_tier._firsts_kernels
    finally:
        running.close()


def test_the_prepared_first_view_is_the_one_the_page_asks_for_first() -> None:
    page = _viewer.PAGE.read_text()
    x0, x1, y0, y1 = _viewer.FIRST_VIEW.region
    assert (x1 - x0) / 2 == (y1 - y0) / 2 == 1
    assert x0 + x1 == y0 + y1 == 0
    assert "let view = { cx: 0, cy: 0, half: 1, yaw: 0, pitch: 0 };" in page
    assert f"Math.min({_viewer.FIRST_VIEW.size}, screen())" in page
    assert _viewer.FIRST_TURN == (0.0, 0.0)
