"""``rtstyle bench``: the network's speed per backend and size, measured side by side.

Times the whole frame path the stylizer runs (uint8 frames in -> encoder -> AdaIN ->
decoder -> uint8 frames out) after warm-up. On CUDA the clock is CUDA events; on the CPU,
``perf_counter``. Reports p50/p90/p99 ms per frame, frames/s and, on CUDA, effective
TFLOP/s from the layer shapes. Speed does not depend on the weights' values, so without a
trained decoder a random one of the same shape is used (and the report says so).
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import engines
from realtime.adain import StyleCode, adain
from realtime.model import Decoder, Encoder, Widths, flops_per_frame

SIZES = {"256": (256, 256), "512": (512, 512), "720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("eager", "onnxruntime")
    sizes: tuple[str, ...] = ("256", "512")
    batch: int = 1
    warmup: int = 3
    iters: int = 10
    device: str | None = None
    json_out: Path | None = None


@dataclass
class Row:
    backend: str
    size: str
    batch: int
    ms_p50: float
    ms_p90: float
    ms_p99: float
    fps: float
    gflop_per_frame: float
    tflops: float | None = None
    notes: list[str] = field(default_factory=list)


def _timer(device: torch.device):
    if device.type == "cuda":
        def measure(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
    else:
        def measure(fn):
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
    return measure


def prepare(encoder: Encoder, decoder: Decoder, backend: str, size: str, batch: int, device: torch.device):
    """Build both engines for one (backend, size); return the step that runs one batch:
    uint8 frames -> encoder -> AdaIN -> decoder -> uint8 frames."""
    h, w = SIZES[size]
    frames = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, device=device)
    enc = engines.build(encoder, (frames,), backend, device=device)
    feats = enc(frames.to(enc.device))
    dec = engines.build(decoder, (feats,), backend, device=device)
    code = StyleCode(torch.rand(feats.shape[1]) + 0.5, torch.rand(feats.shape[1]) + 0.1).to(device)

    def step():
        f = enc(frames.to(enc.device))
        t = adain(f.to(device), code.mean, code.std)
        return dec(t.to(dec.device, dec.dtype))

    return step


def bench_size(encoder: Encoder, decoder: Decoder, size: str, cfg: BenchConfig, device: torch.device) -> list[Row]:
    """All backends at one size, timed in interleaved rounds (A B C A B C ...) so that
    load from other processes falls on every backend alike."""
    steps = {b: prepare(encoder, decoder, b, size, cfg.batch, device) for b in cfg.backends}
    measure = _timer(device)
    times: dict[str, list[float]] = {b: [] for b in steps}
    with torch.inference_mode():
        for step in steps.values():
            for _ in range(cfg.warmup):
                step()
        for _ in range(cfg.iters):
            for b, step in steps.items():
                times[b].append(measure(step) / cfg.batch)
    h, w = SIZES[size]
    flops = flops_per_frame(h, w, encoder.widths)
    rows = []
    for b, ts in times.items():
        ts.sort()
        q = lambda p: ts[min(len(ts) - 1, int(round(p * (len(ts) - 1))))]  # noqa: E731
        p50 = statistics.median(ts)
        tflops = flops / (p50 * 1e-3) / 1e12 if device.type == "cuda" else None
        rows.append(Row(b, size, cfg.batch, p50, q(0.9), q(0.99), 1e3 / p50, flops / 1e9, tflops))
    return rows


def machine() -> dict:
    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def run(cfg: BenchConfig) -> list[Row]:
    from realtime.weights import DEFAULT_DECODER, load_caffe_encoder, load_decoder

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = load_caffe_encoder()
    if DEFAULT_DECODER.is_file():
        decoder, note = load_decoder(DEFAULT_DECODER)[0], "shipped decoder"
    else:
        decoder, note = Decoder(Widths()).eval(), "random decoder (speed does not depend on weights)"
    print(f"rtstyle bench: {json.dumps(machine())}; {note}", file=sys.stderr)
    rows = []
    for size in cfg.sizes:
        for row in bench_size(encoder, decoder, size, cfg, device):
            rows.append(row)
            print(f"{row.backend:>12} {size:>6} b{row.batch}  p50 {row.ms_p50:9.1f} ms  p90 {row.ms_p90:9.1f} ms  "
                  f"{row.fps:8.2f} frames/s  {row.gflop_per_frame:7.1f} GFLOP"
                  + (f"  {row.tflops:6.1f} TFLOP/s" if row.tflops else ""))
        base = next(r for r in rows if r.size == size)
        for r in rows[-len(cfg.backends):][1:]:
            print(f"{'':>12} {size:>6}     {r.backend} / {base.backend}: {base.ms_p50 / r.ms_p50:.2f}x faster")
    if cfg.json_out:
        cfg.json_out.write_text(json.dumps({"machine": machine(), "weights": note, "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


def register_cli(sub) -> None:
    d = {f: getattr(BenchConfig, f) for f in ("backends", "sizes", "batch", "warmup", "iters")}
    p = sub.add_parser("bench", help="time the network per backend and frame size",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(d["backends"]),
                   help=f"comma-separated, of {', '.join(engines.ENGINES)} (default: %(default)s)")
    p.add_argument("--sizes", default=",".join(d["sizes"]),
                   help=f"comma-separated, of {', '.join(SIZES)} (default: %(default)s)")
    p.add_argument("--batch", type=int, default=d["batch"], help="frames per call (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=d["warmup"], help="untimed calls first (default: %(default)s)")
    p.add_argument("--iters", type=int, default=d["iters"], help="timed calls (default: %(default)s)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", dest="json_out", type=Path, help="also write the results as JSON")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    for name in args.sizes.split(","):
        if name not in SIZES:
            raise ValueError(f"unknown size {name!r}; choose from {', '.join(SIZES)}")
    cfg = BenchConfig(tuple(args.backends.split(",")), tuple(args.sizes.split(",")), args.batch,
                      args.warmup, args.iters, args.device, args.json_out)
    run(cfg)
    return 0
