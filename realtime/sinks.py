"""Live sinks: a window, a virtual camera, a network stream and a recording.

Each takes ``write(rgb, frame)`` with rgb (H, W, 3) uint8 RGB (resized to the sink's size if
a source changed size after a reconnect) and ``frame`` the ``realtime.frames.Frame`` it came
from (its ``captured_at`` gives the timestamps: live input has no pts of its own, so the
stream and the recording are variable frame rate in milliseconds since the first frame; a
recording of a file keeps the file's own timing and audio).
``close()`` finishes the output; ``poll()`` returns a key action (the window only).
PyAV and pyvirtualcam are imported when such a sink is opened, never at import:
importing av before OpenCV's GUI can freeze ``cv2.imshow`` (both wheels bundle their own FFmpeg
and xcb), so create the window first.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from realtime import SinkError

log = logging.getLogger(__name__)

# Window keys -> actions the live loop applies (see live.Controls).
KEYS = {"n": "next_style", "p": "prev_style", "+": "alpha_up", "=": "alpha_up", "-": "alpha_down",
        "s": "smooth", "c": "color", " ": "snapshot", "q": "quit", "\x1b": "quit"}
# cv2.waitKeyEx codes of the arrow keys: GTK/Qt (X11 keysyms), Windows, macOS.
ARROWS = {0xFF51: "prev_style", 0xFF53: "next_style", 0xFF52: "alpha_up", 0xFF54: "alpha_down",
          0x250000: "prev_style", 0x270000: "next_style", 0x260000: "alpha_up", 0x280000: "alpha_down",
          0xF702: "prev_style", 0xF703: "next_style", 0xF700: "alpha_up", 0xF701: "alpha_down"}
KEYS_HELP = ("n/p or left/right: next/previous style, +/- or up/down: alpha, s: smoothing on/off, "
             "c: colour preservation, space: snapshot, q/Esc: quit")
MILLIS = Fraction(1, 1000)


def action_for_key(code: int) -> str | None:
    """A cv2.waitKeyEx code -> its action, or None (no key, or a key without one). Uses the
    full code: waitKey's ``& 0xFF`` turns GTK's left arrow (0xFF51) into "Q"."""
    if code < 0:
        return None
    key = code & 0xFFFF  # GTK puts modifier state (NumLock...) in the high bits
    action = ARROWS.get(code) or ARROWS.get(key)
    if action is None and key < 0x80:
        action = KEYS.get(chr(key).lower())
    return action


class Sink:
    """Base: ``write``/``close``/``poll``; a context manager that closes."""

    name = "sink"

    def write(self, rgb: np.ndarray, frame) -> None:
        raise NotImplementedError

    def poll(self) -> str | None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8, resized only when the size differs."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


class _Clock:
    """Milliseconds since the first frame's capture, strictly increasing (a VFR pts)."""

    def __init__(self):
        self._t0 = self._last = None

    def pts(self, captured_at: float) -> int:
        self._t0 = captured_at if self._t0 is None else self._t0
        pts = round((captured_at - self._t0) * 1000)
        pts = pts if self._last is None or pts > self._last else self._last + 1
        self._last = pts
        return pts


class WindowSink(Sink):
    """An OpenCV window (RGB -> BGR here, at the boundary). Keys: ``KEYS_HELP``; closing the
    window is ``quit``. Needs OpenCV with a GUI (opencv-python, not -headless)."""

    def __init__(self, title: str = "rtstyle live"):
        self.title = self.name = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError("cannot open a window: this OpenCV has no GUI support "
                            "(opencv-python-headless); run with --no-window, or install the GUI "
                            "build: pip uninstall opencv-python-headless && pip install opencv-python") from e
        self._action: str | None = None

    def write(self, rgb: np.ndarray, frame) -> None:
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        action = action_for_key(cv2.waitKeyEx(1))
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            action = "quit"
        self._action = action or self._action

    def set_status(self, text: str) -> None:
        cv2.setWindowTitle(self.title, f"{self.title} - {text}")

    def poll(self) -> str | None:
        action, self._action = self._action, None
        return action

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class VirtualCameraSink(Sink):
    """A virtual camera other programs (video calls) can open, via pyvirtualcam (``[vcam]``)."""

    def __init__(self, width: int, height: int, fps: float, device: str | None = None):
        try:
            import pyvirtualcam
        except ImportError as e:
            raise SinkError("--vcam needs pyvirtualcam: pip install 'rtstyle[vcam]'") from e
        self.width, self.height = width, height
        try:
            self._cam = pyvirtualcam.Camera(width, height, fps or 30, device=device,
                                            fmt=pyvirtualcam.PixelFormat.RGB)
        except RuntimeError as e:
            raise SinkError(
                f"no virtual camera device ({e}). On Linux load v4l2loopback: sudo modprobe "
                "v4l2loopback devices=1 exclusive_caps=1 card_label=rtstyle; on Windows/macOS "
                "install OBS (its virtual camera)") from e
        self.name = f"virtual camera {self._cam.device}"
        log.info("%s: %dx%d", self.name, width, height)

    def write(self, rgb: np.ndarray, frame) -> None:
        self._cam.send(np.ascontiguousarray(fit(rgb, self.width, self.height)))

    def close(self) -> None:
        self._cam.close()


def stream_target(url: str) -> tuple[str, str, dict[str, str]]:
    """``url`` -> (what av.open gets, muxer format, muxer options).

    udp://HOST:PORT -> MPEG-TS (1316-byte packets: 7 TS packets); rtmp(s)://... -> FLV;
    a path ending .m3u8, or an existing directory (playlist stream.m3u8 in it) -> HLS with
    1 s segments, the last 6 in the playlist, older ones deleted."""
    if url.startswith("udp://"):
        return (url if "pkt_size" in url else url + ("&" if "?" in url else "?") + "pkt_size=1316"), "mpegts", {}
    if url.startswith(("rtmp://", "rtmps://")):
        return url, "flv", {}
    path = Path(url)
    if path.is_dir():
        path = path / "stream.m3u8"
    if path.suffix == ".m3u8":
        if not path.parent.is_dir():
            raise SinkError(f"{url}: the directory {path.parent} does not exist")
        return str(path), "hls", {"hls_time": "1", "hls_list_size": "6", "hls_flags": "delete_segments"}
    raise SinkError(f"{url}: not a stream target; use udp://HOST:PORT, rtmp://HOST/APP/KEY, "
                    "DIR/NAME.m3u8 or an existing directory (HLS)")


class StreamSink(Sink):
    """H.264 (libx264, zerolatency, veryfast, a keyframe every ~1 s) to ``stream_target(url)``.
    Errors (a refused RTMP connection shows up at the first frame) raise SinkError."""

    def __init__(self, url: str, width: int, height: int, fps: float | None):
        import av

        self._av, self.url, self.name = av, url, f"stream {url}"
        self.width, self.height = width, height
        target, fmt, options = stream_target(url)
        gop = str(max(1, round(fps or 30)))
        self._clock, self._frames, self._out = _Clock(), 0, None
        with self._errors("opening"):
            self._out = av.open(target, "w", format=fmt, options=options)
            self._video = self._out.add_stream("libx264", rate=Fraction(fps or 30).limit_denominator(1001), options={
                "preset": "veryfast", "tune": "zerolatency", "g": gop, "keyint_min": gop})
            self._video.width, self._video.height = width + width % 2, height + height % 2
            self._video.pix_fmt = "yuv420p"
            self._video.time_base = self._video.codec_context.time_base = MILLIS

    @contextmanager
    def _errors(self, doing: str):
        """A PyAV/OS error -> SinkError naming the URL; the output is dropped (close() is then a no-op)."""
        try:
            yield
        except (OSError, self._av.FFmpegError) as e:
            out, self._out = self._out, None
            if out is not None:
                try:
                    out.close()
                except (OSError, self._av.FFmpegError):
                    pass  # already failing: the error below is the one that matters
            hint = " (is an RTMP server listening there?)" if self.url.startswith("rtmp") else ""
            reason = getattr(e, "strerror", None) or str(e)
            raise SinkError(f"{self.url}: {reason}{hint} (while {doing})") from e

    def write(self, rgb: np.ndarray, frame) -> None:
        if self._out is None:
            raise SinkError(f"{self.url}: write() after the stream was closed or failed")
        rgb = fit(rgb, self.width, self.height)
        if self.width % 2 or self.height % 2:
            rgb = np.pad(rgb, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        vf = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts, vf.time_base = self._clock.pts(frame.captured_at), MILLIS
        with self._errors("sending" if self._frames else "sending the first frame"):
            self._out.mux(self._video.encode(vf))
        self._frames += 1

    def close(self) -> None:
        if self._out is None:
            return
        with self._errors("finishing"):
            self._out.mux(self._video.encode(None))
            out, self._out = self._out, None
            out.close()


class RecordSink(Sink):
    """A recording: ``VideoFileSink(fragmented=True, low_delay=True)``.

    Timing: live input in ms (VFR) from capture time, the first frame at 0; a file's frames
    (``time_base`` given: the file's) at their own pts, with the file's audio (``audio_from``)
    copied up to the last frame recorded. While recording, the file is ``NAME.partial-PID.mp4``
    beside ``path``; close() renames it to ``path``. Being fragmented MP4 with a keyframe every
    2 s of capture time and no encoder delay, that partial file stays playable if the process
    is killed, up to at most ~2 s before the end, whatever the frame rate. No frames: no file."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float | None, *,
                 time_base: Fraction | None = None, audio_from: str | Path | None = None, threads: int = 0):
        from realtime.video import VideoFileSink

        self.path, self.width, self.height, self.name = Path(path), width, height, f"recording {path}"
        rate = Fraction(fps).limit_denominator(1001) if fps else None
        self._file_timing = time_base is not None
        self._sink = VideoFileSink(self.path, width=width, height=height, time_base=time_base or MILLIS,
                                   rate=rate, audio_from=audio_from, crf=20, preset="veryfast",
                                   fragmented=True, low_delay=True, threads=threads)
        self._clock = _Clock()

    @property
    def frames_written(self) -> int:
        return self._sink.frames_written

    def write(self, rgb: np.ndarray, frame) -> None:
        rgb = fit(rgb, self.width, self.height)
        if self._file_timing and frame.pts is not None:
            self._sink.write(rgb, frame.pts, frame.time_base)
        else:
            self._sink.write(rgb, self._clock.pts(frame.captured_at))

    def close(self) -> None:
        if self._sink.frames_written == 0:
            self._sink.abort()
            log.warning("%s: no frames, no file", self.path)
        else:
            self._sink.close(trim_audio=True)
