"""The Gradio demo's handlers, called as plain functions (no browser), and ``rtstyle serve``.

The network is a tiny random pair whose decoder is scaled so its output *shows* the style
(see ``visible_stylizer``): fast on a CPU, and a style switch visibly changes the frames.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'rtstyle[demo]'")

from demos import app, stylemap  # noqa: E402
from demos.app import StyleDemo, Visitor, build_app  # noqa: E402
from realtime.catalog import StyleCatalog  # noqa: E402
from realtime import serve  # noqa: E402
from realtime.adain import adain  # noqa: E402
from realtime.model import Decoder, Encoder, Widths  # noqa: E402
from realtime.serve import ServeConfig  # noqa: E402
from realtime.styles import encode_style, load_style_image  # noqa: E402
from realtime.stylizer import StyleSettings, Stylizer  # noqa: E402
from tests.fake_camera import camera_frame  # noqa: E402
from tests.media import make_clip, read_back  # noqa: E402

TINY = Widths.scaled(16)


def visible_stylizer() -> Stylizer:
    """A tiny random encoder/decoder pair whose frames depend on the style. A random decoder at
    the default init is dead after its ReLUs (a flat frame whatever the style), so the decoder is
    He-initialized and its last layer scaled so a stylized frame has mean 0.5, std 0.2."""
    torch.manual_seed(1)
    enc = Encoder(TINY).eval()
    torch.manual_seed(2)
    dec = Decoder(TINY).eval()
    with torch.no_grad():
        for layer in dec.body:
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
        frames = torch.from_numpy(np.stack([camera_frame(i, 64, 48) for i in range(4)]))
        code = encode_style(enc, load_style_image("mosaic", 128))
        x = dec.decode_float(adain(enc(frames), code.mean, code.std))
        m, sd = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
        last = dec.body[-1]
        k = 0.2 / sd
        last.weight.mul_(k.view(-1, 1, 1, 1))
        last.bias.copy_(0.5 + (last.bias - m) * k)
    return Stylizer(enc, dec, device="cpu")


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None})


def no_progress(*args, **kwargs) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny nets run ~50x faster on one thread than on two when the 2 cores are shared (the
    second OpenMP thread waits to be scheduled at every layer)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def demo() -> StyleDemo:
    """Shared by tests that only read it (each test makes its own Visitor)."""
    return StyleDemo(visible_stylizer(), ServeConfig(max_side=64, concurrency=1000), code_cache=None, clock=FakeClock())


@pytest.fixture
def fresh_demo() -> StyleDemo:
    return StyleDemo(visible_stylizer(), ServeConfig(max_side=64, time_cap_s=60, concurrency=1000), code_cache=None,
                     clock=FakeClock())


FRAME = camera_frame(3)  # (240, 320, 3), what a browser sends


def live(demo, visitor, *, alpha=1.0, keep=False, smooth=0.0, second="", weight=0.5, frame=FRAME):
    return demo.live_frame(frame, visitor, alpha, keep, smooth, second, weight)


# ----------------------------------------------------------------------------- live


def test_frame_handler_returns_a_stylized_frame_of_the_same_shape(demo):
    out, status, readout, cam = live(demo, Visitor())
    assert out.shape == FRAME.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - FRAME).mean() > 10  # not the camera frame
    assert cam == gr.skip()
    assert "camera 320×240, network 64×48" in readout and "of your turn left" in status


def test_readout_reports_fps_and_latency(demo):
    visitor = Visitor()
    for _ in range(3):
        demo.clock.t += 0.1
        _, _, readout, _ = live(demo, visitor)
    assert "9.9 fps" in readout or "10.0 fps" in readout
    assert "p50" in readout and "p95" in readout and " ms" in readout


def test_the_readout_shows_numbers_at_a_slow_rate_over_the_last_frames(demo):
    """Below 0.5 fps (a loaded CPU, a big network) the rate is measured over the last frames,
    not a time window that never holds two of them."""
    visitor = Visitor()
    _, _, readout, _ = live(demo, visitor)
    assert "first frame" in readout
    for _ in range(3):
        demo.clock.t += 3.0
        _, _, readout, _ = live(demo, visitor)
    assert "**0.33 fps**" in readout and "last 4 frames" in readout
    for _ in range(app.READOUT_FRAMES + 5):
        demo.clock.t += 0.5
        _, _, readout, _ = live(demo, visitor)
    assert "**2.0 fps**" in readout and f"last {app.READOUT_FRAMES} frames" in readout


def test_switching_style_changes_the_next_frame_and_back(demo):
    visitor = Visitor()
    first, _, _, _ = live(demo, visitor)
    index = [s.key for s in demo.styles(visitor)].index("builtin:ember")
    visitor, text = demo.select_style(visitor, "", 0.5, select(index))
    assert visitor.style == "builtin:ember" and "ember" in text
    other, _, _, _ = live(demo, visitor)
    assert np.abs(other.astype(int) - first).mean() > 2
    visitor.style = "builtin:mosaic"
    again, _, _, _ = live(demo, visitor)
    np.testing.assert_array_equal(again, first)


def test_alpha_and_colour_controls_apply_to_the_next_frame(demo):
    visitor = Visitor("builtin:ember")
    full, _, _, _ = live(demo, visitor)
    none, _, _, _ = live(demo, visitor, alpha=0.0)
    kept, _, _, _ = live(demo, visitor, keep=True)
    assert np.abs(none.astype(int) - full).mean() > 2 and np.abs(kept.astype(int) - full).mean() > 2


def test_mix_endpoints_equal_the_pure_styles_and_the_middle_interpolates(demo):
    visitor = Visitor()
    a = demo.mixed_code(visitor, "", 0.5)
    b = demo.library.code(demo.library.by_key["builtin:ink"])
    start = demo.mixed_code(visitor, "builtin:ink", 0.0)
    end = demo.mixed_code(visitor, "builtin:ink", 1.0)
    assert torch.equal(start.mean, a.mean) and torch.equal(start.std, a.std)
    assert torch.equal(end.mean, b.mean) and torch.equal(end.std, b.std)
    mid = demo.mixed_code(visitor, "builtin:ink", 0.25)
    torch.testing.assert_close(mid.mean, 0.75 * a.mean + 0.25 * b.mean)
    torch.testing.assert_close(mid.std, 0.75 * a.std + 0.25 * b.std)
    # and on the frames: the far end of the slider is the second style itself
    blended, _, _, _ = live(demo, visitor, second="builtin:ink", weight=1.0)
    pure, _, _, _ = live(demo, Visitor("builtin:ink"))
    np.testing.assert_array_equal(blended, pure)
    assert demo.describe(visitor, "builtin:ink", 0.25) == "Style: **mosaic** 75 % + **ink** 25 %"


def test_smoothing_follows_the_slider_and_restarts_on_a_new_look(demo, monkeypatch):
    visitor = Visitor()
    live(demo, visitor, smooth=0.8)
    smoother = visitor.smoother
    assert smoother is not None and smoother.strength == 0.8
    resets = []
    monkeypatch.setattr(smoother, "reset", lambda: resets.append(1))
    live(demo, visitor, smooth=0.5)
    assert smoother.strength == 0.5 and not resets
    live(demo, visitor, smooth=0.5, second="builtin:ink", weight=0.3)  # a blend is a new style
    visitor.style = "builtin:waves"
    live(demo, visitor, smooth=0.5, second="builtin:ink", weight=0.3)
    assert len(resets) == 2
    # the style strength, the blend's weight and the colour switch change the look too (a held
    # still background would keep the old one)
    live(demo, visitor, smooth=0.5, second="builtin:ink", weight=0.4)
    live(demo, visitor, smooth=0.5, second="builtin:ink", weight=0.4, alpha=0.6)
    live(demo, visitor, smooth=0.5, second="builtin:ink", weight=0.4, alpha=0.6, keep=True)
    assert len(resets) == 5
    live(demo, visitor, smooth=0.5, second="builtin:ink", weight=0.4, alpha=0.6, keep=True)
    assert len(resets) == 5  # nothing changed: no reset
    live(demo, visitor, smooth=0.0)
    assert visitor.smoother is None


def test_a_failing_frame_is_shown_unstyled_logged_once_and_the_stream_goes_on(fresh_demo, monkeypatch, caplog):
    visitor = Visitor()

    def broken(*args, **kwargs):
        raise RuntimeError("engine exploded")

    good = fresh_demo.engine
    monkeypatch.setattr(fresh_demo, "engine", lambda name: (broken, fresh_demo.library))
    with caplog.at_level(logging.DEBUG, logger="demos.booth"):
        for _ in range(3):
            out, status, readout, cam = live(fresh_demo, visitor)
            np.testing.assert_array_equal(out, FRAME)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None and "engine exploded" in lines[0].getMessage()
    ref = lines[0].getMessage().split("[ref ")[1][:6]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 1 and debug[0].exc_info is not None and ref in debug[0].getMessage()
    assert "engine exploded" in readout and "3 frames so far" in readout and "goes on" in readout
    monkeypatch.setattr(fresh_demo, "engine", good)
    out, _, readout, _ = live(fresh_demo, visitor)
    assert np.abs(out.astype(int) - FRAME).mean() > 10 and "⚠" not in readout


def test_the_time_cap_is_wall_clock_and_switches_the_camera_off(fresh_demo, monkeypatch):
    visitor, clock = Visitor(), fresh_demo.clock
    live(fresh_demo, visitor)
    for _ in range(59):  # a frame a second: the seat stays taken
        clock.t += 1.0
        out, status, readout, cam = live(fresh_demo, visitor)
    assert isinstance(out, np.ndarray) and "0:01 of your turn left" in status
    calls = []
    monkeypatch.setattr(fresh_demo, "engine", lambda *a, **k: calls.append(1))
    clock.t += 1.0
    out, status, readout, cam = live(fresh_demo, visitor)
    assert out == gr.skip() and cam == gr.update(visible=False) and not calls
    assert "turn is over" in status and "Reload" in status
    clock.t += 30.0  # still over: the camera stays off for this visit
    assert live(fresh_demo, visitor)[3] == gr.update(visible=False)


def test_visitors_share_the_engines_but_not_the_settings(demo):
    st = demo.stylizer
    codes = [demo.library.code(demo.library.by_key[k]) for k in ("builtin:mosaic", "builtin:ink")]
    engines = st.encoder_engine, st.decoder_engine
    frames = torch.from_numpy(FRAME)[None]
    a = st(frames, StyleSettings(codes[0], 1.0), 64)
    b = st(frames, StyleSettings(codes[1], 0.5, preserve_color=True), 64)
    assert (st.encoder_engine, st.decoder_engine) == engines  # switching style rebuilt nothing
    ref = visible_stylizer()  # a separate stylizer with the same weights and only b's settings
    assert torch.equal(b, ref(frames, StyleSettings(codes[1], 0.5, preserve_color=True), 64))
    assert torch.equal(a, ref(frames, StyleSettings(codes[0], 1.0), 64)) and not torch.equal(a, b)


# ----------------------------------------------------------------------------- styles


def test_gallery_holds_builtins_then_the_styles_dir(tmp_path, caplog):
    folder = tmp_path / "styles"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b__starry.jpg", "a__blue_waves.png", "c,d.png"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not a style")
    (folder / "broken.png").write_bytes(b"not a png")
    demo = StyleDemo(visible_stylizer(), ServeConfig(max_side=64, styles_dir=folder), code_cache=None)
    keys = [s.key for s in demo.library.styles]
    builtins = [k for k in keys if k.startswith("builtin:")]
    assert keys == builtins + ["file:a__blue_waves.png", "file:b__starry.jpg"]
    assert [s.label for s in demo.library.styles[-2:]] == ["blue waves", "starry"]
    assert "commas" in caplog.text and "broken.png" in caplog.text
    assert len(demo.gallery(None)) == len(keys) and demo.choices(None)[0] == ("none", "")
    out, _, _, _ = live(demo, Visitor("file:b__starry.jpg"))
    assert out.shape == FRAME.shape


def test_an_uploaded_style_is_encoded_selected_and_private(demo, tmp_path):
    visitor, other = Visitor(), Visitor()
    path = tmp_path / "my painting.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    gallery, second, visitor, text, note = demo.add_style(str(path), visitor, "", 0.5)
    key = visitor.style
    assert key.startswith("upload:") and "my_painting" in text and "first" in note
    # first in the gallery (in sight with hundreds of styles), and selected
    assert gallery["selected_index"] == 0 and len(gallery["value"]) == len(demo.library.styles) + 1
    assert gallery["value"][0][1] == "my_painting"
    assert ("my_painting", key) in second["choices"]
    assert key in demo.library._codes  # encoded once, now
    assert len(demo.gallery(other)) == len(demo.library.styles)  # other visitors do not see it
    out, _, _, _ = live(demo, visitor)
    assert np.abs(out.astype(int) - live(demo, Visitor())[0]).mean() > 1
    for i in range(app.MAX_UPLOADED_STYLES):
        Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(tmp_path / f"s{i}.png")
        demo.add_style(str(tmp_path / f"s{i}.png"), visitor, "", 0.5)
    assert len(visitor.uploads) == app.MAX_UPLOADED_STYLES and key not in visitor.uploads


def bomb_png(path: Path, side: int = 15_000) -> Path:
    """A valid PNG header declaring ``side`` x ``side`` pixels (225 MP for 15000) and a tiny body:
    what a decompression bomb looks like before anything is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def truncated_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    return path


@pytest.mark.parametrize("case", ["text", "bomb", "truncated"])
def test_a_bad_style_upload_is_one_line_and_changes_nothing_else(demo, tmp_path, case, caplog):
    bad = {"text": lambda: (tmp_path / "x.png").write_text("hello") and tmp_path / "x.png",
           "bomb": lambda: bomb_png(tmp_path / "x.png"),
           "truncated": lambda: truncated_png(tmp_path / "x.png"),
           }[case]()
    visitor = Visitor()
    with caplog.at_level(logging.WARNING, logger="demos.booth"):
        gallery, second, same, text, note = demo.add_style(str(bad), visitor, "", 0.5)
    assert (gallery, second, text) == (gr.skip(),) * 3 and same is visitor and not visitor.uploads
    assert note.startswith("⚠") and "x.png" in note and str(tmp_path) not in note and "(ref " in note
    assert {"text": "not a picture", "bomb": "15000x15000 pixels", "truncated": "truncated"}[case] in note
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None


def test_style_codes_are_cached_on_disk_and_a_corrupt_file_is_recomputed(tmp_path, caplog):
    stylizer = visible_stylizer()
    demo = StyleDemo(stylizer, ServeConfig(max_side=64), code_cache=tmp_path / "codes")
    style = demo.library.by_key["builtin:waves"]
    code = demo.library.code(style)
    files = list((tmp_path / "codes").glob("*.npz"))
    assert len(files) == 2  # the default style (warm-up) and this one
    library = StyleCatalog(demo.stylizer, cache_dir=tmp_path / "codes")
    calls = []
    library.stylizer = type("NoEncode", (), {"encode_style": lambda self, rgb: calls.append(1),
                                             "device": demo.stylizer.device,
                                             "code_type": demo.stylizer.code_type})()
    again = library.code(style)
    assert not calls and torch.equal(again.mean, code.mean) and torch.equal(again.std, code.std)
    for f in files:
        f.write_bytes(b"garbage")
    fresh = StyleCatalog(demo.stylizer, cache_dir=tmp_path / "codes")
    torch.testing.assert_close(fresh.code(style).mean, code.mean)
    assert "unreadable" in caplog.text


# ----------------------------------------------------------------------------- file tab


@pytest.fixture
def gradio_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    return cache


class Request:
    session_hash = "abc123def456"


def test_file_round_trip_keeps_the_audio(demo, tmp_path, gradio_cache):
    src = make_clip(tmp_path / "holiday clip.mp4", frames=10, audio=True)
    video, photo, download, status = demo.convert_file(str(src), Visitor(), 1.0, False, "builtin:ink", 0.3,
                                                       Request(), progress=no_progress)
    out = Path(download)
    assert out.parent.parent == gradio_cache and out.name == "holiday_clip-styled-abc123de.mp4"
    assert video["value"] == download and video["visible"] and not photo["visible"]
    got, want = read_back(out), read_back(src)
    assert got["frames"] == 10 and got["audio_packets"] == want["audio_packets"]
    assert got["times"] == want["times"]
    assert "10 frames, sound kept" in status and "ink" in status and status.startswith("Done in ")


def test_photo_round_trip(demo, tmp_path, gradio_cache):
    src = tmp_path / "me.png"
    Image.fromarray(camera_frame(0, 90, 60)).save(src)
    video, photo, download, status = demo.convert_file(str(src), Visitor(), 1.0, True, "", 0.5,
                                                       None, progress=no_progress)
    assert photo["visible"] and not video["visible"] and download.endswith("me-styled-local.png")
    assert np.asarray(Image.open(download)).shape == (60, 90, 3)


@pytest.mark.parametrize("case", ["too_long", "too_big", "not_media", "nothing", "bomb", "text_as_png"])
def test_file_limits_are_clear_errors(tmp_path, gradio_cache, case):
    demo = StyleDemo(visible_stylizer(), ServeConfig(max_side=64, max_duration_s=1.0, max_upload_mb=0.02),
                     code_cache=None)
    src = {
        "too_long": lambda: make_clip(tmp_path / "long.mp4", frames=50),  # 2 s at 25 fps
        "too_big": lambda: make_clip(tmp_path / "big.mp4", frames=20, width=320, height=240),  # ~30 KB
        "not_media": lambda: (tmp_path / "notes.mp4").write_bytes(b"hello" * 100) and tmp_path / "notes.mp4",
        "nothing": lambda: None,
        "bomb": lambda: bomb_png(tmp_path / "huge.png"),
        "text_as_png": lambda: (tmp_path / "notes.png").write_text("hello") and tmp_path / "notes.png",
    }[case]()
    if case == "too_big":
        assert src.stat().st_size > 0.02 * 2**20
    message = {"too_long": "lasts 2.0 s; the limit is 1 s", "too_big": "the limit is 0.02 MB",
               "not_media": "notes.mp4", "nothing": "Upload a video or a photo first",
               "bomb": "huge.png is 15000x15000 pixels", "text_as_png": "notes.png"}[case]
    video, photo, download, status = demo.convert_file(str(src) if src else None, Visitor(), 1.0, False, "",
                                                       0.5, None, progress=no_progress)
    assert (video, photo, download) == (gr.skip(),) * 3  # the result panel is left as it was
    assert status.startswith("⚠") and message in status and str(tmp_path) not in status
    assert not gradio_cache.exists() or not any(gradio_cache.rglob("*.*"))


def test_the_file_tab_converts_with_the_visitors_mixed_code(demo, tmp_path, gradio_cache, monkeypatch):
    """No detour through a --style string and temporary PNGs: the code the visitor sees live
    (primary style, blended with the second at the mix weight; uploads too) goes to convert."""
    import realtime.convert
    from realtime.adain import mix

    lib, visitor = demo.library, Visitor()
    mosaic, ink = (lib.code(lib.by_key[k]) for k in ("builtin:mosaic", "builtin:ink"))
    assert torch.equal(demo.mixed_code(visitor, "", 0.5).mean, mosaic.mean)
    assert torch.equal(demo.mixed_code(visitor, "builtin:ink", 0.0).mean, mosaic.mean)
    assert torch.allclose(demo.mixed_code(visitor, "builtin:ink", 1.0).mean, ink.mean)
    seen, real = [], realtime.convert.convert
    monkeypatch.setattr(realtime.convert, "convert", lambda cfg, st, code=None: seen.append(code) or real(cfg, st, code))
    src = tmp_path / "me.png"
    Image.fromarray(camera_frame(0, 64, 48)).save(src)
    demo.convert_file(str(src), visitor, 1.0, False, "builtin:ink", 0.25, None, progress=no_progress)
    want = mix([mosaic, ink], [0.75, 0.25])
    assert torch.allclose(seen[0].mean, want.mean) and torch.allclose(seen[0].std, want.std)
    rgb = camera_frame(1, 64, 48)
    style = StyleCatalog.upload(rgb, "mine")
    visitor.uploads[style.key] = (style, rgb, rgb)
    visitor.style = style.key
    demo.convert_file(str(src), visitor, 1.0, False, "", 0.5, None, progress=no_progress)
    assert torch.equal(seen[1].mean, demo.stylizer.encode_style(rgb).mean)


# ----------------------------------------------------------------------------- style map


def test_tsne_is_deterministic_and_keeps_clusters_apart():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 1.0, (20, 10)) for c in (-6, 0, 6)])
    y = stylemap.tsne(x)
    np.testing.assert_array_equal(y, stylemap.tsne(x))
    d = np.linalg.norm(y[:, None] - y[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    labels = np.repeat([0, 1, 2], 20)
    assert (labels[d.argmin(axis=1)] == labels).all()
    assert stylemap.tsne(x[:1]).shape == (1, 2) and stylemap.tsne(x[:2]).shape == (2, 2)


def test_the_layout_puts_every_style_in_its_own_cell_near_its_tsne_place():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(437, 2))
    points, size, thumb = stylemap.layout(e)
    assert thumb == stylemap.THUMB and len({tuple(p) for p in points}) == 437  # no two share a cell
    d = np.abs(points[:, None] - points[None])
    np.fill_diagonal(d[..., 0], np.inf)
    assert ((d[..., 0] >= stylemap.CELL[0]) | (d[..., 1] >= stylemap.CELL[1])).all()  # no overlap
    assert (points[:, 0] >= thumb / 2).all() and (points[:, 0] <= size[0] - thumb / 2).all()
    assert (points[:, 1] >= thumb / 2).all() and (points[:, 1] <= size[1] - thumb / 2).all()
    assert size[0] <= stylemap.MAP_WIDTH
    # the layout keeps the embedding's order along each axis, roughly
    assert np.corrcoef(e[:, 0], points[:, 0])[0, 1] > 0.9 and np.corrcoef(e[:, 1], points[:, 1])[0, 1] > 0.9


def test_pick_selects_the_nearest_and_blends_only_clearly_between_two():
    t = stylemap.THUMB
    points = np.array([[100.0, 100.0], [100.0 + stylemap.CELL[0], 100.0], [100.0, 400.0]])
    assert stylemap.pick(points, (110, 95), t) == (0, None, 0.0)  # on the thumbnail
    assert stylemap.pick(points, (100, 100 + t / 2 + 10), t) == (0, None, 0.0)  # on its name
    assert stylemap.pick(points, (40, 120), t) == (0, None, 0.0)  # off every tile, clearly nearer one
    gap = (points[0, 0] + points[1, 0]) / 2
    first, second, w = stylemap.pick(points, (gap, 100), t)  # the gap between two neighbours
    assert {first, second} == {0, 1} and w == pytest.approx(0.5)
    first, second, w = stylemap.pick(points, (gap - 3, 100), t)
    assert (first, second) == (0, 1) and 0.375 < w < 0.5
    # a mix drawn on the map is picked back as the same mix
    for m in (0.45, 0.5):
        p = stylemap.blend_point(points, 0, 1, m)
        assert stylemap.pick(points, tuple(p), t) == (0, 1, pytest.approx(m))


def test_the_map_is_drawn_with_the_index_and_a_click_selects_or_blends(fresh_demo):
    demo = fresh_demo
    image, note = demo.open_map(Visitor(), "", 0.5)
    assert image == gr.skip() and "being prepared: 0 of" in note  # nobody waits on a slot for it
    demo.start_index().join(timeout=120)
    image, note = demo.open_map(Visitor(), "", 0.5)
    m = demo.style_map()
    assert note == "" and image.shape == m.base.shape and image.dtype == np.uint8
    assert m.keys == [s.key for s in demo.library.styles] and demo.indexed[:2] == (len(m.keys),) * 2
    assert not np.array_equal(image, m.base)  # the current style is marked
    visitor = Visitor()
    visitor.query = "zzz"  # a filter that hides the clicked style is cleared
    k = m.keys.index("builtin:ink")
    marked, gallery, second, weight, visitor, text, query = demo.map_click(visitor, "", select(list(m.points[k])))
    assert visitor.style == "builtin:ink" and second == "" and query == "" and visitor.query == ""
    assert gallery["selected_index"] == k and weight == gr.skip() and text == "Style: **ink**"
    mid = (m.points[0] + m.points[1]) / 2
    first, other, w = stylemap.pick(m.points, tuple(mid), m.thumb)
    marked, gallery, second, weight, visitor, text, _ = demo.map_click(visitor, "", select([float(v) for v in mid]))
    assert visitor.style == m.keys[first] and second == (m.keys[other] if other is not None else "")
    if other is not None:
        assert weight == round(w, 2) and "%" in text


def test_the_gallery_filter_shows_matching_styles_and_selects_from_them(demo):
    visitor = Visitor()
    gallery, visitor, note = demo.search("ink", visitor)
    labels = [label for _, label in gallery["value"]]
    assert labels and all("ink" in label.lower() for label in labels) and "match" in note
    visitor, text = demo.select_style(visitor, "", 0.5, select(0))
    assert visitor.style == demo.shown(visitor)[0].key and "ink" in text.lower()
    gallery, visitor, note = demo.search("no such style", visitor)
    assert gallery["value"] == [] and note == "No style matches."
    gallery, visitor, note = demo.search("", visitor)
    assert len(gallery["value"]) == len(demo.library.styles) and note == ""


# ----------------------------------------------------------------------------- serve


def realtime_builtins():
    from realtime.styles import BUILTINS

    return BUILTINS


def parse_serve(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rtstyle")
    serve.register_cli(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_listens_on_loopback_by_default():
    args = parse_serve([])
    assert args.host == ServeConfig().host == "127.0.0.1" and args.port == 7860
    cfg = serve.config_from_args(args)
    assert not cfg.share and cfg.auth is None


def test_share_without_auth_is_refused_before_anything_loads(monkeypatch, capsys):
    monkeypatch.setattr("realtime.options.open_stylizer", lambda args: pytest.fail("weights loaded"))
    with pytest.raises(ValueError, match="--share .*needs --auth USER:PASSWORD"):
        serve.run(parse_serve(["--share"]))
    assert app.main(["--share"]) == 1
    assert "needs --auth" in capsys.readouterr().err
    assert serve.config_from_args(parse_serve(["--share", "--auth", "ann:pw"])).auth_pair() == ("ann", "pw")
    assert serve.config_from_args(parse_serve(["--max-side", "0"])).max_side == 0  # full size


@pytest.mark.parametrize("argv, message", [
    (["--auth", "ann"], "USER:PASSWORD"), (["--auth", ":pw"], "USER:PASSWORD"), (["--port", "0"], "--port"),
    (["--concurrency", "0"], "--concurrency"), (["--time-cap-s", "0"], "--time-cap-s"),
    (["--styles-dir", "/nonexistent"], "not a directory"), (["--max-side", "8"], "--max-side"),
])
def test_bad_serve_options_are_clear_errors(argv, message):
    with pytest.raises(ValueError, match=message):
        serve.config_from_args(parse_serve(argv))


def test_serve_loads_the_weights_and_launches_with_safe_settings(monkeypatch, tmp_path, test_decoder_file,
                                                                 gradio_cache):
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path / "cache"))
    seen = {}

    def fake_launch(self, **kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    assert serve.run(parse_serve(["--decoder", str(test_decoder_file), "--max-side", "32", "--concurrency", "3"])) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == 7860
    assert seen["allowed_paths"] == [] and seen["share"] is False and seen["auth"] is None
    assert seen["max_file_size"] == 50 * 2**20 and seen["show_error"] is False
    # the index is built in the background: every built-in's code goes to the cache, in one
    # folder named by the encoder's digest (a style code does not depend on the decoder)
    import threading

    for thread in threading.enumerate():
        if thread.name == "rtstyle-index":
            thread.join(timeout=120)
    folders = list((tmp_path / "cache" / "style-codes").iterdir())
    assert len(folders) == 1 and len(list(folders[0].glob("*.npz"))) == len(realtime_builtins())


def test_live_frames_and_jobs_have_separate_concurrency(gradio_cache):
    """Cameras never wait behind a conversion or an upload, nor these behind cameras; choosing
    styles, filtering and the map never queue at all."""
    cfg = ServeConfig(max_side=64, concurrency=2, jobs=1, time_cap_s=120, cache_age_s=900)
    blocks = build_app(visible_stylizer(), cfg, code_cache=None, index=False)
    fns = {fn.name: fn for fn in blocks.fns.values()}
    stream = fns["live_frame"]
    assert stream.concurrency_id == app.LIVE and stream.concurrency_limit == 2 + app.LINE
    assert stream.connection == "stream" and stream.time_limit == 120 and stream.stream_every == app.STREAM_EVERY
    for name in ("convert_file", "add_style", "choose_model"):
        assert fns[name].concurrency_id == app.JOBS and fns[name].concurrency_limit == 1, name
    for name in ("select_style", "search", "open_map", "map_click", "describe", "page_opened"):
        assert not fns[name].queue, name
    assert blocks.style_demo.seats.seats == 2
    assert blocks.delete_cache == (60, 900)


def test_a_visitor_switches_model_and_only_their_frames_change(fresh_demo):
    """The model switch: the next frame of that visitor goes through MicroAST (its own style
    codes), while another visitor keeps the served model."""
    visitor, other = Visitor(), Visitor()
    before, _, _, _ = live(fresh_demo, visitor)
    assert fresh_demo.model_names[0] == fresh_demo.served and "microast" in fresh_demo.model_names
    fresh_demo.choose_model(visitor, "microast")
    after, _, readout, _ = live(fresh_demo, visitor)
    stylizer, catalog = fresh_demo.engine("microast")
    assert stylizer.network.model == "microast" and catalog.stylizer is stylizer and "⚠" not in readout
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 5
    unchanged, _, _, _ = live(fresh_demo, other)
    np.testing.assert_array_equal(unchanged, before)
