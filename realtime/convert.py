"""File conversion: a video or a photo in, the stylized file out.

Video: PyAV decode (its own thread) -> batches -> stylizer -> writer thread (encode + mux,
audio copied packet for packet) so decode, compute and encode overlap. Every frame is kept,
in order, with its original timestamps. Paths, options, free space and the encoder are
checked before any work (``preflight``). The output is written as ``NAME.partial-PID.mp4``
beside the final name (fragmented MP4/MOV: a killed run leaves it playable up to its last
keyframe) and renamed when complete; a later complete conversion to the same name removes
the partials that killed runs left. The first Ctrl-C stops reading, finishes a playable file
of what was done and says so; a second one aborts and removes it. Threads are split between
decode, compute and encode by ``options.thread_budget``. The loop's stages (``stylize_batch``,
``write_jobs``, ``stop_writer``) are public: ``segments`` runs them on a part of a video.
"""
from __future__ import annotations

import itertools
import logging
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realtime import CtrlC, Interrupted, UserError
from realtime.images import DEFAULT_MAX_PIXELS, image_size, is_image_file, read_image, write_image
from realtime.options import (check_frame_size, check_ranges, max_side_arg, opt, thread_budget, threads_applied,
                              usable_cores)
from realtime.smoothing import DEFAULT_SMOOTH, DEFAULT_STRENGTH, SMOOTH_MODES, TemporalSmoother
from realtime.styles import DEFAULT_STYLE, parse_style_arg
from realtime.adain import StyleCode
from realtime.stylizer import CPU_MAX_SIDE, MIN_SIDE, StyleSettings, Stylizer, resolve_max_side
from realtime.outputs import check_output, partials
from realtime.video import MediaError, VideoFileSink, VideoFileSource, check_encoder

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
FEW_CORES = 4  # a CPU this small gives the encoder's cores to the network (resolve_preset)


@dataclass(frozen=True)
class ConvertConfig:
    """Every option of ``rtstyle convert``, with its default and its help."""

    input: Path = opt(help="video or image file (detected by content)", flags=("input",), type=Path)
    output: Path | None = opt(None, "output file: .mp4/.mkv/.mov for videos, .jpg/.png/.webp for images "
                              "(default: INPUT-STEM_STYLE.mp4, or the image's own format, in the current "
                              "directory)", flags=("-o", "--output"), type=Path)
    style: str = opt(DEFAULT_STYLE, "built-in style name or image path; several mixed as A,B:0.3 "
                     "(weights default 1); see `rtstyle styles`", flags=("-s", "--style"))
    alpha: float = opt(1.0, "style strength", range=(0.0, 1.0))
    preserve_color: str = opt("none", "keep the content's colours: 'luminance' (what the bare flag means) "
                              "stylizes brightness only; 'transfer' recolours the style image to the "
                              "content's colour statistics before encoding it (for videos: the first frame's)",
                              nargs="?", const="luminance", choices=("none", "luminance", "transfer"))
    max_side: int | str = opt("auto", "run the network with the longer side at most N pixels, then "
                              "scale back to the input size; 'full' for the input's own size; 'auto': "
                              f"{CPU_MAX_SIDE['video']} for videos and {CPU_MAX_SIDE['image']} for photos "
                              "on a CPU, full size on a GPU", type=max_side_arg, metavar="N", range=(MIN_SIDE, None))
    max_pixels: int = opt(DEFAULT_MAX_PIXELS, "photos: the most pixels decoded; a bigger JPEG is decoded at "
                          "1/2, 1/4 or 1/8 size (and written at that size), other formats are refused",
                          metavar="N", range=(1, None))
    batch: int = opt(0, "frames per batch; 0: 4 on CUDA, 1 on CPU", range=(0, None))
    crf: int = opt(18, "quality, lower is better: crf for libx264/libx265, cq for NVENC", range=(0, 51))
    preset: str = opt("auto", "x264/x265 speed preset: ultrafast, superfast, veryfast, faster, fast, "
                      "medium, slow, slower, veryslow; auto: veryfast when the network runs on a CPU "
                      f"with <= {FEW_CORES} cores (the encoder takes cores from it), medium otherwise")
    codec: str = opt("libx264", "video encoder, e.g. libx264, h264_nvenc when an NVIDIA encoder is present")
    smooth: str = opt(DEFAULT_SMOOTH, "temporal smoothing for videos: 'stats' smooths the content "
                      "statistics at the style step, 'flow' blends with the motion-compensated previous "
                      "output, 'all' does both (see benchmarks/TEMPORAL.md)", choices=SMOOTH_MODES)
    smooth_strength: float = opt(DEFAULT_STRENGTH, "0 = off .. 1 = strongest", metavar="S", range=(0.0, 1.0))
    tolerate_errors: bool = opt(False, "skip undecodable packets of a damaged video instead of stopping "
                                "(the summary says how many)")
    overwrite: bool = opt(False, "replace an existing output file", flags=("-y", "--overwrite"))
    progress: bool = opt(True, "show a progress bar")


@dataclass
class ConvertResult:
    output: Path
    frames: int
    total: int | None
    seconds: float
    interrupted: bool = False
    audio: bool = False
    skipped: int = 0  # damaged packets or frames skipped (--tolerate-errors)
    image: bool = False
    size: tuple[int, int] | None = None  # (width, height) written
    scale: int = 1  # a photo over --max-pixels: decoded at 1/scale


def default_output(cfg: ConvertConfig, is_image: bool) -> Path:
    tag = parse_style_arg(cfg.style)[0][0]
    tag = Path(tag).stem if ("/" in tag or "." in tag) else tag
    suffix = cfg.input.suffix.lower() if is_image else ".mp4"
    if is_image and suffix not in IMAGE_SUFFIXES:
        suffix = ".png"
    return Path.cwd() / f"{cfg.input.stem}_{tag}{suffix}"


def check_paths(cfg: ConvertConfig, is_image: bool) -> Path:
    """Validate input/output before any work: the output's suffix and name, that its folder
    takes a new file and has about the input's size free. Returns the output path."""
    out = cfg.output or default_output(cfg, is_image)
    allowed = IMAGE_SUFFIXES if is_image else VIDEO_SUFFIXES
    kind = "an image" if is_image else "a video"
    if out.suffix.lower() not in allowed:
        raise MediaError(f"{out}: {cfg.input} is {kind}, so the output must end in one of {', '.join(allowed)}")
    if out.exists() and out.resolve() == cfg.input.resolve():
        raise MediaError(f"{out}: the output would overwrite the input")
    if out.exists() and not cfg.overwrite:
        raise MediaError(f"{out}: already exists (pass --overwrite to replace it)")
    check_output(out, need_bytes=cfg.input.stat().st_size)  # same size and quality: about as big
    return out


def settings_for(stylizer: Stylizer, cfg: ConvertConfig, reference: np.ndarray | None,
                 code: StyleCode | None = None, stats_filter=None) -> StyleSettings:
    """The conversion's ``StyleSettings``: ``code`` as given, else ``cfg.style`` encoded once
    (mixed by weight); ``reference`` is the content image that colour transfer matches the style
    images to (the photo, or a video's first frame)."""
    if code is None:
        recolour = reference if cfg.preserve_color == "transfer" else None
        code = stylizer.encode_spec(cfg.style, recolour)
    return StyleSettings(code, cfg.alpha, cfg.preserve_color == "luminance", stats_filter)


def convert_image(cfg: ConvertConfig, stylizer: Stylizer, out: Path, code: StyleCode | None = None) -> ConvertResult:
    t0 = time.perf_counter()
    rgb = read_image(cfg.input, max_pixels=cfg.max_pixels, reduce=True)
    h, w = rgb.shape[:2]
    max_side = resolve_max_side(cfg.max_side, stylizer.device, "image")
    check_frame_size(str(cfg.input), w, h, max_side)
    settings = settings_for(stylizer, cfg, rgb, code)
    styled = stylizer(torch.from_numpy(rgb)[None], settings, max_side)[0].numpy()
    write_image(out, styled)
    scale = round(math.sqrt(math.prod(image_size(cfg.input)) / (w * h)))
    return ConvertResult(out, 1, 1, time.perf_counter() - t0, image=True, size=(w, h), scale=scale)


def write_jobs(sink: VideoFileSink, jobs: queue.Queue, errors: list, abort: threading.Event) -> None:
    """Encode batches in order until the ``None`` sentinel; keep the first error; after
    ``abort`` only drain (so the producer never blocks) and touch the sink no more."""
    while (job := jobs.get()) is not None:
        try:
            for pixels, frame in job:
                if errors or abort.is_set():
                    break
                sink.write(pixels, frame.pts, frame.time_base)
        except Exception as e:  # re-raised in the main thread
            errors.append(e)


def stop_writer(writer: threading.Thread, jobs: queue.Queue, abort: threading.Event) -> BaseException | None:
    """Send the sentinel and wait for the writer, whatever Ctrl-C does meanwhile: the sink
    must never be finalized or aborted while the writer may still use it. Returns the
    ``Interrupted`` that arrived during the wait, if any (the writer was told to stop)."""
    interrupted, sent = None, False
    while not sent or writer.is_alive():
        try:
            if not sent:
                jobs.put(None)
                sent = True
            writer.join()
        except Interrupted as e:
            abort.set()
            interrupted = e
    return interrupted


def resolve_preset(preset: str, device_type: str, cores: int) -> str:
    """``auto`` -> the x264 preset for this machine (``ConvertConfig.preset``'s help); others as given.
    Why veryfast on a small CPU: at 1280x720 on this 2-core VM libx264 took 16.2 ms a frame at
    medium and 7.0 ms at veryfast for a file 4 % smaller at crf 18 (BENCHMARKS.md), time the
    network, sharing those cores, gets back."""
    if preset != "auto":
        return preset
    chosen = "veryfast" if device_type == "cpu" and cores <= FEW_CORES else "medium"
    log.debug("x264 preset auto -> %s (network on %s, %d cores)", chosen, device_type, cores)
    return chosen


def convert_video(cfg: ConvertConfig, stylizer: Stylizer, out: Path, code: StyleCode | None = None) -> ConvertResult:
    t0 = time.perf_counter()
    batch = cfg.batch or (4 if stylizer.device.type == "cuda" else 1)
    max_side = resolve_max_side(cfg.max_side, stylizer.device, "video")
    threads = thread_budget(usable_cores(), stylizer.device.type)
    with VideoFileSource(cfg.input, tolerate_errors=cfg.tolerate_errors, threads=threads.decode) as src, \
            threads_applied(threads), CtrlC("stopping after the current batch; Ctrl-C again to abort") as ctrl_c:
        check_frame_size(str(cfg.input), src.width, src.height, max_side)
        frames = iter(src)
        first = next(frames, None)
        if first is None:
            raise MediaError(f"{cfg.input}: no decodable video frames")
        smoother = TemporalSmoother(cfg.smooth, cfg.smooth_strength)
        settings = settings_for(stylizer, cfg, first.pixels, code, smoother.stats_filter)
        sink = VideoFileSink(
            out, width=src.width, height=src.height, time_base=src.time_base, rate=src.average_rate,
            audio_from=cfg.input if src.audio_stream is not None else None, codec=cfg.codec,
            crf=cfg.crf, preset=resolve_preset(cfg.preset, stylizer.device.type, usable_cores()),
            metadata=src.metadata, fragmented=True, threads=threads.encode,
        )
        jobs: queue.Queue = queue.Queue(maxsize=4)
        errors: list = []
        abort = threading.Event()
        writer = threading.Thread(target=write_jobs, args=(sink, jobs, errors, abort), name="encode", daemon=True)
        bar = tqdm(total=src.frame_count, unit="frame", file=sys.stderr, disable=not cfg.progress,
                   desc=cfg.input.name, dynamic_ncols=True)
        done = 0
        writer.start()
        try:
            pending = []
            for frame in itertools.chain([first], frames):
                if ctrl_c.stop.is_set() or errors:
                    break
                pending.append(frame)
                if len(pending) == batch:
                    done += stylize_batch(stylizer, settings, smoother, pending, batch, max_side, jobs)
                    bar.update(len(pending))
                    pending = []
            if pending and not ctrl_c.stop.is_set() and not errors:
                done += stylize_batch(stylizer, settings, smoother, pending, batch, max_side, jobs)
                bar.update(len(pending))
        except BaseException:
            abort.set()
            stop_writer(writer, jobs, abort)
            sink.abort()
            raise
        finally:
            bar.close()
        interrupted = stop_writer(writer, jobs, abort)
        if interrupted is not None or errors:
            sink.abort()
            raise interrupted or errors[0]
        try:
            sink.close(trim_audio=ctrl_c.stop.is_set())
        except BaseException:
            sink.abort()
            raise
        if not ctrl_c.stop.is_set():
            for stale in partials(out):  # superseded by the file just written
                stale.unlink(missing_ok=True)
                log.info("removed %s, the partial output of a run that was killed", stale)
        return ConvertResult(out, done, src.frame_count, time.perf_counter() - t0,
                             interrupted=ctrl_c.stop.is_set(), audio=src.audio_stream is not None,
                             skipped=src.errors, size=(src.width, src.height))


def stylize_batch(stylizer: Stylizer, settings: StyleSettings, smoother: TemporalSmoother, frames: list,
                   batch: int, max_side: int | None, jobs: queue.Queue) -> int:
    """Stylize ``frames`` as one batch of exactly ``batch`` (the last one padded by repeating
    its final frame, so engines see one shape), smooth them in order, queue them for the writer."""
    pixels = [f.pixels for f in frames]
    pixels += [pixels[-1]] * (batch - len(pixels))
    styled = stylizer(torch.from_numpy(np.stack(pixels)), settings, max_side).numpy()
    smoothed = [smoother(f.pixels, out) for f, out in zip(frames, styled)]
    jobs.put(list(zip(smoothed, frames)))
    return len(frames)


def preflight(cfg: ConvertConfig) -> tuple[bool, Path]:
    """Every check that needs no network: options are in range, input exists and is a photo
    or video, the output's folder takes a new file and has room, the encoder runs with these
    settings. -> (is_image, output path)."""
    check_ranges(cfg)
    try:
        resolve_max_side(cfg.max_side, torch.device("cpu"))
    except ValueError as e:
        raise UserError(str(e)) from None
    if not cfg.input.exists():
        raise MediaError(f"{cfg.input}: no such file")
    if cfg.input.is_dir():
        raise MediaError(f"{cfg.input}: is a directory, not a video or image file")
    is_image = is_image_file(cfg.input)
    out = check_paths(cfg, is_image)
    if is_image:  # a video's size is known once it is opened (convert_video checks it then)
        check_frame_size(str(cfg.input), *image_size(cfg.input), cfg.max_side if isinstance(cfg.max_side, int) else None)
    else:
        check_encoder(cfg.codec, cfg.crf, "medium" if cfg.preset == "auto" else cfg.preset)
    return is_image, out


def convert(cfg: ConvertConfig, stylizer: Stylizer, code: StyleCode | None = None) -> ConvertResult:
    """Convert ``cfg.input`` (photo or video, detected by content) to ``cfg.output``. ``code``:
    a style code to use instead of encoding ``cfg.style`` (e.g. from a style catalogue)."""
    is_image, out = preflight(cfg)
    if code is not None and cfg.preserve_color == "transfer":
        raise ValueError("colour transfer recolours the style image before encoding: pass a style, not a code")
    return (convert_image if is_image else convert_video)(cfg, stylizer, out, code)
