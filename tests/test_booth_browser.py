"""The booth in headless Chromium (real browser, fake camera): what an event needs to hold up.

Two live visitors do not slow a photo conversion beyond twice its solo time; the shared styles'
index is built ahead and the map opens at once; bad uploads leave the panel usable with one
readable line; a phone shows the camera without scrolling; the readout has numbers below
0.5 fps; the time cap holds for a script calling the live endpoint. The server, browser and
helpers are ``tests/test_browser.py``'s. Screenshots go to ``artifacts/screenshots/``.
"""
from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from demos.booth import clock_text
from tests.fake_camera import make_camera_clip
from tests.test_browser import (CHROMIUM, FLAGS, SHOTS, WAIT_MS, Server, browser, next_frame,  # noqa: F401
                                open_page, playwright, server, shot, start_camera)
from tests.test_demo import bomb_png, visible_stylizer

from demos.app import LINE  # after test_browser, which skips without gradio

pytestmark = pytest.mark.browser

PHONE, DESKTOP = (412, 900), (1280, 800)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tests' tiny nets on one thread, also where no ``server`` fixture set it (the index of
    the shared styles): on the shared 2 cores a second OpenMP thread waits to be scheduled at
    every layer (the index took 150 s instead of 15 s while other work ran)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def convert_photo(page, photo) -> float:
    """In the File tab, upload ``photo`` (unless it is there), click Stylize, wait for the
    download link: seconds from the click to the result."""
    page.get_by_role("tab", name="File").click()
    page.locator("#convert").wait_for(state="visible")
    if not page.locator(f"#file-in [aria-label='{photo.name}']").count():
        page.locator("#file-in input[type=file]").set_input_files(str(photo))
        page.wait_for_selector(f"#file-in [aria-label='{photo.name}']")
    old = page.get_attribute("#download a[download]", "href") if page.locator("#download a[download]").count() else None
    t0 = time.perf_counter()
    page.locator("#convert").click()
    page.wait_for_function("old => { const a = document.querySelector('#download a[download]');"
                           " return a && a.href && a.href !== old; }", arg=old)
    seconds = time.perf_counter() - t0
    status = page.locator("#file-status").inner_text()
    assert "Done in" in status
    print(f"photo: {seconds:.2f} s from the click; {status}")
    return seconds


@pytest.fixture(scope="module")
def phone_cameras(playwright, tmp_path_factory):  # noqa: F811
    """A browser whose fake camera is 160x120, at a lower CPU priority (nice 10): the visitors'
    phones would do this work on their own cores; here they share the server's two, where two
    camera pages take about half a core even while the server paces them for a job."""
    folder = tmp_path_factory.mktemp("camera")
    clip = make_camera_clip(folder / "small.y4m", width=160, height=120)
    niced = folder / "chromium-niced"
    niced.write_text(f'#!/bin/sh\nexec nice -n 10 {CHROMIUM} "$@"\n')
    niced.chmod(0o755)
    b = playwright.chromium.launch(executable_path=str(niced), headless=True,
                                   args=FLAGS + [f"--use-file-for-fake-video-capture={clip}"])
    yield b
    b.close()


def test_two_live_visitors_do_not_hold_up_a_photo(browser, phone_cameras, server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(server.demo, "file_side", 2048)  # a job of seconds, network work in it, as with a real model
    rng = np.random.default_rng(0)
    photo = tmp_path / "holiday.jpg"
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(photo, quality=90)  # a phone photo
    page = open_page(browser, server)
    cams = []
    try:
        convert_photo(page, photo)  # warm-up: first conversion of this size
        solo = [convert_photo(page, photo) for _ in range(2)]
        cams = [open_page(phone_cameras, server) for _ in range(2)]
        srcs = []
        for cam in cams:
            start_camera(cam)
            srcs.append(next_frame(cam))
        busy = []
        for _ in range(3):
            busy.append(convert_photo(page, photo))
            for i, cam in enumerate(cams):  # both cameras keep streaming meanwhile
                srcs[i] = next_frame(cam, srcs[i])
        shot(page, "photo_beside_two_cameras.png")
    finally:
        for p in [page, *cams]:
            p.close()
    # The best of two alone and of three beside the cameras: the 2-core machine is shared (other
    # work, and the Chromium pages that stand in for the visitors' phones), and a passing spike is
    # not the app's doing (one CI run measured 1.97 s against 0.90 s with the best of two).
    print(f"photo: solo {solo} s, beside two live cameras {busy} s")
    assert min(busy) <= 2 * min(solo), (solo, busy)


def open_map(page, srv):
    """Open the Style map tab; wait until the map has loaded and the page has scrolled it to
    the selected style. -> (the map's img element, the server's StyleMap)."""
    page.wait_for_selector("#styles .thumbnail-item")
    page.get_by_role("tab", name="Style map").click()
    img = page.wait_for_selector("#stylemap img")
    m = srv.demo.style_map()
    page.wait_for_function("() => { const i = document.querySelector('#stylemap img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    return img, m


def in_view(page, selector: str, xy) -> bool:
    """True when the map's point ``xy`` lies inside the visible part of ``selector``'s box."""
    return page.evaluate("([s, p]) => { const w = document.querySelector(s), i = w.querySelector('img');"
                         " const a = w.getBoundingClientRect(), b = i.getBoundingClientRect();"
                         " const x = b.left + p[0], y = b.top + p[1];"
                         " return x >= a.left && x <= a.right && y >= a.top && y <= a.bottom; }",
                         [selector, [float(xy[0]), float(xy[1])]])


@pytest.mark.slow
def test_the_shared_styles_index_is_built_ahead_and_the_map_opens_at_once(browser, shared_data, tmp_path,  # noqa: F811
                                                                         monkeypatch):
    from demos import stylemap
    from realtime.catalog import StyleCatalog

    styles = shared_data / "styles"
    codes, thumbs = tmp_path / "codes", tmp_path / "thumbs"
    ahead = StyleCatalog(visible_stylizer(), styles_dir=styles, cache_dir=codes, thumb_dir=thumbs)
    report = ahead.index()  # what `rtstyle styles --index` does, with the test network
    assert report.failed == 0 and report.encoded == report.styles > 400
    srv = Server(tmp_path, styles, code_cache=codes, thumb_cache=thumbs)
    work = []  # opening the map must neither encode a style nor run t-SNE: only the picture travels
    monkeypatch.setattr(srv.demo.library.stylizer, "encode_style", lambda *a, **k: work.append("encode"))
    monkeypatch.setattr(stylemap, "tsne", lambda *a, **k: work.append("t-SNE"))
    try:
        assert srv.demo.index_report.encoded == 0  # start-up found every code in the index
        assert len({s.label for s in srv.demo.library.styles}) == len(srv.demo.library.styles)  # distinct names
        mosaic = srv.demo.library.default.key
        for viewport in (PHONE, DESKTOP):  # the map at its own size: thumbnails readable on both
            page = open_page(browser, srv, viewport)
            try:
                img, m = open_map(page, srv)
                box = img.bounding_box()
                assert (box["width"], box["height"]) == (m.base.shape[1], m.base.shape[0]), (viewport, box)
                assert page.locator("#stylemap-wrap").bounding_box()["width"] < m.base.shape[1]  # it scrolls
                page.wait_for_function("() => document.querySelector('#stylemap-wrap').scrollTop > 0"
                                       " || document.querySelector('#stylemap-wrap').scrollLeft > 0")
                assert in_view(page, "#stylemap-wrap", m.points[m.keys.index(mosaic)]), viewport
                shot(page, f"map_shared_styles_{viewport[0]}.png")
            finally:
                page.close()
        assert work == []
        page = open_page(browser, srv, DESKTOP)
        try:
            img, m = open_map(page, srv)
            # a click on the last style selects it and the gallery scrolls to it; the map is
            # shown at its own size, so the map's pixels are the click's (Playwright scrolls
            # the point into view)
            k = len(m.keys) - 1
            label = srv.demo.library.by_key[m.keys[k]].label
            before = img.get_attribute("src")
            img.click(position={"x": float(m.points[k][0]), "y": float(m.points[k][1])})
            page.wait_for_function("t => document.querySelector('#selection').innerText.trim() === t",
                                   arg=f"Style: {label}")
            page.wait_for_function(
                "() => { const s = document.querySelector('#styles .thumbnail-item.selected');"
                " const w = document.querySelector('#styles .grid-wrap'); if (!s || !w) return false;"
                " const a = s.getBoundingClientRect(), b = w.getBoundingClientRect();"
                " return a.top >= b.top - 1 && a.bottom <= b.bottom + 1; }")
            page.wait_for_function("old => document.querySelector('#stylemap img')?.src !== old", arg=before)
            # the gap between two neighbours in a row blends them, half and half
            a, b = next((a, b) for a in range(len(m.keys)) for b in range(len(m.keys))
                        if m.points[b][1] == m.points[a][1] and m.points[b][0] - m.points[a][0] == stylemap.CELL[0])
            mid = (m.points[a] + m.points[b]) / 2
            first, other, weight = stylemap.pick(m.points, tuple(mid), m.thumb)
            assert {first, other} == {a, b} and weight == 0.5
            names = [srv.demo.library.by_key[m.keys[i]].label for i in (first, other)]
            img.click(position={"x": float(mid[0]), "y": float(mid[1])})
            page.wait_for_function("t => document.querySelector('#selection').innerText.trim() === t",
                                   arg=f"Style: {names[0]} 50 % + {names[1]} 50 %")
            # the filter narrows a gallery of hundreds to a few
            word = label.split()[0]
            page.locator("#search input, #search textarea").first.fill(word)
            want = sum(word.lower() in s.label.lower() for s in srv.demo.library.styles)
            page.wait_for_function("n => document.querySelectorAll('#styles .thumbnail-item').length === n", arg=want)
        finally:
            page.close()
    finally:
        srv.blocks.close()


def upload_style(page, path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator("#style-upload").click()
    chooser.value.set_files(str(path))


def test_bad_style_uploads_leave_the_panel_usable_with_one_readable_line(browser, server, tmp_path):  # noqa: F811
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    bomb = bomb_png(tmp_path / "huge.png")
    good = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(good)
    page = open_page(browser, server)
    try:
        page.wait_for_selector("#styles .thumbnail-item")
        count = page.locator("#styles .thumbnail-item").count()
        assert count == len(server.demo.library.styles)
        for path, words in ((text, "notes.png is not a picture"), (bomb, "huge.png is 15000x15000 pixels")):
            upload_style(page, path)
            page.wait_for_function("w => document.querySelector('#upload-note').innerText.includes(w)", arg=words)
            note = page.locator("#upload-note").inner_text()
            assert note.startswith("⚠") and "ref " in note and str(tmp_path) not in note
            panel = page.locator("#styles").inner_text() + page.locator("#selection").inner_text()
            assert "Error" not in panel and page.locator("#styles .thumbnail-item").count() == count
            assert page.locator("#selection").inner_text().strip() == "Style: mosaic"
        shot(page, "bad_upload.png")
        page.locator("#styles .thumbnail-item").nth(3).click()  # the panel still works
        page.wait_for_function("() => document.querySelector('#selection').innerText.includes('ink')")
        upload_style(page, good)
        page.wait_for_function("() => document.querySelector('#upload-note').innerText.includes('Added')")
        page.wait_for_function("n => document.querySelectorAll('#styles .thumbnail-item').length === n", arg=count + 1)
        assert page.locator("#styles .thumbnail-item").first.get_attribute("class").count("selected")
        # the same bomb in the File tab: one line there too
        page.get_by_role("tab", name="File").click()
        page.locator("#file-in input[type=file]").set_input_files(str(bomb))
        page.wait_for_selector("#file-in [aria-label='huge.png']")
        page.locator("#convert").click()
        page.wait_for_function("() => document.querySelector('#file-status').innerText.includes('15000x15000')")
        assert "Error" not in page.locator("#file-status").inner_text()
    finally:
        page.close()


def test_a_phone_shows_the_camera_and_result_first_and_the_whole_gallery_width(browser, server):  # noqa: F811
    for viewport, name in ((PHONE, "booth-phone.png"), (DESKTOP, "booth-desktop.png")):
        page = open_page(browser, server, viewport)
        try:
            start_camera(page)
            next_frame(page)
            page.wait_for_function("() => document.querySelector('#readout').innerText.includes('fps')")
            cam = page.locator("#webcam").bounding_box()
            assert page.evaluate("() => window.scrollY") == 0
            assert cam["y"] >= 0 and cam["y"] + cam["height"] <= viewport[1], cam  # no scrolling
            assert page.locator("#live-status").bounding_box()["y"] < cam["y"]
            # between frames: Gradio's pending state swaps the Stop button for Record and puts a
            # timer in the status while each frame is on its way (docs/ shows the steady state)
            page.wait_for_function("() => document.querySelector('#webcam').innerText.includes('Stop')"
                                   " && document.querySelector('#live-status').innerText.trim().startsWith('●')")
            shot(page, name)
            if viewport == PHONE:  # the controls follow; no gallery column is cut off
                grid = page.locator("#styles .grid-wrap").bounding_box()
                for box in page.locator("#styles .thumbnail-item").evaluate_all(
                        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right]; })"):
                    assert grid["x"] <= box[0] and box[1] <= grid["x"] + grid["width"] + 1, (box, grid)
                assert page.locator("#styles").bounding_box()["y"] > cam["y"]
        finally:
            page.close()


def test_the_readout_shows_numbers_below_half_a_frame_a_second(browser, server, monkeypatch):  # noqa: F811
    real = server.demo._stylize

    def slow(*args, **kwargs):  # a network that takes 2.5 s a frame (a big model on a small CPU)
        time.sleep(2.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(server.demo, "_stylize", slow)
    page = open_page(browser, server)
    try:
        start_camera(page)
        page.wait_for_function("() => /\\b0\\.[0-4]\\d fps/.test(document.querySelector('#readout').innerText)",
                               timeout=60_000)
        text = page.locator("#readout").inner_text()
        fps = float(re.search(r"(\d+\.\d+) fps", text).group(1))
        assert 0 < fps < 0.5 and re.search(r"p50 \d+ ms", text), text
        shot(page, "slow_readout.png")
    finally:
        page.close()
        monkeypatch.undo()
        server.fresh_seats()


def test_the_blend_label_follows_the_slider_while_it_is_dragged(browser, server):  # noqa: F811
    page = open_page(browser, server)
    try:
        page.locator("#second input").click()
        page.get_by_role("option", name="waves", exact=True).click()
        page.wait_for_function("() => document.querySelector('#selection').innerText.includes('waves 50 %')")
        track = page.locator("#mix input[type=range]").bounding_box()
        y = track["y"] + track["height"] / 2
        page.mouse.move(track["x"] + track["width"] * 0.5, y)
        page.mouse.down()
        page.mouse.move(track["x"] + track["width"] * 0.85, y, steps=8)
        # the label has followed while the button is still held (the drag has not ended)
        page.wait_for_function("() => /mosaic \\d+ % \\+ waves (7|8|9)\\d %/"
                               ".test(document.querySelector('#selection').innerText)", timeout=10_000)
        page.mouse.up()
    finally:
        page.close()


def api_call(srv, frame: np.ndarray, endpoint: str = "live_frame") -> tuple[str, object]:
    """One REST call to a live endpoint, as a script makes it (each call a new session) ->
    (the event that ends it, "complete" or "error"; its data: [image, status, readout, webcam]
    or the error's text). A call still unanswered after ``WAIT_MS`` fails the test (Gradio's
    heartbeats keep the connection open, so the socket's timeout alone would not)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    body = json.dumps({"data": [{"url": url, "meta": {"_type": "gradio.FileData"}}, 1.0, False, 0.0, "", 0.5]})
    req = urllib.request.Request(srv.url + f"gradio_api/call/{endpoint}", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        event = json.loads(r.read())["event_id"]
    deadline, kind = time.monotonic() + WAIT_MS / 1000, None
    with urllib.request.urlopen(srv.url + f"gradio_api/call/{endpoint}/{event}", timeout=30) as r:
        for line in r:
            assert time.monotonic() < deadline, f"{endpoint}: no answer within {WAIT_MS} ms (a live slot held?)"
            line = line.decode().strip()
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                return kind, json.loads(line[5:])
    raise AssertionError(f"{endpoint}: the stream ended without an answer")


def test_the_time_cap_holds_through_the_api_and_no_call_keeps_a_live_slot(browser, server, monkeypatch):  # noqa: F811
    """A script's calls from one address add up to one visit, capped by the clock; each call
    (and a script's call to the page's stream, refused) frees its live slot when answered: more
    calls than the live group has slots all get their answer."""
    now = [1000.0]  # the demo's clock, moved by the test: no waiting for the cap
    monkeypatch.setattr(server.demo, "clock", lambda: now[0])
    monkeypatch.setattr(server.demo.seats, "cap_s", 10.0)
    slots = server.cfg.concurrency + LINE
    frame = np.full((48, 64, 3), 120, np.uint8)
    try:
        for _ in range(slots + 1):
            kind, text = api_call(server, frame, "live_stream")
            assert kind == "error" and "/live_frame" in str(text), (kind, text)
        for i in range(slots + 1):  # a call each 0.5 s: the visit goes on (a seat lapses after 3 s idle)
            now[0] = 1000.0 + 0.5 * i
            kind, out = api_call(server, frame)
            assert kind == "complete" and isinstance(out[0], dict) and "Live" in out[1], (i, out)
        assert f"{clock_text(10.0 - 0.5 * slots)} of your turn left" in out[1]
        now[0] = 1000.0 + 10.0  # ten seconds after the first call, gaps included: over
        for later in (0.0, 9.0):  # the address's next visit may start one cap after this one ended
            now[0] += later
            kind, out = api_call(server, frame)
            assert kind == "complete" and "turn is over" in out[1], out
            assert not isinstance(out[0], dict) or "path" not in out[0]  # no picture after the cap
        page = open_page(browser, server)  # a visitor's page is a visit of its own and finds a slot
        try:
            start_camera(page)
            next_frame(page)
        finally:
            page.close()
    finally:
        monkeypatch.undo()
        server.fresh_seats()
