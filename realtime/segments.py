"""A long video in parts: cut at keyframes, each part stylized on its own, joined losslessly.

``plan_segments`` reads the packet index of a file's first video stream (no decoding) and
cuts it at keyframes into ``Segment``s of about ``segment_s`` seconds. ``convert_segment``
decodes one part from the keyframe at or before its warm-up start (PyAV seeking; the input is
never re-encoded), runs ``overlap`` frames before the cut through the stylizer and the
smoother without writing them (so the smoother's state at the cut is what it would have been),
then stylizes and encodes the part's own frames into a video-only file. ``join_segments``
remuxes the parts' packets in order into the output (no re-encode) and copies the source's
audio once, packet for packet; the frames keep their pts, so the result has the frame count,
timing and audio of a single-machine ``convert``.

Data contract: a ``Segment``'s bounds are pts in the input stream's ``time_base``, ``None``
meaning unbounded; the parts of a file cover its frames exactly once. Parts travel as the
bytes of an MP4 file (they may be made on another machine).
"""
from __future__ import annotations

import bisect
import itertools
import logging
import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av

from realtime import MediaError
from realtime.convert import ConvertConfig, resolve_preset, settings_for, stop_writer, stylize_batch, write_jobs
from realtime.options import check_frame_size, thread_budget, threads_applied
from realtime.outputs import partial_name
from realtime.smoothing import TemporalSmoother
from realtime.stylizer import Stylizer, resolve_max_side
from realtime.video import FILE_TAGS, FRAGMENTED_MOVFLAGS, FRAGMENTED_SUFFIXES, VideoFileSink, VideoFileSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """Part ``index`` of a video: the frames with ``start <= pts < end`` (None: unbounded).
    ``warm_from``: the pts of the first overlap frame (stylized and smoothed, not written),
    None for the first part; ``frames``/``warm``: how many frames it writes / warms up on."""

    index: int
    start: int | None
    end: int | None
    warm_from: int | None
    frames: int
    warm: int = 0


def frame_index(path: Path) -> tuple[list[int], list[int], Fraction]:
    """The pts of every frame of the first video stream, sorted (presentation order), those of
    its keyframes, and the stream's time_base, read from the packets without decoding. Empty
    lists when some packet has no pts (such a file is not split)."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise MediaError(f"{path}: not a readable media file ({e.strerror or e})") from e
    with container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        pts, keys = [], []
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None:
                    return [], [], stream.time_base
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError as e:  # damaged: not split (decoding says what is wrong)
            log.info("%s: packet index unreadable (%s); not split", path, e.strerror or e)
            return [], [], stream.time_base
        return sorted(pts), sorted(keys), stream.time_base


def plan_segments(path: Path, segment_s: float, overlap: int) -> list[Segment]:
    """Cut ``path`` at keyframes into parts of at least ``segment_s`` seconds; a cut is made
    only where at least half of that is left, so the last part is never a sliver. Each part
    after the first warms up on the ``overlap`` frames before its cut. ``segment_s`` 0, or a
    file without per-packet pts: one part, the whole file."""
    pts, keys, time_base = frame_index(path)
    if segment_s <= 0 or not pts:
        return [Segment(0, None, None, None, len(pts))]
    span = Fraction(segment_s).limit_denominator(1000) / time_base  # in pts units
    cuts, last = [], pts[0]
    for key in keys:
        if key - last >= span and pts[-1] - key >= span / 2:
            cuts.append(bisect.bisect_left(pts, key))
            last = key
    bounds = [0, *cuts, len(pts)]
    parts = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        w = max(0, a - overlap)
        parts.append(Segment(i, pts[a] if i else None, pts[b] if b < len(pts) else None,
                             pts[w] if i else None, b - a, a - w if i else 0))
    return parts


@dataclass
class SegmentResult:
    frames: int  # frames written
    warm: int  # overlap frames stylized to warm the smoother, not written
    skipped: int  # damaged packets or frames skipped (--tolerate-errors)


def _first_frame(path: Path):
    """The first frame of ``path`` (colour transfer's reference for every part)."""
    with VideoFileSource(path) as src:
        return next(iter(src)).pixels


def convert_segment(cfg: ConvertConfig, stylizer: Stylizer, part: Segment, out: Path, *,
                    cores: int, code=None) -> Iterator[int]:
    """Stylize the frames of ``part`` of ``cfg.input`` into ``out`` (an .mp4, video only, every
    frame at its own pts), warming the smoother on the overlap first. A generator: it yields
    the number of frames each batch stylized (written or warm-up) and returns a
    ``SegmentResult``; closing it early discards ``out``. ``cores``: the cores this part may
    use, split between decode, network and encode as ``convert`` does."""
    batch = cfg.batch or (4 if stylizer.device.type == "cuda" else 1)
    max_side = resolve_max_side(cfg.max_side, stylizer.device, "video")
    threads = thread_budget(cores, stylizer.device.type)
    src, src_frames, first = _open_at(cfg, part.warm_from, threads.decode)
    with src, threads_applied(threads):
        check_frame_size(str(cfg.input), src.width, src.height, max_side)
        # No holding of still pixels here: a part can only warm up on its overlap, so two parts
        # would hold different stylized frames of a still shot and jump at the cut; averaging
        # converges within the overlap and joins without a seam (tests/test_batch.py).
        smoother = TemporalSmoother(cfg.smooth, cfg.smooth_strength, still=0)
        reference = first.pixels if part.index == 0 or cfg.preserve_color != "transfer" else _first_frame(cfg.input)
        settings = settings_for(stylizer, cfg, reference, code, smoother.stats_filter)
        sink = VideoFileSink(out, width=src.width, height=src.height, time_base=src.time_base,
                             rate=src.average_rate, codec=cfg.codec, crf=cfg.crf,
                             preset=resolve_preset(cfg.preset, stylizer.device.type, cores),
                             metadata=src.metadata, fragmented=True, threads=threads.encode,
                             # a part starts anywhere: its edit list must count in the input's
                             # time base, not mp4's default milliseconds, or its pts shift
                             muxer_options={"movie_timescale": str(src.time_base.denominator)})
        jobs: queue.Queue = queue.Queue(maxsize=4)
        errors: list = []
        abort = threading.Event()
        writer = threading.Thread(target=write_jobs, args=(sink, jobs, errors, abort), name="encode", daemon=True)
        writer.start()
        done = warmed = 0
        try:
            for warm, group in _batches(_in_part(itertools.chain([first], src_frames), part), batch):
                if errors:
                    break
                n = stylize_batch(stylizer, settings, smoother, group, batch, max_side,
                                  queue.SimpleQueue() if warm else jobs)  # warm-up output is dropped
                warmed, done = (warmed + n, done) if warm else (warmed, done + n)
                yield n
        except BaseException:
            abort.set()
            stop_writer(writer, jobs, abort)
            sink.abort()
            raise
        interrupted = stop_writer(writer, jobs, abort)
        if interrupted is not None or errors:
            sink.abort()
            raise interrupted or errors[0]
        if done == 0:
            sink.abort()
            raise MediaError(f"{cfg.input}: no decodable frames in part {part.index}")
        sink.close()
        return SegmentResult(done, warmed, src.errors)


def _open_at(cfg: ConvertConfig, warm_from: int | None, threads: int):
    """-> (source, its frames, the first one) for a part that starts at ``warm_from``: seeked
    to the keyframe at or before it, or decoded from the start if the seek landed after it."""
    src = VideoFileSource(cfg.input, tolerate_errors=cfg.tolerate_errors, threads=threads, seek_pts=warm_from)
    frames = iter(src)
    first = next(frames, None)
    if warm_from is not None and (first is None or first.pts > warm_from):
        log.debug("%s: seeking landed after pts %s; decoding from the start", cfg.input, warm_from)
        src.close()
        src = VideoFileSource(cfg.input, tolerate_errors=cfg.tolerate_errors, threads=threads)
        frames = iter(src)
        first = next(frames, None)
    if first is None:
        src.close()
        raise MediaError(f"{cfg.input}: no decodable video frames")
    return src, frames, first


def _in_part(frames: Iterable, part: Segment):
    """-> (warm, frame) for the frames of ``part`` and its overlap, in order."""
    for f in frames:
        if part.end is not None and f.pts >= part.end:
            return
        if part.warm_from is not None and f.pts < part.warm_from:
            continue
        yield part.start is not None and f.pts < part.start, f


def _batches(tagged: Iterable, size: int):
    """(warm, frame) pairs -> (warm, [frames]) batches of at most ``size``, never mixing kinds."""
    group, kind = [], None
    for warm, f in tagged:
        if group and (warm != kind or len(group) == size):
            yield kind, group
            group = []
        group.append(f)
        kind = warm
    if group:
        yield kind, group


def join_segments(parts: list[bytes], source: Path, out: Path) -> Path:
    """Remux the video packets of ``parts`` (MP4 files as bytes, in order) into ``out``, with
    ``source``'s first audio stream copied packet for packet and its container tags. Written
    to ``partial_name(out)`` and renamed when complete; removed on any error."""
    import io

    tmp = partial_name(out)
    inputs = [av.open(io.BytesIO(b)) for b in parts]
    audio_in = av.open(str(source))
    fragmented = out.suffix.lower() in FRAGMENTED_SUFFIXES
    options = {"movflags": FRAGMENTED_MOVFLAGS, "flush_packets": "1"} if fragmented else {}
    try:
        template = inputs[0].streams.video[0]
        for i, c in enumerate(inputs[1:], 1):
            if c.streams.video[0].codec_context.extradata != template.codec_context.extradata:
                raise MediaError(f"{out}: part {i} was encoded with other codec settings than part 0; "
                                 "its packets cannot be joined")
        with av.open(str(tmp), "w", options=options) as container:
            container.metadata.update({k: str(v) for k, v in audio_in.metadata.items() if k not in FILE_TAGS})
            video = container.add_stream_from_template(template)
            video.time_base = template.time_base
            audio, packets = None, iter(())
            if audio_in.streams.audio:
                a = audio_in.streams.audio[0]
                audio = container.add_stream_from_template(a)
                audio.metadata.update(a.metadata)
                packets = (p for p in audio_in.demux(a) if p.size)
            pending = next(packets, None)
            last_dts = None
            for i, c in enumerate(inputs):
                for packet in c.demux(c.streams.video[0]):
                    if not packet.size:
                        continue
                    stamp = packet.dts * packet.time_base
                    if last_dts is not None and stamp <= last_dts:
                        raise MediaError(f"{out}: part {i} starts before part {i - 1} ends in decode order "
                                         "(variable frame rate with B-frames); convert this file with "
                                         "--segment-s 0")
                    last_dts = stamp
                    until = packet.pts * packet.time_base
                    while pending is not None and _time(pending) <= until:
                        pending.stream = audio
                        container.mux(pending)
                        pending = next(packets, None)
                    packet.stream = video
                    container.mux(packet)
            while pending is not None:
                pending.stream = audio
                container.mux(pending)
                pending = next(packets, None)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for c in (*inputs, audio_in):
            c.close()
    return out


def _time(packet) -> Fraction:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return stamp * packet.time_base if stamp is not None else Fraction(0)
