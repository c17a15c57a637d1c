"""Live mode without a camera: the synthetic source, a fake camera that fails mid-stream,
UDP/HLS streams read back with PyAV, a killed recording, and ``rtstyle live`` end to end.

Waits are bounded (deadlines), never sleeps that a result depends on; the fake stylizer's
delay simulates compute time.
"""
from __future__ import annotations

import io
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from realtime import live
from realtime.capture import (CameraSource, FileSource, InputSpec, SyntheticSource, open_source,
                              parse_input, pattern_frame)
from realtime import CtrlC
from realtime.frames import Frame
from realtime.live import Controls, LiveConfig, run_live
from realtime.measure import Meter
from realtime.sinks import RecordSink, StreamSink, VirtualCameraSink, WindowSink, action_for_key
from realtime.video import MediaError, SinkError
from tests.media import kill_when_written, make_clip, read_back

ROOT = Path(__file__).resolve().parents[1]


class FakeStylizer:
    """Stylizer's call signature; inverts colours after ``delay`` seconds of pretend compute and
    remembers the settings of the last call."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.settings = delay, None
        self.calls = 0

    def __call__(self, frames: torch.Tensor, settings, max_side=None) -> torch.Tensor:
        assert frames.dtype == torch.uint8 and frames.shape[0] == 1 and frames.shape[-1] == 3
        if self.delay:
            time.sleep(self.delay)
        self.calls += 1
        self.settings = settings
        return 255 - frames


def one_style() -> Controls:
    return Controls([("a", "code-a")])


class CollectSink:
    """Keeps what it is given; ``actions`` are returned by poll(), one per frame."""

    name = "collect"

    def __init__(self, actions=()):
        self.frames: list[tuple[np.ndarray, Frame]] = []
        self.actions = list(actions)

    def write(self, rgb, frame):
        self.frames.append((rgb.copy(), frame))

    def poll(self):
        return self.actions.pop(0) if self.actions else None


def frames_of(path) -> list:
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


# ----------------------------------------------------------------------------- the loop


def test_slow_stylizer_keeps_latency_bounded_and_counts_drops():
    delay, meter_out, sink = 0.05, io.StringIO(), CollectSink()
    meter = Meter(meter_out)
    with SyntheticSource(64, 48, fps=100) as source:
        stats = run_live(LiveConfig(frames=40, window=False), FakeStylizer(delay), source, [sink], meter=meter,
                         controls=one_style())
    assert stats.stop == "frames" and stats.frames == 40 == len(sink.frames)
    # newest frame wins: every frame read was processed, the rest were counted as dropped
    assert stats.dropped > 0 and stats.captured == stats.frames + stats.dropped
    lat = np.asarray(stats.latencies)
    assert np.percentile(lat, 95) < 3 * delay, lat  # a queue would grow by ~40 ms per frame
    assert np.median(lat[-10:]) < 3 * delay, lat  # not growing
    indices = [f.index for _, f in sink.frames]
    assert indices == sorted(indices) and indices[-1] - indices[0] > 40  # gaps = drops
    rgb, frame = sink.frames[0]
    assert np.array_equal(rgb, 255 - frame.pixels)
    # the meter: about once a second, never per frame
    lines = meter_out.getvalue().splitlines()
    assert 1 <= len(lines) == stats.meter_lines <= stats.seconds + 1
    assert all("fps" in line and "latency p50" in line and "dropped" in line for line in lines)


def test_ctrl_c_stops_between_frames_and_the_recording_is_complete(tmp_path):
    class InterruptedStylizer(FakeStylizer):
        def __call__(self, frames, settings, max_side=None):
            if self.calls == 4:
                signal.raise_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
            return super().__call__(frames, settings, max_side)

    with SyntheticSource(64, 48, fps=100) as source, RecordSink(tmp_path / "rec.mp4", 64, 48, 100) as record:
        with CtrlC() as ctrl_c:
            stats = run_live(LiveConfig(window=False, meter=False), InterruptedStylizer(), source, [record],
                             stop=ctrl_c.stop, controls=one_style())
    assert stats.stop == "interrupted" and stats.frames == 5
    assert len(frames_of(tmp_path / "rec.mp4")) == 5


def test_controls_switch_styles_alpha_colour_and_snapshot(tmp_path):
    class Smoother:
        stats_filter, resets = object(), 0

        def reset(self):
            self.resets += 1

        def __call__(self, content, styled):
            return styled

    smoother, stylizer = Smoother(), FakeStylizer()
    controls = Controls([("a", "code-a"), ("b", "code-b")], smoother, snapshot_dir=tmp_path)
    assert controls.settings.code == "code-a" and controls.settings.stats_filter is smoother.stats_filter
    actions = ["next_style", "alpha_down", "alpha_down", "color", "smooth", "snapshot", "prev_style", "quit"]
    sink = CollectSink(actions)
    with SyntheticSource(32, 24, fps=200) as source:
        stats = run_live(LiveConfig(window=False, meter=False), stylizer, source, [sink], controls=controls)
    assert stats.stop == "quit" and stats.frames == len(actions)
    last = stylizer.settings  # what the stylizer was given with the last frame
    assert last is controls.settings and last.code == "code-a" and last.alpha == pytest.approx(0.8)
    assert last.preserve_color and last.stats_filter is None and not controls.smoothing
    assert smoother.resets == 6  # two style switches, two alpha steps, the colour and the smoothing toggles
    (snap,) = tmp_path.glob("rtstyle-*.png")
    assert snap.stat().st_size > 0
    assert action_for_key(ord("N")) == "next_style" and action_for_key(-1) is None
    assert action_for_key(0xFF51) == "prev_style" != action_for_key(ord("q"))  # GTK left arrow
    assert action_for_key(0x10FF53) == "next_style" and action_for_key(0x270000) == "next_style"


def test_real_smoother_plugs_into_the_stylizer():
    smoothing = pytest.importorskip("realtime.smoothing")
    smoother, stylizer = smoothing.TemporalSmoother("all"), FakeStylizer()
    controls = Controls([("a", "code-a")], smoother)
    assert controls.settings.stats_filter is smoother.stats_filter is not None
    with SyntheticSource(64, 48, fps=100) as source:
        stats = run_live(LiveConfig(frames=5, window=False, meter=False), stylizer, source, [CollectSink()],
                         controls=controls)
    assert stats.frames == 5


# ----------------------------------------------------------------------------- sources


class FakeCapture:
    """cv2.VideoCapture's surface: ``frames`` BGR frames whose blue channel is ``label``, one
    every 5 ms (a camera's pace), then read() fails forever (the camera is gone)."""

    def __init__(self, label: int, frames: int, opened: bool = True):
        self.label, self.left, self.opened, self.released = label, frames, opened, False

    def isOpened(self):
        return self.opened

    def read(self):
        if self.left <= 0:
            return False, None
        time.sleep(0.005)
        self.left -= 1
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[..., 0] = self.label
        return True, bgr

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 30.0 if prop == 5 else 0.0

    def release(self):
        self.released = True


def test_camera_that_fails_mid_stream_reconnects_and_recording_stays_whole(tmp_path, caplog):
    caps = [FakeCapture(10, 6), FakeCapture(0, 0, opened=False), FakeCapture(20, 10**6)]
    opened = []

    def opener(device):
        opened.append(caps[len(opened)])
        return opened[-1]

    caplog.set_level(logging.INFO, logger="realtime.capture")
    source = CameraSource(0, opener=opener, backoff_s=0.01)
    assert (source.width, source.height, source.fps) == (64, 48, 30.0)
    record = RecordSink(tmp_path / "rec.mp4", 64, 48, 30)
    sink = CollectSink()
    with source, record:
        stats = run_live(LiveConfig(frames=12, window=False, meter=False), FakeStylizer(), source,
                         [sink, record], controls=one_style())
    assert stats.frames == 12 and stats.captured == stats.frames + stats.dropped
    labels = [int(f.pixels[0, 0, 2]) for _, f in sink.frames]  # BGR blue -> RGB blue
    assert labels[-1] == 20 and labels == sorted(labels) and set(labels) <= {10, 20}
    assert source.losses == 1 and source.reconnects == 1 and len(opened) == 3
    assert caps[0].released and caps[2].released  # the capture thread let both go
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("lost" in m for m in warnings) == 1 and sum("back after" in m for m in warnings) == 1
    back = frames_of(tmp_path / "rec.mp4")
    assert len(back) == 12 and [p for p, _ in back] == sorted(p for p, _ in back)


def test_opencv_capture_gives_rgb_and_ends_without_reconnect(tmp_path):
    # the real default opener on a clip (OpenCV opens files like camera URLs): red stays red
    clip = make_clip(tmp_path / "red.mp4", frames=8, color=(255, 0, 0))
    with CameraSource(str(clip), reconnect=False) as source:
        frames = []
        while (frame := source.read(5.0)) is not None:
            frames.append(frame)
    assert source.finished and source.losses == 1 and source.reconnects == 0
    assert frames and frames[-1].pixels.shape == (48, 64, 3)
    r, g, b = frames[-1].pixels.reshape(-1, 3).mean(0)
    assert r > 200 and g < 40 and b < 40


def test_camera_that_cannot_open_names_the_device():
    with pytest.raises(MediaError, match=r"camera /dev/video7: cannot be opened"):
        CameraSource("/dev/video7", opener=lambda device: FakeCapture(0, 0, opened=False))


def test_pattern_is_rgb_and_moves():
    a, b = pattern_frame(0, 64, 48), pattern_frame(1, 64, 48)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8 and not np.array_equal(a, b)
    s = 48 // 8
    assert tuple(a[-1, 0]) == (255, 0, 0) and tuple(a[-1, s]) == (0, 255, 0)  # red stays red


def test_file_source_lossless_or_at_its_own_rate(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=12, rate=25)
    with FileSource(clip, realtime=False) as source:
        got = [source.read(5.0) for _ in range(12)]
        assert source.read(5.0) is None and source.finished
    assert [f.index for f in got] == list(range(12)) and source.dropped == 0
    with FileSource(clip, realtime=True) as source:
        t0 = time.monotonic()
        while source.read(5.0) is not None:
            pass
        assert time.monotonic() - t0 >= 11 / 25 * 0.9  # paced by pts, not as fast as possible


def test_live_modules_import_without_pyav():
    # importing av before OpenCV's GUI can freeze cv2.imshow; the window comes first
    code = "import sys, realtime.live, realtime.capture, realtime.sinks; print('av' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_parse_input():
    assert parse_input("synth:") == InputSpec("synth")  # SyntheticSource's defaults
    spec = parse_input("synth:320x240@15")
    assert (spec.kind, spec.width, spec.height, spec.fps) == ("synth", 320, 240, 15.0)
    assert parse_input("0").target == 0 and parse_input("/dev/video2").kind == "camera"
    assert parse_input("clip.mp4").kind == "file"
    with pytest.raises(ValueError, match="synth:WIDTHxHEIGHT@FPS"):
        parse_input("synth:big")
    with pytest.raises(ValueError, match="--realtime applies to video files"):
        open_source(parse_input("synth:"), realtime=True)


# ----------------------------------------------------------------------------- sinks


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_mpegts_stream_is_read_back_by_pyav():
    port = _free_udp_port()
    stop, errors = threading.Event(), []

    def send():
        try:
            with StreamSink(f"udp://127.0.0.1:{port}", 64, 48, 30) as sink:
                i = 0
                while not stop.wait(1 / 30) and i < 300:  # at most 10 s
                    sink.write(pattern_frame(i, 64, 48), Frame(None, None, None, i, captured_at=i / 30))
                    i += 1
        except Exception as e:  # re-raised below
            errors.append(e)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()  # the reader joins mid-stream: tables repeat, a keyframe comes every second
    decoded = []
    try:
        with av.open(f"udp://127.0.0.1:{port}?timeout=5000000", format="mpegts", timeout=8.0) as reader:
            for frame in reader.decode(video=0):
                decoded.append(frame.to_ndarray(format="rgb24"))
                if len(decoded) >= 10:
                    break
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(5.0)
    assert not errors, errors
    assert len(decoded) >= 10 and decoded[0].shape == (48, 64, 3)


def test_hls_playlist_and_segments(tmp_path):
    with StreamSink(str(tmp_path), 64, 48, 30) as sink:  # a directory: stream.m3u8 in it
        for i in range(100):  # 3.3 s of capture time, 1 s segments
            sink.write(pattern_frame(i, 64, 48), Frame(None, None, None, i, captured_at=1000 + i / 30))
    text = (tmp_path / "stream.m3u8").read_text()
    segments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert text.startswith("#EXTM3U") and "#EXTINF" in text and len(segments) >= 3
    for name in segments:
        assert len(frames_of(tmp_path / name)) > 0


_RTMP_SERVER = """
import sys, av
n = 0
with av.open(sys.argv[1], format="flv", options={"listen": "1"}, timeout=10) as c:
    for f in c.decode(video=0):
        n += 1
        if n == 10:
            break
print(n, f.width, f.height)
"""


def test_rtmp_stream_reaches_a_server():
    # FFmpeg's one-client RTMP server mode, in its own process (with the listener in a thread
    # of this process, sender and listener deadlocked in PyAV here).
    url = f"rtmp://127.0.0.1:{_free_udp_port()}/live/x"
    server = subprocess.Popen([sys.executable, "-c", _RTMP_SERVER, url], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the server listens: a refused connection shows at the first frame
            try:
                sink = StreamSink(url, 64, 48, 30)
                sink.write(pattern_frame(0, 64, 48), Frame(None, None, None, 0, captured_at=0.0))
                break
            except SinkError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling the server's start, not waiting for a result
        with sink:
            for i in range(1, 60):
                sink.write(pattern_frame(i, 64, 48), Frame(None, None, None, i, captured_at=i / 30))
        assert server.communicate(timeout=10)[0].split() == ["10", "64", "48"]
    finally:
        server.kill()
        server.wait(10)


def test_refused_rtmp_is_a_clear_error():
    port = _free_udp_port()  # nothing listens on it over TCP either, almost surely
    with pytest.raises(SinkError, match=rf"rtmp://127.0.0.1:{port}/live/x: .*RTMP server"):
        with StreamSink(f"rtmp://127.0.0.1:{port}/live/x", 64, 48, 30) as sink:
            sink.write(pattern_frame(0, 64, 48), Frame(None, None, None, 0, captured_at=0.0))
    with pytest.raises(SinkError, match="not a stream target"):
        StreamSink("out.flv", 64, 48, 30)


_KILLED = """
import sys, time
from realtime.capture import pattern_frame
from realtime.frames import Frame
from realtime.sinks import RecordSink
sink = RecordSink(sys.argv[1], 64, 48, 10)
for i in range(80):
    sink.write(pattern_frame(i, 64, 48), Frame(None, None, None, i, captured_at=i / 10))
print("written", flush=True)
sys.stdin.read()
"""


def test_recording_of_a_killed_process_stays_playable(tmp_path):
    out = tmp_path / "rec.mp4"
    kill_when_written(_KILLED, str(out), cwd=ROOT)
    assert not out.exists()
    (partial,) = tmp_path.glob("rec.partial-*.mp4")  # beside the recording, visible
    back = frames_of(partial)
    assert 20 <= len(back) < 80  # complete fragments up to a keyframe (every 2 s = 20 frames)
    assert [p for p, _ in back] == sorted(p for p, _ in back)


_KILLED_SLOW = """
import sys
from realtime.capture import pattern_frame
from realtime.frames import Frame
from realtime.sinks import RecordSink
sink = RecordSink(sys.argv[1], 64, 48, 30)  # a camera that says 30 fps, stylized at 1 fps
for i in range(20):
    sink.write(pattern_frame(i, 64, 48), Frame(None, None, None, i, captured_at=1000.0 + i))
print("written", flush=True)
sys.stdin.read()
"""


def test_recording_killed_at_one_frame_per_second_keeps_all_but_the_last_two_seconds(tmp_path):
    out = tmp_path / "slow.mp4"
    kill_when_written(_KILLED_SLOW, str(out), cwd=ROOT)
    (partial,) = tmp_path.glob("slow.partial-*.mp4")
    back = frames_of(partial)
    assert len(back) >= 17  # keyframes every 2 s of capture time, no frames held in the encoder
    assert [p for p, _ in back] == sorted(p for p, _ in back)


def test_recording_starts_at_zero_whatever_the_rate(tmp_path):
    with RecordSink(tmp_path / "slow.mp4", 64, 48, 30) as record:
        for i in range(8):  # one frame every 3 s, the first captured at an arbitrary clock time
            record.write(pattern_frame(i, 64, 48), Frame(None, None, None, i, captured_at=500.0 + 3.0 * i))
    with av.open(str(tmp_path / "slow.mp4")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert times == pytest.approx([3.0 * i for i in range(8)], abs=1e-3)


def test_meter_below_half_a_frame_per_second_shows_the_rate():
    out = io.StringIO()
    meter = Meter(out)
    for i in range(6):  # a frame every 3 s
        now = 100.0 + 3.0 * i
        meter.record(now - 2.5, now)
        meter.tick(now, 0, i + 1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and not any("waiting" in line for line in lines), lines
    assert lines[-1].split("|")[0].strip() == "0.3 fps" and "latency p50 2500 ms" in lines[-1]


def test_meter_reports_a_stall_once_off_a_terminal():
    out = io.StringIO()
    meter = Meter(out)
    for i in range(3):
        meter.record(10.0 + 0.1 * i - 0.05, 10.0 + 0.1 * i)
        meter.tick(10.0 + 0.1 * i, 0, i + 1)
    for k in range(20):  # the camera is gone: read() times out every 0.5 s
        meter.tick(11.0 + 0.5 * k, 0, 3)
    lines = out.getvalue().splitlines()
    assert sum("waiting" in line for line in lines) == 1, lines


def test_window_and_vcam_fail_clearly_without_gui_or_package(monkeypatch):
    import cv2

    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        has_gui = True
    except cv2.error:
        has_gui = False
    if not has_gui:
        with pytest.raises(SinkError, match="--no-window"):
            WindowSink()
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # as if not installed
    with pytest.raises(SinkError, match=r"pip install 'rtstyle\[vcam\]'"):
        VirtualCameraSink(64, 48, 30)


@pytest.mark.skipif(any(Path("/dev").glob("video*")), reason="this machine has video devices")
def test_vcam_without_a_loopback_device_says_v4l2loopback():
    pytest.importorskip("pyvirtualcam", reason="pyvirtualcam (the [vcam] extra) is not installed")
    with pytest.raises(SinkError, match="v4l2loopback"):
        VirtualCameraSink(64, 48, 30)


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def rtstyle():
    import realtime.cli as cli

    return cli.main


def test_live_options_default_to_the_config(rtstyle, capsys):
    import realtime.cli as cli

    args = cli.build_parser().parse_args(["live"])
    assert live.config_from_args(args) == LiveConfig()
    with pytest.raises(SystemExit):
        rtstyle(["live", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {LiveConfig.styles[0]})" in text and f"(default: {LiveConfig.alpha})" in text


@pytest.mark.slow
def test_rtstyle_live_synth_records(rtstyle, tmp_path, test_decoder_file, capsys):
    out = tmp_path / "out.mp4"
    rc = rtstyle(["live", "--input", "synth:", "--no-window", "--frames", "60", "--record", str(out),
                  "--decoder", str(test_decoder_file), "--device", "cpu", "--max-side", "32"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "60 frames" in err and "stopped: frames" in err
    seconds = float(re.search(r"60 frames in ([\d.]+) s", err).group(1))
    assert len([line for line in err.splitlines() if " fps | latency" in line]) <= seconds + 1
    back = frames_of(out)
    assert len(back) == 60 and back[0][1].shape == (360, 640, 3)
    pts = [p for p, _ in back]
    assert sorted(pts) == pts and len(set(pts)) == 60


def test_live_recording_of_a_file_keeps_its_timing_and_audio(rtstyle, tmp_path, test_decoder_file, capsys):
    pts = [0, 40, 100, 130, 250, 260, 300, 333, 400, 410, 480, 520]  # ms, variable frame rate
    clip = make_clip(tmp_path / "in.mp4", vfr_pts=pts, audio=True)
    out = tmp_path / "out.mp4"
    rc = rtstyle(["live", "-i", str(clip), "--no-window", "--no-meter", "--record", str(out),
                  "--decoder", str(test_decoder_file), "--device", "cpu", "--max-side", "32"])
    err = capsys.readouterr().err
    assert rc == 0 and "stopped: source ended" in err, err
    a, b = read_back(clip, pixels=False), read_back(out, pixels=False)
    assert b["times"] == a["times"]
    assert b["audio_packets"] == a["audio_packets"] and len(a["audio_packets"]) > 5


def test_live_record_into_a_read_only_folder_is_one_line_before_any_work(rtstyle, read_only_dir, capsys,
                                                                           monkeypatch):
    monkeypatch.setattr("realtime.options.open_stylizer", lambda args: pytest.fail("weights loaded"))
    rc = rtstyle(["live", "-i", "synth:", "--no-window", "--record", str(read_only_dir / "x.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "x.mp4: cannot write in" in err[0], err


@pytest.mark.parametrize("argv, words", [(["--max-side", "8"], "--max-side must be >= 16, got 8"),
                                         (["--max-side", "0"], "--max-side must be >= 16, got 0"),
                                         (["-i", "synth:8x8@30"], "8x8 pixels is too small"),
                                         (["--smooth-strength", "2"], "--smooth-strength must be in")])
def test_live_sizes_and_ranges_are_one_line_errors(rtstyle, capsys, monkeypatch, argv, words):
    monkeypatch.setattr("realtime.options.open_stylizer", lambda args: pytest.fail("weights loaded"))
    rc = rtstyle(["live", "-i", "synth:64x48@30", "--no-window", "--frames", "1", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and words in err[0], err


def test_live_without_a_window_prints_the_meter_and_one_summary_line(tmp_path, test_decoder_file):
    done = subprocess.run([sys.executable, "-m", "realtime", "live", "--input", "synth:64x48@30", "--no-window",
                           "--frames", "5", "--record", str(tmp_path / "x.mp4"), "--decoder", str(test_decoder_file),
                           "--device", "cpu", "--max-side", "32"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and " fps | latency" not in ln]
    assert len(lines) == 1 and lines[0].startswith("rtstyle: live: 5 frames"), done.stderr


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera at /dev/video0")
def test_rtstyle_live_without_a_camera_names_the_device(rtstyle, test_decoder_file, capsys):
    rc = rtstyle(["live", "--input", "0", "--no-window", "--decoder", str(test_decoder_file)])
    assert rc == 1 and "/dev/video0" in capsys.readouterr().err
