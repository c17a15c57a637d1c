"""``rtstyle live``: a camera, test pattern or file -> stylizer -> smoother -> live sinks.

Latency first: batch 1, and the source keeps only its newest frame (stale frames are
dropped there, counted, never queued). The loop runs in the calling thread; the source
captures in its own. A ``Meter`` reports fps, capture->output latency p50/p95, the output
frame interval and drops about once a second on one updating stderr line, never per frame.
Stops on ``frames``, the window's quit key, the source's end, or Ctrl-C; in every case the
sinks are closed properly, so a recording is complete and playable. A recording of a file
(``-i FILE``) keeps the file's timing and audio. Without a window the command prints the
meter and one summary line; with one, also a first line with the keys.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import threading
import time
from array import array
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realtime import CtrlC
from realtime.artworks import DEFAULT_STYLE
import engines
from realtime import options
from realtime.measure import Meter
from realtime.options import opt
from realtime.smoothing import DEFAULT_SMOOTH, SMOOTH_MODES
from realtime.stylizer import CPU_MAX_SIDE, resolve_max_side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    """Every option of ``rtstyle live``, with its default and its help."""

    input: str = opt("0", "camera index (0), /dev/videoN, a camera URL, synth: or synth:WxH@FPS (a moving "
                     "test pattern), or a video file", flags=("-i", "--input"))
    realtime: bool = opt(False, "play a file at its own rate, dropping frames when behind (otherwise as "
                         "fast as frames are stylized, none dropped)")
    size: str | None = opt(None, "camera: ask for this size (default: the driver's)", metavar="WxH")
    fps: float | None = opt(None, "camera: ask for this frame rate (default: the driver's)", type=float)
    mjpg: bool = opt(False, "camera: ask for MJPG (often needed for 720p+ at 30 fps)")
    styles: tuple[str, ...] = opt((DEFAULT_STYLE,), "a built-in name, an image, or a mix A,B:0.3; repeat for "
                                  f"several, switched with n/p in the window (default: {DEFAULT_STYLE})",
                                  flags=("-s", "--style"), action="append", cli_default=None, metavar="STYLE")
    alpha: float = opt(1.0, "style strength", range=(0.0, 1.0))
    alpha_step: float = opt(0.1, "+/- key step", metavar="STEP", range=(0.0, 1.0))
    preserve_color: bool = opt(False, "stylize brightness only (key c toggles)")
    max_side: int | str | None = opt("auto", "run the network with the longer side at most N pixels; 'full' "
                                     f"for the frame's own size; 'auto': {CPU_MAX_SIDE['live']} on a CPU, full "
                                     "size on a GPU", type=options.max_side_arg, metavar="N", range=(16, None))
    smooth: str | None = opt(None, f"temporal smoothing (default: {DEFAULT_SMOOTH}; key s toggles)",
                             choices=SMOOTH_MODES)
    smooth_strength: float | None = opt(None, "smoothing strength (default: the smoother's)",
                                        type=float, metavar="S", range=(0.0, 1.0))
    window: bool = opt(True, "show a preview window")
    vcam: bool = opt(False, "send to a virtual camera (pip install 'rtstyle[vcam]')")
    stream: str | None = opt(None, "stream H.264: udp://HOST:PORT (MPEG-TS), rtmp://HOST/APP/KEY, or "
                             "DIR/NAME.m3u8 (HLS) (default: none)", metavar="URL")
    record: Path | None = opt(None, "record to FILE (fragmented MP4; a file input's timing and audio are "
                              "kept) (default: none)", type=Path, metavar="FILE")
    overwrite: bool = opt(False, "replace an existing --record file", flags=("-y", "--overwrite"))
    frames: int | None = opt(None, "stop after N output frames (default: until stopped)", type=int, metavar="N",
                             range=(1, None))
    snapshot_dir: Path = opt(Path("."), "where the space key saves PNGs", type=Path, metavar="DIR")
    meter: bool = opt(True, "print an fps/latency line about once a second")


@dataclass
class LiveStats:
    frames: int = 0  # frames stylized and written
    captured: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stop: str = ""  # "frames", "quit", "source ended", "interrupted"
    meter_lines: int = 0
    latencies: array = dataclasses.field(default_factory=lambda: array("d"))  # seconds, in order

    def latency(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if len(self.latencies) else float("nan")


class Controls:
    """This stream's settings and what the window's keys do to them. ``styles``: (label,
    StyleCode) pairs, encoded once; ``settings`` is the ``StyleSettings`` the loop passes with
    every frame (a key makes a new one: a switch is a swap of two small tensors)."""

    def __init__(self, styles, smoother=None, *, alpha: float = 1.0, preserve_color: bool = False,
                 alpha_step: float = 0.1, snapshot_dir: Path = Path(".")):
        from realtime.stylizer import StyleSettings

        if not styles:
            raise ValueError("live needs at least one style")
        self.styles, self.smoother = list(styles), smoother
        self.alpha_step, self.snapshot_dir = alpha_step, Path(snapshot_dir)
        self.index, self.smoothing, self.snapshots = 0, smoother is not None, 0
        self.settings = StyleSettings(self.styles[0][1], alpha, preserve_color, self._stats_filter())

    def _stats_filter(self):
        return self.smoother.stats_filter if self.smoothing and self.smoother is not None else None

    def _set(self, **changes) -> None:
        self.settings = dataclasses.replace(self.settings, **changes)

    def _new_look(self) -> None:
        """The picture's look changed: the smoother must not blend in (or hold) the old one."""
        if self.smoother is not None:
            self.smoother.reset()

    def status(self) -> str:
        s = self.settings
        return (f"{self.styles[self.index][0]} | alpha {s.alpha:.1f} | smoothing "
                f"{'on' if self.smoothing else 'off'} | colour {'kept' if s.preserve_color else 'styled'}")

    def apply(self, action: str, styled: np.ndarray) -> bool:
        """Apply ``action`` (see sinks.KEYS); ``styled`` is the frame a snapshot saves. True: quit."""
        if action in ("next_style", "prev_style"):
            self.index = (self.index + (1 if action == "next_style" else -1)) % len(self.styles)
            self._set(code=self.styles[self.index][1])
            self._new_look()
        elif action in ("alpha_up", "alpha_down"):
            step = self.alpha_step if action == "alpha_up" else -self.alpha_step
            self._set(alpha=round(min(1.0, max(0.0, self.settings.alpha + step)), 6))
            self._new_look()
        elif action == "smooth" and self.smoother is not None:
            self.smoothing = not self.smoothing
            self.smoother.reset()
            self._set(stats_filter=self._stats_filter())
        elif action == "color":
            self._set(preserve_color=not self.settings.preserve_color)
            self._new_look()
        elif action == "snapshot":
            from realtime.images import write_image

            self.snapshots += 1
            path = self.snapshot_dir / f"rtstyle-{time.strftime('%Y%m%d-%H%M%S')}-{self.snapshots}.png"
            write_image(path, styled)
            log.info("snapshot: %s", path)
        elif action == "quit":
            return True
        log.info("live: %s", self.status())
        return False


def run_live(cfg: LiveConfig, stylizer, source, sinks, *, controls: Controls,
             meter: Meter | None = None, stop: threading.Event | None = None) -> LiveStats:
    """Read the newest frame, stylize it (batch 1), smooth it, write it to every sink, until
    ``cfg.frames``, a quit key, the source's end or Ctrl-C. The caller starts the source and
    opens and closes the sinks; the source is closed here when the loop ends, so that its
    counts are final (``captured == frames + dropped``). ``stop`` (e.g. ``CtrlC().stop``)
    ends the loop between frames; a KeyboardInterrupt ends it wherever it lands. ``controls``
    holds the stream's settings, its styles and the smoother."""
    smoother = controls.smoother
    meter = meter or Meter(enabled=cfg.meter)
    stats, start = LiveStats(), time.monotonic()
    try:
        while cfg.frames is None or stats.frames < cfg.frames:
            if stop is not None and stop.is_set():
                stats.stop = "interrupted"
                break
            frame = source.read(timeout=0.5)
            if frame is None:
                if source.finished:
                    stats.stop = "source ended"
                    break
                meter.tick(time.monotonic(), source.dropped, source.captured)  # e.g. camera lost
                continue
            pixels = torch.from_numpy(frame.pixels)[None]
            styled = stylizer(pixels, controls.settings, cfg.max_side)[0].numpy()
            if smoother is not None and controls.smoothing:
                styled = smoother(frame.pixels, styled)
            for sink in sinks:
                sink.write(styled, frame)
            now = time.monotonic()
            stats.frames += 1
            stats.latencies.append(now - frame.captured_at)
            meter.record(frame.captured_at, now)
            meter.tick(now, source.dropped, source.captured)
            actions = [a for a in (sink.poll() for sink in sinks) if a]
            if any(controls.apply(a, styled) for a in actions):
                stats.stop = "quit"
                break
            if actions:
                for sink in sinks:
                    getattr(sink, "set_status", lambda text: None)(controls.status())
        else:
            stats.stop = "frames"
    except KeyboardInterrupt:
        stats.stop = "interrupted"
    finally:
        meter.close()
    source.close()  # stops counting: captured == frames read + dropped
    stats.captured, stats.dropped = source.captured, source.dropped
    stats.seconds, stats.meter_lines = time.monotonic() - start, meter.lines
    return stats


def encode_styles(stylizer, entries) -> list:
    """Each ``-s`` entry (a name, path or mix "a,b:0.3") -> (label, StyleCode), encoded once."""
    return [(entry, stylizer.encode_spec(entry)) for entry in entries]


def make_smoother(cfg: LiveConfig):
    """The TemporalSmoother for ``cfg.smooth`` (None for "none")."""
    if cfg.smooth == "none":
        return None
    from realtime.smoothing import DEFAULT_SMOOTH, TemporalSmoother

    kwargs = {} if cfg.smooth_strength is None else {"strength": cfg.smooth_strength}
    mode = cfg.smooth or DEFAULT_SMOOTH
    return None if mode == "none" else TemporalSmoother(mode, **kwargs)


def _size(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise ValueError(f"--size must be WIDTHxHEIGHT, e.g. 1280x720, got {text!r}")
    return int(w), int(h)


def register_cli(sub) -> None:
    """Add ``rtstyle live`` to the sub-command parsers ``sub``."""
    from realtime.options import add_config_args, add_model_args
    from realtime.sinks import KEYS_HELP

    p = sub.add_parser("live", help="stylize a camera, a test pattern or a file live",
                       description="Stylize a camera, a moving test pattern or a video file live, "
                       "to a window, a virtual camera, a network stream and/or a recording. "
                       f"Window keys: {KEYS_HELP}.")
    add_config_args(p, LiveConfig)
    add_model_args(p)
    p.set_defaults(func=run)


# --record needs at least this much free space to start (a full disk later stops it cleanly)
RECORD_ROOM = 64 * 2**20


def config_from_args(args: argparse.Namespace) -> LiveConfig:
    """Build and check the LiveConfig (bad values raise ValueError or UserError naming the
    option; a --record folder that takes no file or has no room, MediaError)."""
    cfg = options.config_from_args(LiveConfig, args, styles=tuple(args.styles or LiveConfig.styles))
    from realtime.styles import parse_style_arg

    for entry in cfg.styles:
        parse_style_arg(entry)
    _size(cfg.size)
    if not cfg.snapshot_dir.is_dir():
        raise ValueError(f"--snapshot-dir {cfg.snapshot_dir}: not a directory")
    if cfg.record is not None:
        if cfg.record.exists() and not cfg.overwrite:
            raise ValueError(f"--record {cfg.record}: already exists (pass --overwrite to replace it)")
        from realtime.outputs import check_output

        check_output(cfg.record, need_bytes=RECORD_ROOM)
    return cfg


def run(args: argparse.Namespace) -> int:
    """``rtstyle live``: build everything, run the loop, report. Ctrl-C is a normal stop (0)."""
    from realtime.capture import open_source, parse_input
    from realtime.sinks import KEYS_HELP, RecordSink, StreamSink, VirtualCameraSink, WindowSink

    cfg = config_from_args(args)
    options.check_device(args.device)  # before a camera or window is opened
    spec = parse_input(cfg.input)
    width, height = _size(cfg.size)
    with ExitStack() as stack:
        sinks = []
        if cfg.window:  # first, before PyAV is imported (importing av before the GUI can freeze it)
            sinks.append(stack.enter_context(WindowSink()))
        source = open_source(spec, realtime=cfg.realtime, width=width, height=height, fps=cfg.fps, mjpg=cfg.mjpg)
        stack.callback(source.close)
        device = engines.resolve_device(args.device)
        cfg = dataclasses.replace(cfg, max_side=resolve_max_side(cfg.max_side, device, "live"))
        options.check_frame_size(source.name, source.width, source.height, cfg.max_side)
        stylizer = options.open_stylizer(args)
        threads = stack.enter_context(options.threads_applied(
            options.thread_budget(options.usable_cores(), stylizer.device.type,
                                  codecs=bool(cfg.record or cfg.stream or spec.kind == "file"))))
        smoother = make_smoother(cfg)
        controls = Controls(encode_styles(stylizer, cfg.styles), smoother, alpha=cfg.alpha,
                            preserve_color=cfg.preserve_color, alpha_step=cfg.alpha_step,
                            snapshot_dir=cfg.snapshot_dir)
        size = (source.width, source.height, source.fps)
        log.debug("warming up the stylizer at %dx%d", source.width, source.height)
        stylizer.warm_up(source.height, source.width, cfg.max_side)
        if cfg.record is not None:
            timing = {"time_base": source.time_base, "audio_from": spec.target} if spec.kind == "file" else {}
            sinks.append(stack.enter_context(RecordSink(cfg.record, *size, threads=threads.encode, **timing)))
        if cfg.stream is not None:
            sinks.append(stack.enter_context(StreamSink(cfg.stream, *size)))
        if cfg.vcam:
            sinks.append(stack.enter_context(VirtualCameraSink(*size)))
        if cfg.window:  # the keys; without a window the meter and the summary are all there is
            outputs = ", ".join(s.name for s in sinks)
            print(f"rtstyle: live: {source.name} {source.width}x{source.height} -> {outputs}; "
                  f"{controls.status()}; keys: {KEYS_HELP}; Ctrl-C stops", file=sys.stderr)
        elif len(sinks) == 0:
            log.warning("live: no output (add --record, --stream, --vcam or a window)")
        stack.enter_context(source)
        with CtrlC("stopping after this frame; Ctrl-C again to abort") as ctrl_c:
            stats = run_live(cfg, stylizer, source, sinks, controls=controls, stop=ctrl_c.stop)
    print(f"rtstyle: live: {stats.frames} frames in {stats.seconds:.1f} s "
          f"({stats.frames / max(stats.seconds, 1e-9):.1f} fps), latency p50 {stats.latency(50) * 1e3:.0f} ms "
          f"p95 {stats.latency(95) * 1e3:.0f} ms, dropped {stats.dropped} of {stats.captured} captured; "
          f"stopped: {stats.stop}" + (f"; recorded {cfg.record}" if cfg.record and stats.frames else ""),
          file=sys.stderr)
    return 0
