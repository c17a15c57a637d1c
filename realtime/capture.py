"""Live sources: a camera (OpenCV), a moving test pattern (``synth:``) and a file played live.

Each source produces frames in its own thread into a single-slot "latest" buffer: ``read()``
returns the newest frame, and a frame overwritten before it was read is counted in
``dropped`` (live means latency first: stale frames are dropped at the source, never queued).
After ``close()``: ``captured == delivered + dropped``.

Data contract: ``realtime.frames.Frame``; ``pixels`` is (H, W, 3) uint8 RGB, C-contiguous. OpenCV delivers
BGR; the camera thread converts to RGB here, at the boundary. ``captured_at`` is
``time.monotonic()`` taken right after the frame arrived. This module imports PyAV only when
a file is opened (importing av before OpenCV's GUI can freeze ``cv2.imshow``: the two wheels
bundle their own FFmpeg and xcb libraries).
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.frames import Frame

log = logging.getLogger(__name__)


class _Latest:
    """Single-slot buffer with a condition variable: put overwrites, get takes the newest."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self.captured = self.delivered = self.dropped = 0

    def put(self, item: Frame, *, wait_empty: bool = False) -> bool:
        """Store ``item`` (overwriting an unread one, counted as dropped; or, with
        ``wait_empty``, waiting until it was read). False once the buffer is finished."""
        with self._cond:
            if wait_empty:
                self._cond.wait_for(lambda: self._item is None or self._done)
            if self._done:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.captured += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None) -> Frame | None:
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._done, timeout)
            item, self._item = self._item, None
            if item is None:
                if self._error is not None:
                    raise self._error
                return None
            self.delivered += 1
            self._cond.notify_all()
            return item

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done = True
            self._error = self._error or error
            self._cond.notify_all()

    def discard(self) -> None:
        """Count a frame nobody will read as dropped (at close)."""
        with self._cond:
            if self._item is not None:
                self._item = None
                self.dropped += 1

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._done and self._item is None


class LiveSource:
    """Base: a producer thread (``_produce``) started by ``with``/``start()``, stopped by
    ``close()``. Attributes: name, width, height, fps (nominal, None if unknown)."""

    name = "source"
    width = height = 0
    fps: float | None = None

    def __init__(self):
        self._slot = _Latest()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"capture {self.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._produce()
        except Exception as e:  # handed to the reader, which re-raises it
            self._slot.finish(e)
        finally:
            self._release()
            self._slot.finish()

    def _produce(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the device or file; runs in the producer thread (or in close() if never started)."""

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame; None if none arrived within ``timeout`` s or the source ended
        (then ``finished`` is True). Re-raises an error of the producer thread."""
        if self._thread is None:
            raise RuntimeError(f"{self.name}: start() the source (or use `with`) before read()")
        return self._slot.get(timeout)

    def _put(self, pixels: np.ndarray, index: int, **timing) -> bool:
        timing = {"pts": None, "time_base": None, **timing}
        return self._slot.put(Frame(pixels, index=index, captured_at=time.monotonic(), **timing))

    @property
    def finished(self) -> bool:
        return self._slot.finished

    captured = property(lambda self: self._slot.captured, doc="frames produced")
    delivered = property(lambda self: self._slot.delivered, doc="frames returned by read()")
    dropped = property(lambda self: self._slot.dropped, doc="frames overwritten before being read")

    def close(self) -> None:
        """Stop the thread and free the device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._slot.finish()
        if self._thread is None:
            self._release()
        else:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("%s: capture thread still blocked after 5 s; leaving it behind", self.name)
        self._slot.discard()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the ``synth:`` pattern: (H, W, 3) uint8 RGB. Colour bars scrolling
    left, a white square moving across, pure red/green/blue patches bottom-left, and the frame
    counter in binary top-left (16 cells, white = 1, least significant bit first)."""
    x = (np.arange(width) + 4 * index) % width
    bars = np.array([[230, 230, 230], [230, 230, 0], [0, 230, 230], [0, 230, 0],
                     [230, 0, 230], [230, 0, 0], [0, 0, 230], [40, 40, 40]], np.uint8)
    img = np.ascontiguousarray(np.broadcast_to(bars[x * 8 // width][None], (height, width, 3)))
    s = max(2, min(width, height) // 8)
    cx = (8 * index) % max(1, width - s)
    cy = int((height - s) * (0.5 + 0.4 * np.sin(index / 15)))
    img[cy:cy + s, cx:cx + s] = 255
    for i, rgb in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        img[height - s:, i * s:(i + 1) * s] = rgb
    cell = max(1, width // 32)
    for bit in range(16):
        img[:cell, bit * cell:(bit + 1) * cell] = 255 if (index >> bit) & 1 else 0
    return img


class SyntheticSource(LiveSource):
    """The ``synth:`` test pattern, produced at ``fps`` in a thread (for tests and demos without
    a camera). When the machine falls behind it skips ahead instead of bursting."""

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30.0):
        super().__init__()
        if width < 8 or height < 8 or not fps > 0:
            raise ValueError(f"synth: needs width, height >= 8 and fps > 0, got {width}x{height}@{fps}")
        self.width, self.height, self.fps = width, height, float(fps)
        self.name = f"synth:{width}x{height}@{fps:g}"

    def _produce(self) -> None:
        period, index = 1.0 / self.fps, 0
        due = time.monotonic()
        while not self._stop.is_set():
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            if not self._put(pattern_frame(index, self.width, self.height), index):
                return
            index += 1
            due = max(due + period, time.monotonic() - period)


def _open_cv2(device: int | str):
    """Default camera opener: cv2.VideoCapture (V4L2 on Linux for /dev/videoN and indices)."""
    import cv2

    linux = sys.platform.startswith("linux")
    if linux and isinstance(device, int) and not Path(f"/dev/video{device}").exists():
        from realtime.video import MediaError
        raise MediaError(f"camera {device}: /dev/video{device} does not exist (no camera found; "
                         "`v4l2-ctl --list-devices` lists them; --input synth: gives a test pattern)")
    local = isinstance(device, int) or str(device).startswith("/dev/")
    return cv2.VideoCapture(device, cv2.CAP_V4L2) if linux and local else cv2.VideoCapture(device)


class CameraSource(LiveSource):
    """A camera (index, /dev/videoN or a stream URL OpenCV can open) read in its own thread.

    ``width``/``height``/``fps``/``mjpg`` are requests (the driver may choose otherwise; the
    delivered size is in ``width``/``height``). ``opener(device)`` returns an object with
    cv2.VideoCapture's isOpened/read/set/get/release (injectable for tests). Opening fails at
    once with MediaError naming the device. When frames stop arriving, it logs once, then
    reopens with exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``) until it
    is back (``reconnect=False``: the source ends instead). ``losses``/``reconnects`` count them.
    """

    def __init__(self, device: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, mjpg: bool = False, reconnect: bool = True,
                 opener=_open_cv2, backoff_s: float = 0.25, max_backoff_s: float = 5.0):
        super().__init__()
        self.device, self.reconnect, self._opener = device, reconnect, opener
        self._request = (width, height, fps, mjpg)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.name, self.losses, self.reconnects = f"camera {device}", 0, 0
        from realtime.video import MediaError

        self._cap = self._open()
        if self._cap is None:
            raise MediaError(f"{self.name}: cannot be opened (is it connected, and not in use by "
                             "another program?)")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._release()
            raise MediaError(f"{self.name}: opened but delivered no frame (in use by another program?)")
        self.height, self.width = bgr.shape[:2]
        got = self._cap.get(5)  # cv2.CAP_PROP_FPS
        self.fps = float(got) if got and got > 0 else fps
        log.info("%s: %dx%d at %s fps", self.name, self.width, self.height, self.fps or "unknown")

    def _open(self):
        """An opened, configured capture, or None (a MediaError from the opener propagates)."""
        cap = self._opener(self.device)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        width, height, fps, mjpg = self._request
        if mjpg:  # before the size: many UVC cameras reach high sizes/rates only in MJPG
            cap.set(6, float(0x47504A4D))  # CAP_PROP_FOURCC = fourcc("MJPG")
        for prop, value in ((3, width), (4, height), (5, fps)):  # FRAME_WIDTH, FRAME_HEIGHT, FPS
            if value:
                cap.set(prop, float(value))
        return cap

    def _produce(self) -> None:
        import cv2

        index, lost_at = 0, None
        while not self._stop.is_set():
            ok, bgr = self._cap.read() if self._cap is not None else (False, None)
            if ok and bgr is not None:
                if lost_at is not None:
                    log.warning("%s: back after %.1f s", self.name, time.monotonic() - lost_at)
                    lost_at = None
                if not self._put(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index):  # BGR -> RGB here
                    return
                index += 1
                continue
            if lost_at is None:
                lost_at = time.monotonic()
                self.losses += 1
                log.warning("%s: lost (no frame); %s", self.name,
                            "reconnecting" if self.reconnect else "stopping")
            if not self.reconnect:
                return
            self._reopen()

    def _reopen(self) -> None:
        """Release and reopen with exponential backoff until opened or stopped."""
        from realtime.video import MediaError

        self._release()
        delay = self.backoff_s
        while not self._stop.wait(delay):
            try:
                self._cap = self._open()
            except MediaError as e:  # e.g. the USB device node is gone for now
                log.debug("%s: reopen failed: %s", self.name, e)
            if self._cap is not None:
                self.reconnects += 1
                return
            delay = min(2 * delay, self.max_backoff_s)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FileSource(LiveSource):
    """A video file as a live source. ``realtime=True``: frames are released at their own
    pts rate and stale ones dropped like a camera's; ``False``: as fast as the reader takes
    them, none dropped. ``captured_at`` is when the frame was released; ``pts`` and
    ``time_base`` (the file's) are kept, so a recording can keep the file's timing."""

    def __init__(self, path: str | Path, *, realtime: bool = True):
        super().__init__()
        from realtime.video import VideoFileSource

        self._src = VideoFileSource(path)
        self.realtime, self.name = realtime, str(path)
        self.width, self.height = self._src.width, self._src.height
        self.fps = float(self._src.average_rate) if self._src.average_rate else None
        self.time_base = self._src.time_base

    def _produce(self) -> None:
        start = first = None
        for frame in self._src:
            if self.realtime:
                if frame.pts is not None:
                    first = frame.pts if first is None else first
                    offset = float((frame.pts - first) * frame.time_base)
                else:
                    offset = frame.index / (self.fps or 30.0)
                start = time.monotonic() if start is None else start
                wait = start + offset - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
            item = Frame(frame.pixels, frame.pts, frame.time_base, frame.index, captured_at=time.monotonic())
            if not self._slot.put(item, wait_empty=not self.realtime):
                return

    def _release(self) -> None:
        self._src.close()


@dataclass(frozen=True)
class InputSpec:
    """A parsed ``--input``: kind is "camera" (target: index, /dev path or URL), "synth"
    (width, height, fps) or "file" (target: path)."""

    kind: str
    target: int | str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


_SYNTH = re.compile(r"(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d*)?))?")


def parse_input(text: str) -> InputSpec:
    """"0" | "/dev/video0" | "rtsp://..." -> camera; "synth:" | "synth:640x360@30" -> test
    pattern (defaults: SyntheticSource's); anything else -> a video file path."""
    text = text.strip()
    if text.startswith("synth:"):
        m = _SYNTH.fullmatch(text[len("synth:"):])
        if not m:
            raise ValueError(f"--input {text!r}: write synth: or synth:WIDTHxHEIGHT@FPS, e.g. synth:640x360@30")
        w, h, fps = m.groups()
        return InputSpec("synth", None, int(w) if w else None, int(h) if h else None,
                         float(fps) if fps else None)
    if text.isdigit():
        return InputSpec("camera", int(text))
    if text.startswith("/dev/") or "://" in text:
        return InputSpec("camera", text)
    if not text:
        raise ValueError("--input is empty: give a camera index, /dev/videoN, synth: or a video file")
    return InputSpec("file", text)


def open_source(spec: InputSpec, *, realtime: bool = False, width: int | None = None,
                height: int | None = None, fps: float | None = None, mjpg: bool = False) -> LiveSource:
    """The source for ``spec`` (not started). Camera requests apply to cameras only."""
    if spec.kind != "camera" and (width or height or fps or mjpg):
        raise ValueError("--size/--fps/--mjpg apply to cameras; for the test pattern write "
                         "synth:WIDTHxHEIGHT@FPS")
    if spec.kind != "file" and realtime:
        raise ValueError("--realtime applies to video files (cameras and synth: are live already)")
    if spec.kind == "camera":
        return CameraSource(spec.target, width=width, height=height, fps=fps, mjpg=mjpg)
    if spec.kind == "synth":
        given = {k: v for k, v in (("width", spec.width), ("height", spec.height), ("fps", spec.fps)) if v}
        return SyntheticSource(**given)
    return FileSource(spec.target, realtime=realtime)
