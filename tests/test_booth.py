"""Live seats, the line, per-client time caps and failure reports (``demos/booth.py``)."""
from __future__ import annotations

import logging

import pytest

from demos.booth import Admission, LiveSeats, report, status_text
from realtime import UserError


def test_two_seats_then_a_line_in_arrival_order_with_an_honest_longest_wait():
    seats = LiveSeats(2, cap_s=300, idle_s=1000)  # nobody leaves early here
    assert seats.claim("a", 0).state == "live"
    assert seats.claim("b", 100).state == "live"
    c = seats.claim("c", 120)
    d = seats.claim("d", 121)
    assert (c.state, c.place, d.place) == ("waiting", 1, 2)
    assert c.wait_s == pytest.approx(180)  # a's visit ends at 300
    assert d.wait_s == pytest.approx(279)  # b's at 400
    e = seats.claim("e", 121)
    assert e.place == 3 and e.wait_s == pytest.approx(179 + 300)  # c takes a's seat in 179 s, for 300 s
    assert seats.counts() == (2, 3)


def test_a_seat_frees_at_the_cap_and_goes_to_the_first_in_line():
    seats = LiveSeats(1, cap_s=10, idle_s=3)
    for t in range(10):
        assert seats.claim("a", t).state == "live"
        assert seats.claim("b", t + 0.5).state == "waiting"
    assert seats.claim("a", 10) == Admission("over")
    assert seats.claim("b", 10.1).state == "live"
    assert seats.claim("a", 11) == Admission("over")  # a's visit stays over


def test_a_closed_tab_frees_its_seat_and_a_pause_does_not_reset_the_cap():
    seats = LiveSeats(1, cap_s=10, idle_s=3)
    for t in range(6):
        seats.claim("a", t)
    assert seats.claim("b", 9).state == "live"  # a sent nothing for 4 s: its seat went to b
    assert seats.claim("a", 9.5).state == "waiting"
    for t in range(10, 19):
        assert seats.claim("b", t).state == "live"
        assert seats.claim("a", t + 0.5).state == "waiting"
    assert seats.claim("b", 19).state == "over"
    again = seats.claim("a", 19.5)
    assert again.state == "live" and again.left_s == pytest.approx(5)  # 5 of a's 10 s were used


def test_a_script_that_stops_calling_frees_its_seat_and_its_visit_runs_on_meanwhile():
    seats = LiveSeats(1, cap_s=10, idle_s=3)
    for t in (0, 1):
        assert seats.claim("address:s", t, wall_clock=True).state == "live"
    assert seats.claim("b", 2).state == "waiting"
    assert seats.claim("b", 4.5).state == "live"  # the script sent nothing for 3.5 s: its seat went to b
    assert seats.claim("address:s", 5, wall_clock=True).state == "waiting"
    assert seats.claim("b", 6).state == "live"
    back = seats.claim("address:s", 9.5, wall_clock=True)  # b sent nothing for 3.5 s
    assert back.state == "live" and back.left_s == pytest.approx(0.5)  # wall clock: 9.5 s of its 10 are gone
    assert seats.claim("address:s", 10, wall_clock=True) == Admission("over")
    assert seats.counts() == (0, 0)


def test_status_lines_say_place_wait_and_time_left():
    assert "4:59 of your turn left" in status_text(Admission("live", left_s=299.4), 2)
    text = status_text(Admission("waiting", place=2, wait_s=95), 2)
    assert "all 2 camera seats are taken" in text and "number 2 in line" in text and "1:35 at most" in text
    assert "you are next" in status_text(Admission("waiting", place=1, wait_s=5), 1)


def test_a_failure_report_is_one_line_for_the_visitor_and_one_in_the_log(caplog, tmp_path):
    path = tmp_path / "secret" / "x.png"
    with caplog.at_level(logging.DEBUG, logger="demos.booth"):
        mine = report("style upload", UserError(f"{path}: not an image file"), "x.png", path)
        other = report("style upload", KeyError("boom"), "y.png")
    assert mine.startswith("⚠ x.png: not an image file (ref ") and str(tmp_path) not in mine
    assert "Something went wrong with y.png (KeyError)" in other
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings)
    assert len(debug) == 2 and all(r.exc_info for r in debug)
    ref = mine.rsplit("(ref ", 1)[1][:6]
    assert ref in warnings[0].getMessage() and ref in debug[0].getMessage()


def test_rtstyle_styles_index_computes_every_code_ahead_for_the_default_models_encoder(tmp_path, monkeypatch,
                                                                                      capsys, caplog):
    """``rtstyle styles --index DIR`` with the registry's default model: a code for every style
    (the built-ins and DIR's images) in the cache folder named by that model's encoder, and a
    thumbnail per image; a second run finds them all; an unreadable image is skipped, said once."""
    import numpy as np
    import torch
    from PIL import Image

    from realtime import load_model
    from realtime.artworks import BUILTINS
    from realtime.catalog import default_code_cache
    from realtime.cli import EXIT_ERROR, main

    styles = tmp_path / "styles"
    styles.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 64, 3), dtype=np.uint8)).save(styles / f"t__s{i}.png")
    (styles / "t__broken.jpg").write_text("not a picture")
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    try:
        with caplog.at_level(logging.WARNING, logger="realtime.catalog"):
            assert main(["styles", "--index", str(styles)]) == 0
        first = capsys.readouterr().err
        assert main(["styles", "--index", str(styles)]) == 0
        second = capsys.readouterr().err
        assert main(["styles", "--index", str(tmp_path / "nowhere")]) == EXIT_ERROR
        assert "not a directory" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)  # the index runs on one thread
    total = len(BUILTINS) + 3
    assert f"{total} styles indexed" in first and f"({total} encoded, 0 failed)" in first, first
    assert f"{total} styles indexed" in second and "(0 encoded, 0 failed)" in second, second
    codes = default_code_cache(load_model())  # the default model's encoder names the folder
    assert sorted(p.parent for p in (tmp_path / "cache" / "style-codes").rglob("*.npz")) == [codes] * total
    assert len(list((tmp_path / "cache" / "style-thumbs").glob("*.png"))) == 3
    assert any("t__broken.jpg" in r.getMessage() for r in caplog.records)


def test_serve_builds_the_index_at_start_up_and_logs_its_progress(tmp_path, caplog):
    pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'rtstyle[demo]'")
    import numpy as np
    from PIL import Image

    from demos.app import StyleDemo, Visitor
    from realtime.serve import ServeConfig
    from tests.test_demo import visible_stylizer

    styles = tmp_path / "styles"
    styles.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(styles / f"t__plain{i}.png")
    demo = StyleDemo(visible_stylizer(), ServeConfig(max_side=64, styles_dir=styles), code_cache=tmp_path / "codes")
    total = len(demo.library.styles)
    assert demo.open_map(Visitor(), "", 0.5)[1].startswith("The map is being prepared: 0 of")
    with caplog.at_level(logging.INFO, logger="demos.app"):
        demo.start_index().join(timeout=120)
    lines = [r.getMessage() for r in caplog.records if r.name == "demos.app"]
    assert f"styles: {total} styles, {total - 1} to encode" in lines[0]  # the default style is encoded first
    assert any(line.startswith(f"styles: {total}/{total} ready") for line in lines), lines
    assert "index and map ready" in lines[-1] and demo.index_report.encoded == total - 1
    image, note = demo.open_map(Visitor(), "", 0.5)
    assert note == "" and image.ndim == 3
    assert len(list((tmp_path / "codes").glob("*.npz"))) == total


def test_a_style_is_encoded_once_from_a_small_copy(tmp_path, monkeypatch):
    """One encoder pass a style, on a copy with the shorter side ``STYLE_SIZE``; then the code
    comes from memory, or from the disk cache for a new catalogue."""
    import numpy as np
    from PIL import Image

    from realtime import load_model
    from realtime.catalog import STYLE_SIZE, StyleCatalog

    styles = tmp_path / "styles"
    styles.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (900, 600, 3), dtype=np.uint8)).save(
        styles / "t__tall.png")
    stylizer = load_model()
    shapes = []
    real = stylizer.encode_style
    monkeypatch.setattr(stylizer, "encode_style", lambda rgb: shapes.append(rgb.shape) or real(rgb))
    for _ in range(2):
        catalog = StyleCatalog(stylizer, styles_dir=styles, cache_dir=tmp_path / "codes")
        style = catalog.by_key["file:t__tall.png"]
        first, again = catalog.code(style), catalog.code(style)
        assert again is first
    assert shapes == [(STYLE_SIZE * 3 // 2, STYLE_SIZE, 3)]
