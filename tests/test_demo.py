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
    return StyleDemo(visible_stylizer(), ServeConfig(max_side=64), code_cache=None, clock=FakeClock())


@pytest.fixture
def fresh_demo() -> StyleDemo:
    return StyleDemo(visible_stylizer(), ServeConfig(max_side=64, time_cap_s=60), code_cache=None,
                     clock=FakeClock())


FRAME = camera_frame(3)  # (240, 320, 3), what a browser sends


def live(demo, visitor, *, alpha=1.0, keep=False, smooth=0.0, second="", weight=0.5, frame=FRAME):
    return demo.live_frame(frame, visitor, alpha, keep, smooth, second, weight)


# ----------------------------------------------------------------------------- live


def test_frame_handler_returns_a_stylized_frame_of_the_same_shape(demo):
    out, readout, cam = live(demo, Visitor())
    assert out.shape == FRAME.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - FRAME).mean() > 10  # not the camera frame
    assert cam == gr.skip()
    assert "camera 320×240, network 64×48" in readout and "live time left" in readout


def test_readout_reports_fps_and_latency(demo):
    visitor = Visitor()
    for _ in range(3):
        demo.clock.t += 0.1
        _, readout, _ = live(demo, visitor)
    assert "9.9 fps" in readout or "10.0 fps" in readout
    assert "p50" in readout and "p95" in readout and " ms" in readout


def test_switching_style_changes_the_next_frame_and_back(demo):
    visitor = Visitor()
    first, _, _ = live(demo, visitor)
    index = [s.key for s in demo.styles(visitor)].index("builtin:ember")
    visitor, text = demo.select_style(visitor, "", 0.5, select(index))
    assert visitor.style == "builtin:ember" and "ember" in text
    other, _, _ = live(demo, visitor)
    assert np.abs(other.astype(int) - first).mean() > 2
    visitor.style = "builtin:mosaic"
    again, _, _ = live(demo, visitor)
    np.testing.assert_array_equal(again, first)


def test_alpha_and_colour_controls_apply_to_the_next_frame(demo):
    visitor = Visitor("builtin:ember")
    full, _, _ = live(demo, visitor)
    none, _, _ = live(demo, visitor, alpha=0.0)
    kept, _, _ = live(demo, visitor, keep=True)
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
    blended, _, _ = live(demo, visitor, second="builtin:ink", weight=1.0)
    pure, _, _ = live(demo, Visitor("builtin:ink"))
    np.testing.assert_array_equal(blended, pure)
    assert demo.describe(visitor, "builtin:ink", 0.25) == "Style: **mosaic** 75 % + **ink** 25 %"


def test_smoothing_follows_the_slider_and_restarts_on_a_style_switch(demo, monkeypatch):
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
    live(demo, visitor, smooth=0.0)
    assert visitor.smoother is None


def test_a_failing_frame_is_shown_unstyled_logged_once_and_the_stream_goes_on(fresh_demo, monkeypatch, caplog):
    visitor = Visitor()

    def broken(*args, **kwargs):
        raise RuntimeError("engine exploded")

    good = fresh_demo.engine
    monkeypatch.setattr(fresh_demo, "engine", lambda name: (broken, fresh_demo.library))
    with caplog.at_level(logging.ERROR, logger="demos.app"):
        for _ in range(3):
            out, readout, cam = live(fresh_demo, visitor)
            np.testing.assert_array_equal(out, FRAME)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "engine exploded" in readout and "3 frames so far" in readout and "goes on" in readout
    monkeypatch.setattr(fresh_demo, "engine", good)
    out, readout, _ = live(fresh_demo, visitor)
    assert np.abs(out.astype(int) - FRAME).mean() > 10 and "⚠" not in readout


def test_the_time_cap_is_wall_clock_and_switches_the_camera_off(fresh_demo, monkeypatch):
    visitor, clock = Visitor(), fresh_demo.clock
    live(fresh_demo, visitor)
    clock.t += 59.0
    out, readout, cam = live(fresh_demo, visitor)
    assert isinstance(out, np.ndarray) and "0:01 of live time left" in readout
    calls = []
    monkeypatch.setattr(fresh_demo, "engine", lambda *a, **k: calls.append(1))
    clock.t += 1.0
    out, readout, cam = live(fresh_demo, visitor)
    assert out == gr.skip() and cam == gr.update(visible=False) and not calls
    assert "time is up" in readout and "Reload" in readout


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
    out, _, _ = live(demo, Visitor("file:b__starry.jpg"))
    assert out.shape == FRAME.shape


def test_an_uploaded_style_is_encoded_selected_and_private(demo, tmp_path):
    visitor, other = Visitor(), Visitor()
    path = tmp_path / "my painting.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    gallery, second, visitor, text, cleared = demo.add_style(str(path), visitor, "", 0.5)
    key = visitor.style
    assert key.startswith("upload:") and cleared is None and "my_painting" in text
    assert gallery["selected_index"] == len(demo.library.styles) and len(gallery["value"]) == len(demo.library.styles) + 1
    assert ("my_painting", key) in second["choices"]
    assert key in demo.library._codes  # encoded once, now
    assert len(demo.gallery(other)) == len(demo.library.styles)  # other visitors do not see it
    out, _, _ = live(demo, visitor)
    assert np.abs(out.astype(int) - live(demo, Visitor())[0]).mean() > 1
    for i in range(app.MAX_UPLOADED_STYLES):
        Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(tmp_path / f"s{i}.png")
        demo.add_style(str(tmp_path / f"s{i}.png"), visitor, "", 0.5)
    assert len(visitor.uploads) == app.MAX_UPLOADED_STYLES and key not in visitor.uploads


def test_an_unreadable_style_upload_is_a_clear_error(demo, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    with pytest.raises(gr.Error, match="x.png") as e:
        demo.add_style(str(bad), Visitor(), "", 0.5)
    assert str(tmp_path) not in str(e.value)


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


@pytest.mark.parametrize("case", ["too_long", "too_big", "not_media", "nothing"])
def test_file_limits_are_clear_errors(tmp_path, gradio_cache, case):
    demo = StyleDemo(visible_stylizer(), ServeConfig(max_side=64, max_duration_s=1.0, max_upload_mb=0.02),
                     code_cache=None)
    src = {
        "too_long": lambda: make_clip(tmp_path / "long.mp4", frames=50),  # 2 s at 25 fps
        "too_big": lambda: make_clip(tmp_path / "big.mp4", frames=20, width=320, height=240),  # ~30 KB
        "not_media": lambda: (tmp_path / "notes.mp4").write_bytes(b"hello" * 100) and tmp_path / "notes.mp4",
        "nothing": lambda: None,
    }[case]()
    if case == "too_big":
        assert src.stat().st_size > 0.02 * 2**20
    message = {"too_long": "lasts 2.0 s; the limit is 1 s", "too_big": "the limit is 0.02 MB",
               "not_media": "notes.mp4", "nothing": "Upload a video or a photo first"}[case]
    with pytest.raises(gr.Error, match=message) as e:
        demo.convert_file(str(src) if src else None, Visitor(), 1.0, False, "", 0.5, None, progress=no_progress)
    assert str(tmp_path) not in str(e.value)
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


def test_pick_selects_within_a_thumbnail_and_blends_by_inverse_distance_between():
    points = np.array([[100.0, 100.0], [300.0, 100.0], [100.0, 400.0]])
    assert stylemap.pick(points, (110, 95), radius=20) == (0, None, 0.0)
    first, second, w = stylemap.pick(points, (200, 100), radius=20)
    assert {first, second} == {0, 1} and w == pytest.approx(0.5)
    assert stylemap.pick(points, (150, 100), radius=20) == (0, 1, pytest.approx(0.25))  # d1=50, d2=150
    # a mix drawn on the map is picked back as the same mix
    for m in (0.2, 0.35, 0.5):
        p = stylemap.blend_point(points, 0, 1, m)
        assert stylemap.pick(points, tuple(p), radius=20) == (0, 1, pytest.approx(m))


def test_the_map_lays_out_the_gallery_and_a_click_selects_or_blends(demo):
    steps = []
    image = demo.open_map(Visitor(), "", 0.5, progress=lambda *a, **k: steps.append(a[0]))
    m = demo.style_map()
    assert image.shape == (app.MAP_SIZE[1], app.MAP_SIZE[0], 3) and image.dtype == np.uint8
    assert m.keys == [s.key for s in demo.library.styles] and len(steps) == len(m.keys)
    assert (m.points >= 0).all() and (m.points[:, 0] <= app.MAP_SIZE[0]).all()
    assert not np.array_equal(image, m.base)  # the current style is marked
    visitor = Visitor()
    k = m.keys.index("builtin:ink")
    marked, gallery, second, weight, visitor, text = demo.map_click(visitor, select(list(m.points[k])))
    assert visitor.style == "builtin:ink" and second == "" and gallery["selected_index"] == k
    assert weight == gr.skip() and text == "Style: **ink**"
    i, j = 0, 1
    mid = (m.points[i] + m.points[j]) / 2
    first, other, w = stylemap.pick(m.points, tuple(mid), m.thumb / 2)
    marked, gallery, second, weight, visitor, text = demo.map_click(visitor, select([float(v) for v in mid]))
    assert visitor.style == m.keys[first] and second == m.keys[other] and weight == round(w, 2)
    assert "%" in text


# ----------------------------------------------------------------------------- serve


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
    # the style code of the default style went to the cache, keyed by the weights digest
    assert len(list((tmp_path / "cache" / "style-codes").glob("*/*.npz"))) == 1


def test_every_network_event_shares_one_concurrency_limit(gradio_cache):
    cfg = ServeConfig(max_side=64, concurrency=2, time_cap_s=120, cache_age_s=900)
    blocks = build_app(visible_stylizer(), cfg, code_cache=None)
    fns = {fn.name: fn for fn in blocks.fns.values()}
    for name in ("live_frame", "convert_file", "add_style", "open_map"):
        assert fns[name].concurrency_id == app.GPU and fns[name].concurrency_limit == 2, name
    stream = fns["live_frame"]
    assert stream.connection == "stream" and stream.time_limit == 120 and stream.stream_every == app.STREAM_EVERY
    assert blocks.delete_cache == (60, 900)


def test_a_visitor_switches_model_and_only_their_frames_change(fresh_demo):
    """The model switch: the next frame of that visitor goes through MicroAST (its own style
    codes), while another visitor keeps the served model."""
    visitor, other = Visitor(), Visitor()
    before, _, _ = live(fresh_demo, visitor)
    assert fresh_demo.model_names[0] == fresh_demo.served and "microast" in fresh_demo.model_names
    fresh_demo.choose_model(visitor, "microast")
    after, readout, _ = live(fresh_demo, visitor)
    stylizer, catalog = fresh_demo.engine("microast")
    assert stylizer.network.model == "microast" and catalog.stylizer is stylizer and "⚠" not in readout
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 5
    unchanged, _, _ = live(fresh_demo, other)
    np.testing.assert_array_equal(unchanged, before)
