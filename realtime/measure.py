"""Measuring time honestly, in one place: bench, the pipeline profile and the live meter use it.

* ``percentiles``: numpy's default (linear) method, without numpy arrays in the caller.
* ``timer(device)``: ``measure(fn) -> ms``, CUDA events on a GPU, ``perf_counter`` on the CPU.
* ``StageClock``: one stage at a time (synchronize, run, synchronize): wall, GPU and CPU ms.
* ``ThreadCPU``: CPU seconds per thread of this process (Linux ``/proc``), by role.
* ``Meter``: the live loop's fps / latency / interval line, at most once a second.
* ``machine()``: what a figure was measured on (date, CPU, load, GPU, library versions).
"""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch


def percentiles(values, qs=(50, 90, 99)) -> list[float]:
    """Linear-interpolated percentiles (numpy's default method) of ``values``."""
    v = sorted(float(x) for x in values)
    if not v:
        raise ValueError("no values")
    out = []
    for q in qs:
        pos = (len(v) - 1) * q / 100
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        out.append(v[lo] + (v[hi] - v[lo]) * (pos - lo))
    return out


def timer(device: torch.device):
    """``measure(fn) -> ms``: CUDA events around ``fn`` (synchronized), else perf_counter."""
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


class StageClock:
    """Times one stage at a time: synchronize, run, synchronize. Keeps wall, GPU and CPU ms."""

    def __init__(self, device: torch.device, stages: tuple[str, ...]):
        self.cuda = device.type == "cuda"
        self.times: dict[str, dict[str, list[float]]] = {s: {"wall": [], "gpu": [], "cpu": []} for s in stages}

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


class Meter:
    """Capture->output latency and output intervals over the last ``window_s`` seconds (and
    always the last two outputs, so a pipeline slower than one frame per ``window_s`` reads
    e.g. "0.3 fps", not "waiting"); a line to ``stream`` at most every ``interval_s``
    (``\\r``-updated on a terminal). Off a terminal, a stall is reported once, not every second."""

    def __init__(self, stream=None, *, interval_s: float = 1.0, window_s: float = 2.0, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s, self.window_s, self.enabled = interval_s, window_s, enabled
        self._outputs: deque[tuple[float, float]] = deque()  # (output time, latency)
        self._last_print: float | None = None
        self._stall_said = False
        self.lines = 0

    def record(self, captured_at: float, output_at: float) -> None:
        self._outputs.append((output_at, output_at - captured_at))
        self._stall_said = False

    def text(self, now: float, dropped: int, captured: int) -> str:
        """The meter line for the outputs of the last ``window_s`` seconds before ``now`` (at
        least the last two)."""
        while len(self._outputs) > 2 and self._outputs[0][0] < now - self.window_s:
            self._outputs.popleft()
        if not self._outputs or now - self._outputs[-1][0] > max(self.window_s, self._gap()):
            return f"  0.0 fps (waiting for frames) | dropped {dropped} of {captured}"
        if len(self._outputs) < 2:
            return f"  1 frame | latency {self._outputs[0][1] * 1e3:4.0f} ms | dropped {dropped} of {captured}"
        times = np.array([t for t, _ in self._outputs])
        lat = np.array([latency for _, latency in self._outputs]) * 1e3
        gaps = np.diff(times) * 1e3
        fps = (len(times) - 1) / max(times[-1] - times[0], 1e-9)
        return (f"{fps:5.1f} fps | latency p50 {np.percentile(lat, 50):4.0f} ms p95 "
                f"{np.percentile(lat, 95):4.0f} ms | interval p50 {np.percentile(gaps, 50):4.0f} ms "
                f"p95 {np.percentile(gaps, 95):4.0f} ms | dropped {dropped} of {captured}")

    def _gap(self) -> float:
        """The longest interval between the kept outputs (how long a wait is still normal)."""
        times = [t for t, _ in self._outputs]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def tick(self, now: float, dropped: int, captured: int) -> bool:
        """Print the line if ``interval_s`` passed since the last one; True if printed."""
        if not self.enabled:
            return False
        if self._last_print is None:
            self._last_print = now  # first line after a full interval of data
            return False
        if now - self._last_print < self.interval_s:
            return False
        tty = getattr(self.stream, "isatty", lambda: False)()
        line = self.text(now, dropped, captured)
        stalled = "waiting" in line
        if stalled and self._stall_said and not tty:
            return False
        self._stall_said = stalled
        self._last_print = now
        self.stream.write(f"\r{line}\x1b[K" if tty else line + "\n")
        self.stream.flush()
        self.lines += 1
        return True

    def close(self) -> None:
        if self.lines and getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")


def _cmd(*argv: str) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """What the numbers were measured on: date, CPU, load, GPU, driver, library versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), cpu)
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
            "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
            "commit": _cmd("git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD")}
    for dist in ("onnxruntime", "onnxruntime-gpu", "torch-tensorrt", "tensorrt", "triton", "av", "numpy"):
        if (v := _version(dist)) is not None:
            info[dist] = v
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), tf32_conv=torch.backends.cudnn.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark,
                    driver=_cmd("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"))
    return info


