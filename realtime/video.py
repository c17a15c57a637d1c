"""Video files in and out with PyAV: `VideoFileSource` decodes, `VideoFileSink` encodes.

Data contract at this boundary: a frame's pixels are (H, W, 3) uint8 RGB, C-contiguous,
already turned upright; its timing is the decoded pts in its stream's time_base, carried
through unchanged (never invented). The sink copies the audio of a file packet for packet
and only ever leaves a complete file under the final name.

Why one file (~450 lines): both ends share the container and timing contract (time bases,
rotation, VFR, audio stream templates) and the encoder checks; split, each half would need
the other's private helpers.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import tempfile
import threading
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from realtime import MediaError, SinkError, UserError  # noqa: F401  (re-exported)
from realtime.frames import Frame
from realtime.outputs import partial_name

log = logging.getLogger(__name__)

THREAD_TYPES = ("NONE", "SLICE", "FRAME", "AUTO")
# A fragment per keyframe; delay_moov writes the header with the first fragment, so that it can
# hold the edit list that keeps the first frame at its own time (B-frames delay decoding).
FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+delay_moov+default_base_moof"
FRAGMENTED_SUFFIXES = (".mp4", ".mov")
KEYFRAME_EVERY_S = 2  # fragmented output: the most a killed writer loses (plus the encoder's delay)
# Tags that describe the old file, not the content; the muxer writes its own.
FILE_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})
_END = object()


def upright(pixels: np.ndarray, rotation: float) -> np.ndarray:
    """Turn (H, W, 3) pixels by `rotation` degrees counter-clockwise (the convention of
    PyAV's `VideoFrame.rotation`, i.e. of the display matrix), to the nearest quarter turn.
    Returns a C-contiguous array; the input itself when no turn is needed."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, k)) if k else pixels


def _pad_even(pixels: np.ndarray) -> np.ndarray:
    """Pad (H, W, 3) to even H and W by repeating the last row/column (yuv420p needs even)."""
    h, w = pixels.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return pixels
    return np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)


class VideoFileSource:
    """Frames of the first video stream of a file, decoded in a background thread.

    Iterate once: `for frame in source` yields `Frame`s in decode order. Opening decodes the
    first frame (to learn the rotation and upright size), so a file with no decodable video
    frame is refused by the constructor. Corrupt or truncated data raises MediaError naming
    the file and the frames decoded so far; with `tolerate_errors=True` the bad packet or
    frame is skipped and counted in `errors`. `threads`: FFmpeg decoder threads (0: its own
    choice, about one per core). `seek_pts` (in the stream's time_base): start decoding at the
    keyframe at or before it, not at the file's start (no re-encode; frames before `seek_pts`
    from that keyframe on still come, and a container that cannot seek exactly may start
    earlier or later: callers that need a frame range check the pts they get).

    Attributes: path; width, height (after rotation); rotation (counter-clockwise degrees in
    [0, 360), `VideoFrame.rotation`'s convention: a phone held upright records 270);
    time_base; average_rate (Fraction | None); frame_count (the container's count, for
    progress; None if unknown); duration_s (float | None); audio_stream (PyAV stream | None);
    metadata (container tags); errors.
    """

    def __init__(self, path: str | os.PathLike, *, tolerate_errors: bool = False,
                 thread_type: str = "AUTO", threads: int = 0, queue_size: int = 8,
                 seek_pts: int | None = None):
        self.path = Path(path)
        if thread_type not in THREAD_TYPES:
            raise ValueError(f"thread_type must be one of {THREAD_TYPES}, got {thread_type!r}")
        if not self.path.is_file():
            raise MediaError(f"{self.path}: no such file")
        self.tolerate_errors = tolerate_errors
        self.errors = 0
        self._decoded_count = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as e:
            raise MediaError(f"{self.path}: not a readable media file ({_reason(e)})") from e
        try:
            self._open_video(thread_type, threads, seek_pts)
        except BaseException:
            self._container.close()
            raise

    def _open_video(self, thread_type: str, threads: int, seek_pts: int | None) -> None:
        container = self._container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise MediaError(f"{self.path}: no video stream (streams: {', '.join(kinds)})")
        stream = self._stream = container.streams.video[0]
        stream.thread_type = thread_type
        stream.codec_context.thread_count = threads
        self.time_base: Fraction = stream.time_base
        self.average_rate: Fraction | None = stream.average_rate or None
        self.frame_count: int | None = stream.frames or None
        self.duration_s: float | None = (
            float(stream.duration * stream.time_base) if stream.duration
            else container.duration / av.time_base if container.duration else None)
        self.audio_stream = container.streams.audio[0] if container.streams.audio else None
        self.metadata: dict[str, str] = dict(container.metadata)
        if seek_pts is not None:
            try:
                container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as e:
                raise MediaError(f"{self.path}: cannot seek to pts {seek_pts} ({_reason(e)})") from e
        self._frames = self._decode()
        self._first = next(self._frames, None)
        if self._first is None:
            raise MediaError(f"{self.path}: no decodable video frames")
        self.rotation: int = round(self._first.rotation) % 360
        w, h = self._first.width, self._first.height
        self.width, self.height = (h, w) if self.rotation % 180 == 90 else (w, h)

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; corrupt packets go through `_bad_data`. Runs in one thread at a time."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as e:  # the demuxer gave up: flush what the decoder holds
                self._bad_data(e)
                packet = None
            if packet is not None and packet.is_corrupt:  # e.g. cut short by a truncated file
                self._bad_data(f"packet at pts {packet.pts} is corrupt")
                continue
            try:
                frames = self._stream.decode(packet)
            except av.FFmpegError as e:
                self._bad_data(e)
                continue
            for frame in frames:
                if frame.is_corrupt:
                    self._bad_data(f"frame at pts {frame.pts} is corrupt")
                    continue
                self._decoded_count += 1
                yield frame
            if packet is None:
                return

    def _bad_data(self, error: av.FFmpegError | str) -> None:
        """Raise MediaError, or with tolerate_errors count the bad packet/frame and go on."""
        if not self.tolerate_errors:
            cause = error if isinstance(error, BaseException) else None
            raise MediaError(f"{self.path}: corrupt or truncated video data after "
                             f"{self._decoded_count} decoded frames ({_reason(error)}); "
                             "--tolerate-errors skips the damaged parts and keeps the rest") from cause
        self.errors += 1

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError(f"{self.path}: a VideoFileSource can be iterated only once")
        self._thread = threading.Thread(target=self._produce, name=f"decode {self.path.name}",
                                        daemon=True)
        self._thread.start()
        return self._consume()

    def _produce(self) -> None:
        try:
            for index, vf in enumerate(itertools.chain([self._first], self._frames)):
                pixels = upright(np.ascontiguousarray(vf.to_ndarray(format="rgb24")), vf.rotation)
                if not self._put(Frame(pixels, vf.pts, vf.time_base, index)):
                    return
        except Exception as e:  # handed to the consumer, which re-raises it
            self._put(e)
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        """Block until there is room or the source is closed; False when closed."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self) -> Iterator[Frame]:
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._stop.set()

    def close(self) -> None:
        """Stop the decode thread (within one frame) and close the file. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            while not self._queue.empty():  # wake a consumer blocked in another thread
                self._queue.get_nowait()
            self._queue.put_nowait(_END)
        self._container.close()

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Collect what C libraries write to file descriptor 2 while inside (x265 and SVT-AV1
    print banners there, x264 its errors) into the yielded list, one entry per line."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += [ln for ln in sink.read().decode(errors="replace").splitlines() if ln.strip()]


def encoder_options(codec: str, crf: int, preset: str, *, low_delay: bool = False) -> dict[str, str]:
    """The encoder's options: crf/preset for libx264/libx265 (``low_delay``: no look-ahead or
    B-frames, each frame leaves the encoder at once), NVENC's cq, none for the others."""
    if codec in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset}
        if low_delay:
            options["tune"] = "zerolatency"
        if codec == "libx265":
            options["x265-params"] = "log-level=error"  # else a 20-line banner on stderr
        return options
    if codec.endswith("_nvenc"):  # constant quality; NVENC has its own preset names
        return {"rc": "vbr", "cq": str(crf)}
    return {}


def check_encoder(codec: str, crf: int = 18, preset: str = "medium") -> None:
    """Open ``codec`` with these settings on a tiny frame, so an encoder that cannot run here
    (NVENC without an NVIDIA encoder, a name this FFmpeg build lacks) or a bad setting (an
    unknown preset) fails before any work, with the fix. The library's own output is captured
    (and quoted when it explains the failure), not printed."""
    if codec not in av.codecs_available:
        raise MediaError(f"video encoder {codec!r} is not in this PyAV build; `rtstyle doctor` lists those that work")
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 25)
    ctx.options = encoder_options(codec, crf, preset)
    with _stderr_captured() as said:
        try:
            ctx.open()
            error = None
        except (av.FFmpegError, OSError) as e:
            error = e
        finally:
            del ctx  # x265 prints its summary when closed: capture that too
    if error is None:
        return
    said = [ln for ln in said if "error" in ln.lower()] or said
    if said:  # the library said why (x264: "invalid preset 'x'")
        raise MediaError(f"video encoder {codec!r} does not open with --crf {crf} --preset {preset}: "
                         f"{'; '.join(said)}") from error
    raise MediaError(f"video encoder {codec!r} cannot run on this machine ({error}); "
                     "use --codec libx264, or see `rtstyle doctor`") from error


class VideoFileSink:
    """Encode (H, W, 3) uint8 RGB frames into a video file, optionally with another file's audio.

    Writes to ``partial_name(path)`` (``STEM.partial-PID.SUFFIX`` beside it) and renames it
    to `path` in `close()`; `abort()` (or an exception inside `with`) removes it. Odd sizes
    are padded to even by repeating the last row/column. Each frame's pts is kept (converted
    to `time_base`), so variable frame rate survives. Audio from `audio_from` is copied packet
    for packet with its stream's tags (language), interleaved as video is written.
    `crf`/`preset` apply to libx264/libx265; `crf` is NVENC's `cq`; `threads`: the encoder's
    threads (0: its own choice). `fragmented=True` (mp4/mov) writes a file that stays
    playable if the process dies mid-write: a fragment goes to disk at each keyframe, and a
    keyframe is forced every `KEYFRAME_EVERY_S` seconds of the frames' own time (wall time
    for live input). `low_delay`: no encoder look-ahead, so a killed writer loses no more.
    `muxer_options`: more options for the muxer (e.g. mp4's `movie_timescale`).
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, time_base: Fraction,
                 rate: Fraction | None, audio_from: str | os.PathLike | None = None,
                 codec: str = "libx264", crf: int = 18, preset: str = "medium",
                 metadata: dict | None = None, fragmented: bool = False, low_delay: bool = False,
                 threads: int = 0, muxer_options: dict[str, str] | None = None):
        self.path = Path(path)
        if width < 1 or height < 1 or time_base <= 0:
            raise ValueError(f"{self.path}: bad size {width}x{height} or time_base {time_base}")
        self.width, self.height = width, height
        self.time_base = Fraction(time_base)
        self.rate = Fraction(rate) if rate else None
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.has_audio = False
        self._tmp = partial_name(self.path)
        self._frames_written = 0
        self._last_pts: int | None = None
        self._next_key_s: Fraction | None = None
        self._state = "open"
        self.fragmented = fragmented and self.path.suffix.lower() in FRAGMENTED_SUFFIXES
        self._out = self._audio_in = self._audio_packets = self._pending = None
        with self._guard("opening"):
            # Without flush_packets the mp4 muxer keeps finished fragments in memory.
            options = {"movflags": FRAGMENTED_MOVFLAGS, "flush_packets": "1"} if self.fragmented else {}
            self._out = av.open(str(self._tmp), "w", options={**options, **(muxer_options or {})})
            self._out.metadata.update({k: str(v) for k, v in (metadata or {}).items()
                                       if k not in FILE_TAGS})
            encoder = encoder_options(codec, crf, preset, low_delay=low_delay)
            self._video = self._out.add_stream(codec, rate=self.rate, options=encoder)
            self._video.width, self._video.height = width + width % 2, height + height % 2
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.thread_count = threads
            self._video.time_base = self._video.codec_context.time_base = self.time_base
            if self.audio_from is not None:
                self._open_audio(self.audio_from)

    def _open_audio(self, source: Path) -> None:
        try:
            self._audio_in = av.open(str(source))
        except av.FFmpegError as e:
            raise MediaError(f"{source}: cannot read audio ({_reason(e)})") from e
        if not self._audio_in.streams.audio:
            return
        template = self._audio_in.streams.audio[0]
        self._audio = self._out.add_stream_from_template(template)
        self._audio.metadata.update(template.metadata)  # the language tag, else "und"
        self._audio_packets = self._audio_in.demux(template)
        self.has_audio = True

    @property
    def frames_written(self) -> int:
        return self._frames_written

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Any failure aborts the file; write errors become SinkError naming the path."""
        try:
            yield
        except (OSError, av.FFmpegError) as e:
            self.abort()
            raise SinkError(f"{self.path}: {_reason(e)} (while {doing})") from e
        except KeyboardInterrupt:
            # Python delivers the signal between bytecodes, so the muxer is consistent: a
            # fragmented file stays valid and close() can still finish it. Others are dropped.
            if not self.fragmented:
                self.abort()
            raise
        except BaseException:
            self.abort()
            raise

    def write(self, pixels: np.ndarray, pts: int | None = None,
              time_base: Fraction | None = None) -> None:
        """Encode one frame: pixels (height, width, 3) uint8 RGB as declared at open.

        pts is in `time_base` (default: the sink's); None means frames-written / rate.
        Timestamps must increase strictly after conversion to the sink's time_base.
        """
        if self._state != "open":
            raise SinkError(f"{self.path}: write() after the sink was {self._state}")
        if pixels.shape != (self.height, self.width, 3) or pixels.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected ({self.height}, {self.width}, 3) uint8 RGB, "
                             f"got {pixels.shape} {pixels.dtype}")
        out_pts = self._stream_pts(pts, time_base)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad_even(pixels)), format="rgb24")
        frame.pts, frame.time_base = out_pts, self.time_base
        seconds = out_pts * self.time_base
        if self.fragmented and (self._next_key_s is None or seconds >= self._next_key_s):
            frame.pict_type = av.video.frame.PictureType.I  # a keyframe: a fragment ends here
            self._next_key_s = seconds + KEYFRAME_EVERY_S
        with self._guard("encoding video"):
            self._out.mux(self._video.encode(frame))
            self._frames_written += 1
            self._last_pts = out_pts
            self._mux_audio_until(out_pts * self.time_base)

    def _stream_pts(self, pts: int | None, time_base: Fraction | None) -> int:
        if pts is None:
            if self.rate is None:
                raise ValueError(f"{self.path}: pts is None and the sink has no rate")
            seconds = Fraction(self._frames_written) / self.rate
        else:
            seconds = pts * Fraction(time_base if time_base is not None else self.time_base)
        out_pts = round(seconds / self.time_base)
        if self._last_pts is not None and out_pts <= self._last_pts:
            raise ValueError(f"{self.path}: pts {pts} ({float(seconds):.6f} s) does not come "
                             f"after the previous frame (pts {self._last_pts} in {self.time_base})")
        return out_pts

    def _mux_audio_until(self, seconds: Fraction | None) -> None:
        """Copy source audio packets whose time is <= seconds (all of them when None)."""
        while self._audio_packets is not None:
            if self._pending is None:
                self._pending = next(self._audio_packets, None)
                if self._pending is None:
                    self._audio_packets = None
                    return
            packet = self._pending
            if not packet.size:  # the demuxer's end-of-stream marker
                self._pending = None
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and stamp is not None and stamp * packet.time_base > seconds:
                return
            packet.stream = self._audio
            self._out.mux(packet)
            self._pending = None

    def close(self, *, trim_audio: bool = False) -> Path:
        """Flush the encoder, copy the remaining audio, finalize and rename; return `path`.

        `trim_audio`: copy audio only up to the end of the last frame written (for a file cut
        short on purpose, e.g. by Ctrl-C), not the rest of the source's soundtrack."""
        if self._state == "closed":
            return self.path
        if self._state != "open":
            raise SinkError(f"{self.path}: close() after the sink was {self._state}")
        if self._frames_written == 0:
            self.abort()
            raise SinkError(f"{self.path}: no frames were written; no file created")
        with self._guard("finalizing"):
            self._out.mux(self._video.encode(None))
            self._mux_audio_until(self._video_end() if trim_audio else None)
            self._out.close()
            if self._audio_in is not None:
                self._audio_in.close()
            os.replace(self._tmp, self.path)
        self._state = "closed"
        return self.path

    def _video_end(self) -> Fraction:
        """Time at which the last written frame ends (its pts plus one frame at `rate`)."""
        step = 1 / self.rate if self.rate else Fraction(0)
        return self._last_pts * self.time_base + step

    def abort(self) -> None:
        """Discard the output: close without finalizing, remove the temporary file. Idempotent."""
        if self._state != "open":
            return
        self._state = "aborted"
        for container in (self._out, self._audio_in):
            if container is None:
                continue
            try:
                container.close()
            except (OSError, av.FFmpegError):
                pass  # the file is being thrown away; the error that led here is what matters
        self._audio_in = self._audio_packets = self._pending = None
        try:
            self._tmp.unlink(missing_ok=True)
        except OSError as e:  # e.g. a read-only folder: the error that led here is what matters
            log.debug("%s: could not remove %s (%s)", self.path, self._tmp, _reason(e))

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
