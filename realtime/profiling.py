"""``rtstyle bench --mode pipeline``: where the time goes outside the network too.

Three parts (``--parts``), all on real frames and the real stages:

* ``stages``: one batch at a time through the ``Stylizer``'s own stages, called as the
  product calls them: prepare (host -> device, resize to ``--max-side``, pad to a multiple of
  8), encode, restyle (AdaIN with the smoother's statistics filter), decode, finish (crop,
  resize back, device -> host); then smoothing (``TemporalSmoother``, on the host, frame by
  frame) and write (PyAV libx264, ``VideoFileSink.write``; the flush at the end is spread over
  the frames). The stages run in this order in the product (the flow part of the smoother
  works on host frames, after download). Each stage is synchronized before and after, so it is timed
  alone: this perturbs the overlap the real pipeline has (decode, compute and encode run in
  different threads) and the sum is a serial upper bound, not the pipeline's throughput.
  Reported per stage: wall ms (``perf_counter`` after a device synchronize), on CUDA the
  GPU ms (CUDA events), and process CPU ms (all threads, so x264's own threads count).
  The same frames through ``Stylizer.__call__`` as a whole are timed too, as a check that
  the five stylizer stages add up to what the product runs.
* ``convert``: ``realtime.convert.convert`` of a clip end to end (decode thread, style
  encoding, stylize, smoothing, encode thread, file written; on CUDA after one untimed pass
  that builds the engines for the clip's shape): frames/s, and each thread's CPU time read
  from ``/proc/self/task`` (Linux; sampled every 20 ms, so a thread's last 20 ms may be missed).
* ``live``: ``realtime.live.run_live`` from the synthetic source at ``--live-size`` (30 fps,
  batch 1, newest frame wins), no window or other sink: capture -> output latency p50/p95.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from realtime.bench_setup import SIZES, BenchConfig, bench_weights, counts, default_clip, jsonable, parse_variant, real_frames
from realtime.measure import StageClock, ThreadCPU, machine, percentiles
from realtime.stylizer import StyleSettings, Stylizer, compute_size, resolve_max_side

STAGES = ("prepare", "encode", "restyle", "decode", "finish", "smoothing", "write")
DEVICE_STAGES = STAGES[:5]  # Stylizer's stages: what Stylizer.__call__ composes


def build_stylizer(net, backend: str, device: torch.device) -> Stylizer:
    v = parse_variant(backend) if backend != "auto" else None
    if v is not None and v.graphs:
        raise ValueError(f"--backends {backend}: the pipeline runs the product's engines; no CUDA graphs here")
    return Stylizer.from_network(net, backend=v.engine if v else "auto", device=device,
                                 precision=v.precision if v else None)


def profile_stages(stylizer: Stylizer, code, frames: torch.Tensor, batch: int, cfg: BenchConfig,
                   warmup: int, iters: int, smoother, workdir: Path) -> dict:
    """Per-stage times for batches of ``frames`` ((N, H, W, 3) uint8 CPU, N >= batch)."""
    from realtime.video import VideoFileSink

    device = stylizer.device
    n, h, w, _ = frames.shape
    batches = [frames[i:i + batch] for i in range(0, n - batch + 1, batch)] or [frames[:batch]]
    settings = StyleSettings(code, stats_filter=smoother.stats_filter if smoother is not None else None)
    side = resolve_max_side(cfg.max_side, device, "video")  # as convert runs it
    stylizer(batches[0], settings, side)  # builds the engines
    size = compute_size(h, w, side)
    clock = StageClock(device, STAGES)
    from realtime.convert import resolve_preset
    from realtime.options import usable_cores

    sink = VideoFileSink(workdir / f"stages_{batch}.mp4", width=w, height=h, time_base=Fraction(1, 25),
                         rate=Fraction(25), preset=resolve_preset(cfg.preset, device.type, usable_cores()))
    whole: list[float] = []

    def smooth_stage(content, styled):
        return [smoother(c, s) for c, s in zip(content, styled)] if smoother is not None else list(styled)

    def write_stage(styled):
        for s in styled:
            sink.write(s)

    with sink, torch.inference_mode():
        for i in range(warmup + iters):
            if i == warmup:  # drop the warm-up calls' times
                clock.times = StageClock(device, STAGES).times
                whole.clear()
            x = batches[i % len(batches)]
            prepared = clock("prepare", stylizer.prepare, x, side)
            feats = clock("encode", stylizer.encode, prepared.padded)
            t = clock("restyle", stylizer.restyle, feats, settings)
            out = clock("decode", stylizer.decode, t)
            host = clock("finish", lambda: stylizer.finish(out, prepared, settings).numpy())
            styled = clock("smoothing", smooth_stage, x.numpy(), host)
            clock("write", write_stage, styled)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            sync()
            t0 = time.perf_counter()
            stylizer(x, settings, side)
            sync()
            whole.append((time.perf_counter() - t0) * 1e3)
        t0, c0 = time.perf_counter(), time.process_time()
        sink.close()  # flushes the frames x264 still holds
        flush_wall, flush_cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
    encoded = sink.frames_written
    stages = {}
    for s in STAGES:
        t = clock.times[s]
        if s == "write":  # the flush's share, per batch
            t["wall"] = [x + flush_wall * batch / encoded for x in t["wall"]]
            t["cpu"] = [x + flush_cpu * batch / encoded for x in t["cpu"]]
        p50, p90 = percentiles(t["wall"], (50, 90))
        stages[s] = {"ms_p50": p50, "ms_p90": p90, "ms_per_frame": p50 / batch,
                     "cpu_ms_mean": float(np.mean(t["cpu"])),
                     "gpu_ms_p50": percentiles(t["gpu"], (50,))[0] if t["gpu"] else None}
    device_sum = sum(stages[s]["ms_p50"] for s in DEVICE_STAGES)
    whole_p50 = percentiles(whole, (50,))[0]
    return {"size": f"{w}x{h}", "network_size": f"{size[1]}x{size[0]}", "batch": batch, "iters": iters,
            "warmup": warmup, "engine": stylizer.engine_label, "smooth": smoother.mode if smoother else "none",
            "stages": stages, "total_ms_p50": sum(v["ms_p50"] for v in stages.values()),
            "stylizer_sum_ms_p50": device_sum, "stylizer_call_ms_p50": whole_p50}


def prepare_clip(src: Path, dst: Path, frames: int | None, size: str | None) -> Path:
    """Re-encode the first ``frames`` frames of ``src`` (all when None), resized to ``size``
    (cropped to its aspect), as a libx264 crf 16 file without audio; returns ``dst``."""
    from realtime.bench_setup import fit_frames
    from realtime.video import VideoFileSink, VideoFileSource

    with VideoFileSource(src) as source:
        h, w = SIZES[size] if size else (source.height, source.width)
        with VideoFileSink(dst, width=w, height=h, time_base=source.time_base, rate=source.average_rate,
                           crf=16, preset="veryfast") as sink:
            for i, f in enumerate(source):
                if frames is not None and i >= frames:
                    break
                px = f.pixels if (f.pixels.shape[0], f.pixels.shape[1]) == (h, w) else \
                    fit_frames(torch.from_numpy(f.pixels)[None], h, w)[0].numpy()
                sink.write(px, f.pts, f.time_base)
    return dst


def profile_convert(stylizer: Stylizer, code, clip: Path, batch: int, cfg: BenchConfig, workdir: Path) -> dict:
    from realtime.convert import ConvertConfig, convert, resolve_preset
    from realtime.options import usable_cores
    from realtime.video import VideoFileSource

    with VideoFileSource(clip) as src:
        size, shape = f"{src.width}x{src.height}", (batch, src.height, src.width, 3)
    # Engines and their thread pools exist before sampling starts, so native threads that
    # start during the conversion are the codec's (FFmpeg decode, x264 encode workers).
    stylizer(torch.zeros(shape, dtype=torch.uint8), StyleSettings(code),
             resolve_max_side(cfg.max_side, stylizer.device, "video"))
    smooth = {"smooth": cfg.smooth} if cfg.smooth else {}  # else convert's own default
    ccfg = ConvertConfig(input=clip, output=workdir / "converted.mp4", max_side=cfg.max_side, batch=batch,
                         preset=cfg.preset, overwrite=True, progress=False, **smooth)
    first = None
    if stylizer.device.type == "cuda":  # a first pass builds (compiles) engines for this shape
        first = convert(ccfg, stylizer, code)
    c0 = time.process_time()
    with ThreadCPU() as cpu:
        res = convert(ccfg, stylizer, code)
    return {"clip": str(clip), "size": size, "frames": res.frames, "seconds": res.seconds,
            "fps": res.frames / res.seconds, "first_pass_fps": first.frames / first.seconds if first else None,
            "batch": batch, "preset": resolve_preset(cfg.preset, stylizer.device.type, usable_cores()),
            "smooth": ccfg.smooth, "engine": stylizer.engine_label,
            "audio": res.audio, "process_cpu_s": time.process_time() - c0, "thread_cpu_s": cpu.seconds()}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def profile_live(stylizer: Stylizer, code, cfg: BenchConfig, frames: int | None, seconds: float | None = None) -> dict:
    """``rtstyle live`` from the synthetic source at ``--live-size`` (30 fps) as the command runs it
    (its CPU/GPU network size, thread budget and smoothing), for ``frames`` frames or ``seconds``
    (the soak: resident memory sampled every 5 s, latency of the first and last 10 % compared)."""
    from realtime import options
    from realtime.capture import SyntheticSource
    from realtime.live import Controls, LiveConfig, make_smoother, run_live

    h, w = SIZES[cfg.live_size]
    side = resolve_max_side(cfg.max_side, stylizer.device, "live")
    lcfg = LiveConfig(input=f"synth:{w}x{h}@30", window=False, frames=frames, meter=False,
                      max_side=side, smooth=cfg.smooth)
    smoother = make_smoother(lcfg)
    controls = Controls([("bench", code)], smoother)
    budget = options.thread_budget(options.usable_cores(), stylizer.device.type, codecs=False)  # no sinks
    stop, rss = threading.Event(), []

    def sample() -> None:
        while True:
            rss.append(_rss_mib())
            if stop.wait(5.0):
                return

    with options.threads_applied(budget):
        stylizer.warm_up(h, w, side)  # as `live` does
        sampler = threading.Thread(target=sample, daemon=True)
        timer = threading.Timer(seconds, stop.set) if seconds else None
        with SyntheticSource(w, h, 30.0) as source:
            sampler.start()
            if timer:
                timer.start()
            stats = run_live(lcfg, stylizer, source, [], controls=controls, stop=stop)
        stop.set()
        sampler.join()
    lat = np.asarray(stats.latencies) * 1e3
    tenth = max(1, len(lat) // 10)
    return {"size": f"{w}x{h}", "network_side": side, "source_fps": 30.0, "frames": stats.frames,
            "seconds": stats.seconds, "fps": stats.frames / stats.seconds,
            "latency_ms_p50": stats.latency(50) * 1e3, "latency_ms_p95": stats.latency(95) * 1e3,
            "first_tenth_ms_p95": float(np.percentile(lat[:tenth], 95)),
            "last_tenth_ms_p95": float(np.percentile(lat[-tenth:], 95)),
            "rss_mib_start": rss[0], "rss_mib_max": max(rss), "rss_mib_end": rss[-1],
            "dropped": stats.dropped, "captured": stats.captured, "threads": dataclasses.asdict(budget),
            "smooth": smoother.mode if smoother else "none", "engine": stylizer.engine_label}


def run_pipeline(cfg: BenchConfig, encoder=None, decoder=None, code=None) -> dict:
    """The pipeline-mode report: {machine, weights, config, stages, convert, live}."""
    from realtime.live import LiveConfig, make_smoother

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    warmup, iters = counts(cfg, device)
    backend = (cfg.backends or ("auto",))[0]
    net, code, note = bench_weights(cfg, encoder, decoder, code)
    start = machine()
    print(f"rtstyle bench --mode pipeline: {json.dumps(start)}; {note}; backend {backend}", file=sys.stderr)
    stylizer = build_stylizer(net, backend, device)
    report = {"mode": "pipeline", "machine": start, "weights": note, "stages": [], "convert": None, "live": None,
              "soak": None}
    with tempfile.TemporaryDirectory(prefix="rtstyle-bench-") as tmp:
        workdir = Path(tmp)
        if "stages" in cfg.parts:
            for size in cfg.sizes:
                frames = real_frames(2 * max(cfg.batches), *SIZES[size], cfg.frames_from)
                for batch in cfg.batches:
                    smoother = make_smoother(LiveConfig(smooth=cfg.smooth))
                    load = [round(x, 2) for x in os.getloadavg()]
                    r = profile_stages(stylizer, code, frames, batch, cfg, warmup, iters, smoother, workdir)
                    report["stages"].append({**r, "loadavg": load})
                    _print_stages(r)
        if "convert" in cfg.parts:
            clip = cfg.clip or default_clip()
            if cfg.clip_frames or cfg.clip_size:
                clip = prepare_clip(clip, workdir / "clip.mp4", cfg.clip_frames, cfg.clip_size)
            load = [round(x, 2) for x in os.getloadavg()]
            r = report["convert"] = {**profile_convert(stylizer, code, clip, max(cfg.batches), cfg, workdir), "loadavg": load}
            threads = ", ".join(f"{k} {v:.2f}" for k, v in r["thread_cpu_s"].items())
            print(f"convert {r['size']} b{r['batch']} ({r['engine']}, smooth {r['smooth']}, x264 {r['preset']}): "
                  f"{r['frames']} frames in {r['seconds']:.1f} s = {r['fps']:.2f} frames/s; CPU s by thread: {threads}")
        if "live" in cfg.parts:
            n = cfg.live_frames or (300 if device.type == "cuda" else 10)
            load = [round(x, 2) for x in os.getloadavg()]
            r = report["live"] = {**profile_live(stylizer, code, cfg, n), "loadavg": load}
            _print_live("live", r)
        if "soak" in cfg.parts:
            load = [round(x, 2) for x in os.getloadavg()]
            r = report["soak"] = {**profile_live(stylizer, code, cfg, None, cfg.soak_s), "loadavg": load}
            _print_live("soak", r)
            print(f"  first 10 % p95 {r['first_tenth_ms_p95']:.0f} ms, last 10 % p95 {r['last_tenth_ms_p95']:.0f} ms; "
                  f"resident memory {r['rss_mib_start']:.0f} MiB at start, {r['rss_mib_max']:.0f} max, "
                  f"{r['rss_mib_end']:.0f} at the end")
    report["machine_end"] = machine()
    report["config"] = jsonable(cfg, warmup=warmup, iters=iters, backend=backend)
    if cfg.json_out:
        cfg.json_out.write_text(json.dumps(report, indent=2))
    return report


def _print_live(what: str, r: dict) -> None:
    print(f"{what} {r['size']} synthetic @30, network {r['network_side'] or 'full size'} ({r['engine']}, smooth "
          f"{r['smooth']}): {r['frames']} frames in {r['seconds']:.0f} s = {r['fps']:.2f} frames/s, latency p50 "
          f"{r['latency_ms_p50']:.0f} ms p95 {r['latency_ms_p95']:.0f} ms, dropped {r['dropped']} of {r['captured']}")


def _print_stages(r: dict) -> None:
    print(f"stages {r['size']} (network {r['network_size']}) b{r['batch']} {r['engine']}, smooth {r['smooth']}, "
          f"{r['iters']} batches, ms per batch (each stage synchronized alone):")
    for s, v in r["stages"].items():
        gpu = f"  GPU {v['gpu_ms_p50']:8.2f}" if v["gpu_ms_p50"] is not None else ""
        print(f"  {s:<12} p50 {v['ms_p50']:9.2f}  p90 {v['ms_p90']:9.2f}  CPU {v['cpu_ms_mean']:9.2f}{gpu}")
    print(f"  {'total':<12} p50 {r['total_ms_p50']:9.2f}   (stylizer stages {r['stylizer_sum_ms_p50']:.2f} vs "
          f"Stylizer call {r['stylizer_call_ms_p50']:.2f})")
