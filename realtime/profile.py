"""``rtstyle bench --mode pipeline``: where the time goes outside the network too.

Three parts (``--parts``), all on real frames and the real stages:

* ``stages``: one batch at a time through upload (host -> device, as the stylizer does it),
  preprocess (resize to ``--max-side`` + pad to a multiple of 8), encoder, AdaIN (with the
  smoother's statistics filter), decoder, postprocess (crop + resize back), download
  (device -> host), smoothing (``TemporalSmoother``, on the host, frame by frame) and encode
  (PyAV libx264, ``VideoFileSink.write``; the flush at the end is spread over the frames).
  The stages run in this order in the product (the flow part of the smoother works on host
  frames, after download). Each stage is synchronized before and after, so it is timed
  alone: this perturbs the overlap the real pipeline has (decode, compute and encode run in
  different threads) and the sum is a serial upper bound, not the pipeline's throughput.
  Reported per stage: wall ms (``perf_counter`` after a device synchronize), on CUDA the
  GPU ms (CUDA events), and process CPU ms (all threads, so x264's own threads count).
  The same frames through ``Stylizer.__call__`` as a whole are timed too, as a check that
  the first seven stages add up to what the product runs.
* ``convert``: ``realtime.convert.convert`` of a clip end to end (decode thread, style
  encoding, stylize, smoothing, encode thread, file written; on CUDA after one untimed pass
  that builds the engines for the clip's shape): frames/s, and each thread's CPU time read
  from ``/proc/self/task`` (Linux; sampled every 20 ms, so a thread's last 20 ms may be missed).
* ``live``: ``realtime.live.run_live`` from the synthetic source at ``--live-size`` (30 fps,
  batch 1, newest frame wins), no window or other sink: capture -> output latency p50/p95.
"""
from __future__ import annotations

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

from realtime.adain import adain, mean_std
from realtime.bench import (SIZES, BenchConfig, _counts, _jsonable, bench_weights, default_clip, machine,
                            parse_variant, percentiles, real_frames)
from realtime.stylizer import Stylizer, compute_size, pad_to_multiple, resize_u8

STAGES = ("upload", "preprocess", "encoder", "adain", "decoder", "postprocess", "download", "smoothing", "encode")
DEVICE_STAGES = STAGES[:7]  # what Stylizer.__call__ does


class StageClock:
    """Times one stage at a time: synchronize, run, synchronize. Keeps wall, GPU and CPU ms."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.times: dict[str, dict[str, list[float]]] = {s: {"wall": [], "gpu": [], "cpu": []} for s in STAGES}

    def __call__(self, stage: str, fn, *args):
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(*args)
        if self.cuda:
            end.record()
            torch.cuda.synchronize()
            self.times[stage]["gpu"].append(start.elapsed_time(end))
        self.times[stage]["wall"].append((time.perf_counter() - t0) * 1e3)
        self.times[stage]["cpu"].append((time.process_time() - c0) * 1e3)
        return out


def build_stylizer(encoder, decoder, code, backend: str, device: torch.device) -> Stylizer:
    v = parse_variant(backend) if backend != "auto" else None
    if v is not None and v.graphs:
        raise ValueError(f"--backends {backend}: the pipeline runs the product's engines; no CUDA graphs here")
    stylizer = Stylizer(encoder, decoder, backend=v.engine if v else "auto", device=device,
                        precision=v.precision if v else None)
    stylizer.set_style(code)
    return stylizer


def profile_stages(stylizer: Stylizer, frames: torch.Tensor, batch: int, cfg: BenchConfig,
                   warmup: int, iters: int, smoother, workdir: Path) -> dict:
    """Per-stage times for batches of ``frames`` ((N, H, W, 3) uint8 CPU, N >= batch)."""
    from realtime.video import VideoFileSink

    device = stylizer.device
    n, h, w, _ = frames.shape
    batches = [frames[i:i + batch] for i in range(0, n - batch + 1, batch)] or [frames[:batch]]
    stylizer(batches[0], max_side=cfg.max_side)  # builds the engines
    enc, dec = stylizer._enc, stylizer._dec  # the stylizer's own engines (no public accessor yet)
    code, alpha = stylizer.code, stylizer.alpha
    stylizer.stats_filter = smoother.stats_filter if smoother is not None else None
    size = compute_size(h, w, cfg.max_side)
    clock = StageClock(device)
    sink = VideoFileSink(workdir / f"stages_{batch}.mp4", width=w, height=h, time_base=Fraction(1, 25),
                         rate=Fraction(25), preset=cfg.preset)
    whole: list[float] = []

    def adain_stage(feats):
        f = feats.to(device)
        stats = stylizer.stats_filter(*mean_std(f)) if stylizer.stats_filter is not None else None
        return adain(f, code.mean, code.std, alpha, content_stats=stats)

    def smooth_stage(content, styled):
        return [smoother(c, s) for c, s in zip(content, styled)] if smoother is not None else list(styled)

    def encode_stage(styled):
        for s in styled:
            sink.write(s)

    with sink, torch.inference_mode():
        for i in range(warmup + iters):
            if i == warmup:  # drop the warm-up calls' times
                clock.times = StageClock(device).times
                whole.clear()
            x = batches[i % len(batches)]
            up = clock("upload", lambda: x.to(device, non_blocking=True))
            padded = clock("preprocess", lambda: pad_to_multiple(resize_u8(up, size)))
            feats = clock("encoder", lambda: enc(padded.to(enc.device)))
            t = clock("adain", adain_stage, feats)
            out = clock("decoder", lambda: dec(t.to(dec.device, dec.dtype)).to(device))
            out = clock("postprocess", lambda: resize_u8(out[:, :size[0], :size[1]], (h, w)))
            host = clock("download", lambda: out.cpu().numpy())
            styled = clock("smoothing", smooth_stage, x.numpy(), host)
            clock("encode", encode_stage, styled)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            sync()
            t0 = time.perf_counter()
            stylizer(x, max_side=cfg.max_side)
            sync()
            whole.append((time.perf_counter() - t0) * 1e3)
        t0, c0 = time.perf_counter(), time.process_time()
        sink.close()  # flushes the frames x264 still holds
        flush_wall, flush_cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
    encoded = sink.frames_written
    stages = {}
    for s in STAGES:
        t = clock.times[s]
        if s == "encode":  # the flush's share, per batch
            t["wall"] = [x + flush_wall * batch / encoded for x in t["wall"]]
            t["cpu"] = [x + flush_cpu * batch / encoded for x in t["cpu"]]
        p50, p90 = percentiles(t["wall"], (50, 90))
        stages[s] = {"ms_p50": p50, "ms_p90": p90, "ms_per_frame": p50 / batch,
                     "cpu_ms_mean": float(np.mean(t["cpu"])),
                     "gpu_ms_p50": percentiles(t["gpu"], (50,))[0] if t["gpu"] else None}
    device_sum = sum(stages[s]["ms_p50"] for s in DEVICE_STAGES)
    whole_p50 = percentiles(whole, (50,))[0]
    return {"size": f"{w}x{h}", "network_size": f"{size[1]}x{size[0]}", "batch": batch, "iters": iters,
            "warmup": warmup, "engine": stylizer.engine_name, "smooth": smoother.mode if smoother else "none",
            "stages": stages, "total_ms_p50": sum(v["ms_p50"] for v in stages.values()),
            "stylizer_sum_ms_p50": device_sum, "stylizer_call_ms_p50": whole_p50}


class ThreadCPU:
    """CPU seconds per thread of this process while active, from /proc/self/task (Linux).
    Python threads go by their ``threading`` name. Native threads cannot be told apart by
    name (all are "python3"), so they are split by age: those that existed before (the
    torch/OpenMP pools, warmed up already) and those started during the run (FFmpeg's
    decode and x264's encode workers, which PyAV starts when a file is opened)."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.ticks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-cpu-sampler", daemon=True)
        self.available = os.path.isdir("/proc/self/task")

    def _sample(self) -> None:
        named = {t.native_id: t.name for t in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # the thread just ended
                continue
            tid_i = int(tid)
            self.ticks[tid_i] = max(self.ticks.get(tid_i, 0), int(fields[11]) + int(fields[12]))
            if tid_i in named:
                self.names[tid_i] = named[tid_i]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self):
        if self.available:
            self._sample()
            self.base = dict(self.ticks)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()

    def seconds(self) -> dict[str, float]:
        """CPU seconds by role: main (batching, stylizing, smoothing), decode, encode (the
        writer thread; x264 does most of its work in its own workers), native threads by age."""
        if not self.available:
            return {}
        hz, out = os.sysconf("SC_CLK_TCK"), {}
        for tid, ticks in self.ticks.items():
            name = self.names.get(tid, "")
            role = ("main" if name == "MainThread" else "decode" if name.startswith("decode")
                    else "encode" if name == "encode" else None if name == "bench-cpu-sampler"
                    else "other Python threads" if name
                    else "native, from before (torch/OpenMP pools)" if tid in self.base
                    else "native, started during (codec workers)")
            if role:
                out[role] = out.get(role, 0.0) + (ticks - self.base.get(tid, 0)) / hz
        return out


def prepare_clip(src: Path, dst: Path, frames: int | None, size: str | None) -> Path:
    """Re-encode the first ``frames`` frames of ``src`` (all when None), resized to ``size``
    (cropped to its aspect), as a libx264 crf 16 file without audio; returns ``dst``."""
    from realtime.bench import _fit
    from realtime.video import VideoFileSink, VideoFileSource

    with VideoFileSource(src) as source:
        h, w = SIZES[size] if size else (source.height, source.width)
        with VideoFileSink(dst, width=w, height=h, time_base=source.time_base, rate=source.average_rate,
                           crf=16, preset="veryfast") as sink:
            for i, f in enumerate(source):
                if frames is not None and i >= frames:
                    break
                px = f.pixels if (f.pixels.shape[0], f.pixels.shape[1]) == (h, w) else \
                    _fit(torch.from_numpy(f.pixels)[None], h, w)[0].numpy()
                sink.write(px, f.pts, f.time_base)
    return dst


def profile_convert(stylizer: Stylizer, clip: Path, batch: int, cfg: BenchConfig, workdir: Path) -> dict:
    from realtime.convert import ConvertConfig, convert
    from realtime.video import VideoFileSource

    with VideoFileSource(clip) as src:
        size, shape = f"{src.width}x{src.height}", (batch, src.height, src.width, 3)
    # Engines and their thread pools exist before sampling starts, so native threads that
    # start during the conversion are the codec's (FFmpeg decode, x264 encode workers).
    stylizer(torch.zeros(shape, dtype=torch.uint8), max_side=cfg.max_side)
    smooth = {"smooth": cfg.smooth} if cfg.smooth else {}  # else convert's own default
    ccfg = ConvertConfig(input=clip, output=workdir / "converted.mp4", max_side=cfg.max_side, batch=batch,
                         preset=cfg.preset, overwrite=True, progress=False, **smooth)
    first = None
    if stylizer.device.type == "cuda":  # a first pass builds (compiles) engines for this shape
        first = convert(ccfg, stylizer)
    c0 = time.process_time()
    with ThreadCPU() as cpu:
        res = convert(ccfg, stylizer)
    return {"clip": str(clip), "size": size, "frames": res.frames, "seconds": res.seconds,
            "fps": res.frames / res.seconds, "first_pass_fps": first.frames / first.seconds if first else None,
            "batch": batch, "preset": cfg.preset, "smooth": ccfg.smooth, "engine": stylizer.engine_name,
            "audio": res.audio, "process_cpu_s": time.process_time() - c0, "thread_cpu_s": cpu.seconds()}


def profile_live(stylizer: Stylizer, code, cfg: BenchConfig, frames: int) -> dict:
    from realtime.capture import SyntheticSource
    from realtime.live import Controls, LiveConfig, make_smoother, run_live

    h, w = SIZES[cfg.live_size]
    lcfg = LiveConfig(input=f"synth:{w}x{h}@30", window=False, frames=frames, meter=False,
                      max_side=cfg.max_side, smooth=cfg.smooth)
    smoother = make_smoother(lcfg)
    controls = Controls(stylizer, [("bench", code)], smoother)
    stylizer(torch.zeros((1, h, w, 3), dtype=torch.uint8), max_side=cfg.max_side)  # warm, as `live` does
    if smoother is not None:
        smoother.reset()
    source = SyntheticSource(w, h, 30.0)
    with source:
        stats = run_live(lcfg, stylizer, source, [], controls=controls)
    return {"size": f"{w}x{h}", "source_fps": 30.0, "frames": stats.frames, "seconds": stats.seconds,
            "fps": stats.frames / stats.seconds, "latency_ms_p50": stats.latency(50) * 1e3,
            "latency_ms_p95": stats.latency(95) * 1e3, "dropped": stats.dropped, "captured": stats.captured,
            "smooth": smoother.mode if smoother else "none", "engine": stylizer.engine_name}


def run_pipeline(cfg: BenchConfig, encoder=None, decoder=None, code=None) -> dict:
    """The pipeline-mode report: {machine, weights, config, stages, convert, live}."""
    from realtime.live import LiveConfig, make_smoother

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    warmup, iters = _counts(cfg, device)
    backend = (cfg.backends or ("auto",))[0]
    encoder, decoder, code, note = bench_weights(cfg, encoder, decoder, code)
    start = machine()
    print(f"rtstyle bench --mode pipeline: {json.dumps(start)}; {note}; backend {backend}", file=sys.stderr)
    stylizer = build_stylizer(encoder, decoder, code, backend, device)
    report = {"mode": "pipeline", "machine": start, "weights": note, "stages": [], "convert": None, "live": None}
    with tempfile.TemporaryDirectory(prefix="rtstyle-bench-") as tmp:
        workdir = Path(tmp)
        if "stages" in cfg.parts:
            for size in cfg.sizes:
                frames = real_frames(2 * max(cfg.batches), *SIZES[size], cfg.frames_from)
                for batch in cfg.batches:
                    smoother = make_smoother(LiveConfig(smooth=cfg.smooth))
                    load = [round(x, 2) for x in os.getloadavg()]
                    r = profile_stages(stylizer, frames, batch, cfg, warmup, iters, smoother, workdir)
                    report["stages"].append({**r, "loadavg": load})
                    _print_stages(r)
        if "convert" in cfg.parts:
            clip = cfg.clip or default_clip()
            if cfg.clip_frames or cfg.clip_size:
                clip = prepare_clip(clip, workdir / "clip.mp4", cfg.clip_frames, cfg.clip_size)
            load = [round(x, 2) for x in os.getloadavg()]
            r = report["convert"] = {**profile_convert(stylizer, clip, max(cfg.batches), cfg, workdir), "loadavg": load}
            threads = ", ".join(f"{k} {v:.2f}" for k, v in r["thread_cpu_s"].items())
            print(f"convert {r['size']} b{r['batch']} ({r['engine']}, smooth {r['smooth']}, x264 {r['preset']}): "
                  f"{r['frames']} frames in {r['seconds']:.1f} s = {r['fps']:.2f} frames/s; CPU s by thread: {threads}")
        if "live" in cfg.parts:
            n = cfg.live_frames or (300 if device.type == "cuda" else 10)
            load = [round(x, 2) for x in os.getloadavg()]
            r = report["live"] = {**profile_live(stylizer, code, cfg, n), "loadavg": load}
            print(f"live {r['size']} synthetic @30 ({r['engine']}, smooth {r['smooth']}): {r['fps']:.2f} frames/s, "
                  f"latency p50 {r['latency_ms_p50']:.0f} ms p95 {r['latency_ms_p95']:.0f} ms, "
                  f"dropped {r['dropped']} of {r['captured']}")
    report["machine_end"] = machine()
    report["config"] = _jsonable(cfg, warmup=warmup, iters=iters, backend=backend)
    if cfg.json_out:
        cfg.json_out.write_text(json.dumps(report, indent=2))
    return report


def _print_stages(r: dict) -> None:
    print(f"stages {r['size']} (network {r['network_size']}) b{r['batch']} {r['engine']}, smooth {r['smooth']}, "
          f"{r['iters']} batches, ms per batch (each stage synchronized alone):")
    for s, v in r["stages"].items():
        gpu = f"  GPU {v['gpu_ms_p50']:8.2f}" if v["gpu_ms_p50"] is not None else ""
        print(f"  {s:<12} p50 {v['ms_p50']:9.2f}  p90 {v['ms_p90']:9.2f}  CPU {v['cpu_ms_mean']:9.2f}{gpu}")
    print(f"  {'total':<12} p50 {r['total_ms_p50']:9.2f}   (stylizer stages {r['stylizer_sum_ms_p50']:.2f} vs "
          f"Stylizer call {r['stylizer_call_ms_p50']:.2f})")
