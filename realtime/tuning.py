"""``--backend auto`` on a CPU: the engine that runs fastest here, measured, not assumed.

On first use per (weights, frame size, machine, library versions, our code) the stylizer's network runs
a few times with each CPU candidate: eager fp32, eager bf16 and a bf16 encoder with an fp32
decoder (where the CPU has bf16 matrix instructions, ``engines.cpu_bf16``), and ONNX Runtime
fp32 (when installed), on a real picture (``calibration_frame``) at the frame size. Each
candidate's output is compared with eager fp32's: one under ``MIN_PSNR_DB`` is not eligible,
whatever its speed. The fastest eligible one (its fastest of ``REPS`` interleaved rounds
after a warm-up: ``measure``) wins; the table is logged at debug level and written to
``<engine cache>/choices/<key>.json``, so later runs skip the measurement (a corrupt or
mismatched file is measured again).
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import engines
from engines.cache import source_bytes

log = logging.getLogger(__name__)

MIN_PSNR_DB = 35.0  # output of a faster variant against eager fp32, uint8 frames
REPS = 5


def candidates() -> list[tuple[str, str]]:
    """(backend, precision) pairs worth trying on this CPU, eager fp32 first (the reference).
    "bf16,fp32" is a bf16 encoder with an fp32 decoder: a decoder's output can be more
    sensitive to bf16 rounding than the features are (measured with microast-tc at 384 px:
    47.6 dB against fp32 for the split, 37.3 for all bf16; BENCHMARKS.md)."""
    found = [("eager", "fp32")]
    if engines.cpu_bf16():
        found += [("eager", "bf16"), ("eager", "bf16,fp32")]
    if engines.available("cpu")["onnxruntime"] is None:
        found.append(("onnxruntime", "fp32"))
    return found


CALIBRATION = Path(__file__).parent / "assets" / "calibration.jpg"  # a Big Buck Bunny frame, CC BY 3.0


def calibration_frame(height: int, width: int) -> torch.Tensor:
    """A real picture at (height, width): (1, H, W, 3) uint8 RGB. Accuracy is judged on it, not
    on whatever frame comes first (a warm-up frame is black, and a flat or procedural picture
    hides errors that real ones show: measured, bf16 decoders gave 39 dB on a built-in pattern
    and 22 dB on film frames, whose white pixels a bf16 scaling bug turned black)."""
    import cv2

    from realtime.images import read_image

    rgb = cv2.resize(read_image(CALIBRATION), (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb)[None]


def calibration_style() -> np.ndarray:
    """The style the calibration runs with: the default built-in, 256 px."""
    from realtime.styles import DEFAULT_STYLE, load_style_image

    return load_style_image(DEFAULT_STYLE, 256)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 tensors of the same shape (inf when identical)."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def measure(run_with: Callable[[str, str], Callable[[], torch.Tensor]], reps: int = REPS) -> list[dict]:
    """``run_with(backend, precision)`` builds that variant and returns a no-argument call that
    stylizes the example frame -> rows (backend, precision, ms, psnr_db, eligible), in
    ``candidates()`` order. A variant that fails to build or run is a row with its error.

    Every variant is built and warmed up first, then timed in ``reps`` interleaved rounds (A B
    C A B C ...); ``ms`` is its fastest round. Why: the choice is remembered, and timed one
    variant after another while the test suite shared the 2 cores, ONNX Runtime fp32 won at
    640x360 (264 ms against eager bf16's 568), where on a quiet machine it is half as fast.
    Interleaved, a load that comes and goes slows every variant alike; the fastest round is
    the one least disturbed."""
    rows, built = {}, {}
    for backend, precision in candidates():
        try:
            run = run_with(backend, precision)
            built[backend, precision] = run, run()  # warm-up: builds the engines' per-shape state
        except (engines.EngineUnavailable, RuntimeError, ValueError) as e:
            rows[backend, precision] = _failed(backend, precision, e)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in built}
    for _ in range(reps):
        for key, (run, _) in built.items():
            if key in rows:  # failed in an earlier round
                continue
            try:
                t0 = time.perf_counter()
                run()
                times[key].append((time.perf_counter() - t0) * 1e3)
            except (engines.EngineUnavailable, RuntimeError, ValueError) as e:
                rows[key] = _failed(*key, e)
    # the reference is eager fp32's warm-up output, even if it failed a timed round later
    first = candidates()[0]
    reference = built[first][1] if first in built else None
    for (backend, precision), (_, out) in built.items():
        if (backend, precision) in rows:
            continue
        if reference is None:  # nothing to judge accuracy against: not eligible
            rows[backend, precision] = _failed(backend, precision, RuntimeError(f"no {' '.join(first)} reference"))
            continue
        db = psnr(out, reference)
        rows[backend, precision] = {"backend": backend, "precision": precision, "ms": min(times[backend, precision]),
                                    "psnr_db": db, "eligible": db >= MIN_PSNR_DB}
    return [rows[k] for k in candidates() if k in rows]


def _failed(backend: str, precision: str, e: Exception) -> dict:
    return {"backend": backend, "precision": precision, "error": f"{type(e).__name__}: {e}", "eligible": False}


# The modules whose code decides what a candidate computes, how fast, and which one wins: a
# remembered choice is measured again when any of them changes (a fix to bf16 output scaling
# turned a refused variant into the fastest accurate one; a choice keyed on the weights alone
# would have kept the old answer).
CODE_MODULES = ("realtime.tuning", "realtime.adain", "realtime.model", "realtime.microast", "realtime.fastconv",
                "realtime.stylizer", "engines", "engines.eager_engine", "engines.onnxruntime_engine")


@functools.cache
def code_digest() -> str:
    """sha256 (first 16 hex) of the source of ``CODE_MODULES``; of the compiled file where an
    install has no sources, else of the package version."""
    h = hashlib.sha256()
    for name in CODE_MODULES:
        h.update(source_bytes(importlib.import_module(name)))
    return h.hexdigest()[:16]


def machine_key(weights_id: str, shape: tuple) -> dict:
    """What a measured choice depends on: the weights, the frame shape, the machine, the
    library versions and our own code (``code_digest``)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"torch": torch.__version__}
    try:  # the installed version, without importing it (0.2 s of every start)
        versions["onnxruntime"] = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        pass
    return {"weights": weights_id, "shape": list(shape), "cpu": cpu, "threads": torch.get_num_threads(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            **versions, "code": code_digest()}


def choices_dir() -> Path:
    """Where measured choices are remembered: ``<engine cache>/choices``."""
    from engines.cache import cache_dir

    return cache_dir() / "choices"


def remembered() -> list[tuple[str, str]]:
    """The (backend, precision) of every remembered choice that still holds for this machine,
    its libraries and our code, whatever the weights, frame shape and thread count (``convert``
    and ``live`` run with their own, ``options.thread_budget``). Stale or unreadable files are
    left out: they are measured again when used."""
    here = {k: v for k, v in machine_key("", ()).items() if k not in ("weights", "shape", "threads")}
    found = []
    for path in sorted(choices_dir().glob("*.json")):
        try:
            saved = json.loads(path.read_text())
            if all(saved["parts"].get(k) == v for k, v in here.items()):
                found.append((saved["backend"], saved["precision"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


# A measurement during which other programs kept more than this share of the cores busy is
# used for the run but not remembered: under such load the variants rank differently (two busy
# processes on the 2-core VM: onnxruntime fp32 won 1 of 3 interleaved measurements at 640x360,
# where on a quiet machine eager bf16 is twice as fast), and a remembered choice stays.
BUSY_SHARE = 0.25
_BUSY_CHOICES: dict[str, tuple[str, str]] = {}  # such choices, kept for this process only


def cpu_use() -> tuple[float, float, float] | None:
    """(monotonic seconds, busy CPU seconds of the CPUs this process may run on, this process's
    CPU seconds, all threads); None where there is no /proc/stat (the choice is then remembered
    without this check). Busy: user to steal (a hypervisor's steal slows us as much as a
    neighbour), not idle or iowait; guest time is already inside user and nice."""
    try:
        ours = {f"cpu{n}" for n in os.sched_getaffinity(0)} if hasattr(os, "sched_getaffinity") else None
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu" and (ours is None or name in ours):
                    ticks = [int(v) for v in values[:8]]
                    busy += sum(ticks) - ticks[3] - ticks[4]
    except (OSError, ValueError, IndexError):
        return None
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), time.process_time()


def other_cores(before, after) -> float | None:
    """Cores other processes kept busy on average between two ``cpu_use()`` readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0]))


def choose(run_with: Callable[[str, str], Callable[[], torch.Tensor]], weights_id: str,
           shape: tuple) -> tuple[str, str]:
    """The (backend, precision) for ``auto`` on the CPU: remembered, else measured and remembered
    (unless other programs kept the CPU busy meanwhile: ``BUSY_SHARE``)."""
    from engines.cache import atomic_write_bytes, cache_key

    if len(options := candidates()) == 1:
        return options[0]
    parts = machine_key(weights_id, shape)
    key = cache_key(**parts)
    if key in _BUSY_CHOICES:  # measured on a busy CPU earlier in this process: not again here
        return _BUSY_CHOICES[key]
    path = choices_dir() / f"{key}.json"
    try:
        saved = json.loads(path.read_text())
        if saved["parts"] == json.loads(json.dumps(parts)):
            return saved["backend"], saved["precision"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("engine choice %s is unreadable (%s); measuring again", path, e)
    log.info("auto: measuring the CPU engines on %s frames (a first use of this model, frame size and machine)",
             f"{shape[2]}x{shape[1]}" if len(shape) == 4 else shape)  # (N, H, W, 3)
    before = cpu_use()
    rows = measure(run_with)
    others = other_cores(before, cpu_use())
    eligible = [r for r in rows if r["eligible"]]
    if not eligible:
        raise engines.EngineUnavailable("auto: no CPU engine ran accurately here: " + "; ".join(
            f"{r['backend']} {r['precision']}: {r.get('error') or '%.1f dB' % r['psnr_db']}" for r in rows))
    best = min(eligible, key=lambda r: r["ms"])
    log.debug("auto on the CPU: %s", "; ".join(
        f"{r['backend']} {r['precision']}: " + (f"{r['ms']:.1f} ms, {r['psnr_db']:.1f} dB" if "ms" in r else r["error"])
        for r in rows))
    cores = parts["cores"]
    if others is not None and others > BUSY_SHARE * cores:
        log.info("auto: %s %s for this run; other programs (or the hypervisor) kept %.1f of the %d cores busy "
                 "while it measured, so the choice is not remembered (measured again next time)",
                 best["backend"], best["precision"], others, cores)
        _BUSY_CHOICES[key] = best["backend"], best["precision"]
        return _BUSY_CHOICES[key]
    log.info("auto: %s %s, %.1f ms a frame; remembered in %s", best["backend"], best["precision"], best["ms"],
             path.parent)
    atomic_write_bytes(path, json.dumps({"parts": parts, "backend": best["backend"],
                                         "precision": best["precision"], "rows": rows}, indent=1).encode())
    return best["backend"], best["precision"]
