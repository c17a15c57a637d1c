"""Backends that build and run one network stage (an nn.Module) fast: one small interface.

    engine = engines.build(module, example_inputs, backend="auto")
    out = engine(*inputs)

``module`` arrives in fp32 on the CPU and is never modified (the engine works on a copy,
moved to ``engine.device`` in ``engine.dtype``). This package never imports ``realtime``.

Data contract of every engine: inputs are tensors already on ``engine.device``; float
inputs are in ``engine.dtype``, integer inputs (uint8 frames) stay as they are; the output
is a tensor on ``engine.device``. One exception: ``onnxruntime`` always has ``device`` cpu
(numpy crosses the boundary), even when its CUDA provider computes.
Engines build per input signature (shapes + dtypes) lazily; ``example_inputs`` builds the
first one at once, a new frame size builds once more. Call engines under
``torch.inference_mode()`` if you modify their outputs in place (they run in it).

Backends (``ENGINES``, imported lazily, so ``import engines`` needs neither torch-tensorrt
nor onnxruntime): ``eager`` (CPU fp32; CUDA fp16 channels_last), ``compile``
(torch.compile), ``tensorrt`` (torch-tensorrt AOT, cached on disk), ``onnxruntime`` (ONNX
export, cached on disk). Precision is ``"fp32"``, ``"fp16"`` or ``"bf16"``: fp32 on CPU,
fp16 on CUDA by default; ``"bf16"`` on a CPU with bf16 matrix instructions (``cpu_bf16``)
runs channels_last, where it measured several times faster than fp32 on AVX-512 BF16.

``backend="auto"`` on CUDA: tensorrt (if torch-tensorrt imports) -> compile -> eager fp16;
on CPU: eager fp32. torch.compile is not auto-chosen on CPU: it did not pay for its compile
time there (BENCHMARKS.md has the measurements).
A requested backend that cannot run raises ``EngineUnavailable`` with the reason; nothing
falls back silently.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

import torch

log = logging.getLogger(__name__)

# name -> "module:Class", imported only when built.
ENGINES: dict[str, str] = {
    "eager": "engines.eager_engine:EagerEngine",
    "compile": "engines.compile_engine:CompileEngine",
    "tensorrt": "engines.tensorrt_engine:TensorRTEngine",
    "onnxruntime": "engines.onnxruntime_engine:OnnxRuntimeEngine",
}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TRT_HINT = "pip install 'rtstyle[trt]'"
ONNX_HINT = "pip install 'rtstyle[onnx]'"
_CPU_WHY = ("CPU: eager fp32 for a bare engine; a stylizer measures its CPU candidates instead (realtime.tuning); "
            "torch.compile does not pay for its compile time on a CPU (BENCHMARKS.md)")
_LOGGED: set[str] = set()


class EngineUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says why and what to install."""


class Engine(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype  # compute dtype of float inputs and outputs

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------- helpers for backends
def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> cuda when available, else cpu; "cuda" gets its index so comparisons work."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def resolve_dtype(precision: str | None, device: torch.device) -> torch.dtype:
    if precision is None:
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in PRECISIONS.items()}[dtype]


def signature(inputs: tuple[torch.Tensor, ...]) -> tuple:
    """Per-call build key: shapes and dtypes of the inputs (cheap enough for every frame)."""
    return tuple((tuple(t.shape), t.dtype) for t in inputs)


def as_examples(inputs: tuple[torch.Tensor, ...], device: torch.device, dtype: torch.dtype) -> tuple:
    """Example inputs are only examples: move them to ``device``, float ones to ``dtype``."""
    return tuple(t.to(device, dtype) if t.is_floating_point() else t.to(device) for t in inputs)


def check_inputs(inputs: tuple[torch.Tensor, ...], engine: Engine) -> None:
    """Boundary check, done once per new signature, not per frame."""
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{engine.name} engine: input {i} is a {type(t).__name__}, not a tensor")
        if t.device != engine.device:
            raise ValueError(f"{engine.name} engine: input {i} is on {t.device}, the engine runs on {engine.device}")
        if t.is_floating_point() and t.dtype != engine.dtype:
            raise ValueError(f"{engine.name} engine: input {i} is {t.dtype}, float inputs must be {engine.dtype}")


def prepare_module(module: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                   channels_last: bool = False) -> torch.nn.Module:
    """A copy of ``module`` in eval mode on ``device`` in ``dtype``; the caller's is untouched."""
    import copy

    m = copy.deepcopy(module).eval().to(device=device, dtype=dtype)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m


def cpu_bf16() -> str | None:
    """Which bf16 matrix instructions this x86 CPU has ("amx_bf16", "avx512_bf16") or None:
    where bf16 autocast + channels_last pays off on the CPU (read from /proc/cpuinfo; Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return None
    return next((name for name in ("amx_bf16", "avx512_bf16") if name in flags), None)


# ------------------------------------------------------------------ availability checks
def _cuda_reason(dev: torch.device) -> str | None:
    if dev.type != "cuda":
        return f"needs a CUDA device (device is {dev})"
    return None if torch.cuda.is_available() else "no CUDA GPU (torch.cuda.is_available() is False)"


def _eager_reason(device) -> str | None:
    dev = resolve_device(device)
    return _cuda_reason(dev) if dev.type == "cuda" else None


def _compile_reason(device) -> str | None:
    dev = resolve_device(device)
    if dev.type == "cuda":
        return _cuda_reason(dev) or (
            None if importlib.util.find_spec("triton") else "torch.compile on CUDA needs triton: pip install triton"
        )
    compilers = [c for c in (os.environ.get("CXX"), "g++", "clang++", "c++") if c]
    if not any(shutil.which(c) for c in compilers):
        return "torch.compile on CPU needs a C++ compiler (g++ or clang++) on PATH"
    return None


def _tensorrt_reason(device) -> str | None:
    if importlib.util.find_spec("torch_tensorrt") is None:
        return f"torch-tensorrt is not installed: {TRT_HINT} (needs a CUDA GPU and a matching torch)"
    reason = _cuda_reason(resolve_device(device))
    if reason:
        return f"TensorRT {reason}"
    try:
        importlib.import_module("torch_tensorrt")
    except (ImportError, OSError, RuntimeError) as e:  # version mismatch, missing TensorRT libs
        return f"torch_tensorrt is installed but fails to import ({type(e).__name__}: {e})"
    return None


def _onnxruntime_reason(device) -> str | None:
    missing = [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed: {ONNX_HINT}"
    if device is not None and torch.device(device).type == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu) or use device='cpu'"
    return None


_REASONS = {"eager": _eager_reason, "compile": _compile_reason,
            "tensorrt": _tensorrt_reason, "onnxruntime": _onnxruntime_reason}


def available(device: str | torch.device | None = None) -> dict[str, str | None]:
    """Backend name -> None if it can run on ``device`` (None: its default), else why not."""
    return {name: _REASONS[name](device) for name in ENGINES}


def choose(device: str | torch.device | None = None) -> tuple[str, str]:
    """What ``backend="auto"`` builds on ``device``: (name, why)."""
    dev = resolve_device(device)
    if dev.type != "cuda":
        return "eager", _CPU_WHY
    if (reason := _cuda_reason(dev)) is not None:
        raise EngineUnavailable(f"device {dev}: {reason}")
    gpu = torch.cuda.get_device_name(dev)
    trt = _tensorrt_reason(dev)
    if trt is None:
        return "tensorrt", f"{gpu}: torch-tensorrt imports, TensorRT fp16 is the fastest engine"
    comp = _compile_reason(dev)
    if comp is None:
        return "compile", f"{gpu}: TensorRT unusable ({trt}); torch.compile fp16"
    return "eager", f"{gpu}: TensorRT unusable ({trt}); torch.compile unusable ({comp}); eager fp16 channels_last"


def build(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], backend: str = "auto", *,
          device: str | torch.device | None = None, precision: str | None = None,
          weights_id: str = "", cache_dir: Path | None = None) -> Engine:
    """Build ``module`` with ``backend`` and warm it on ``example_inputs`` (any device and
    float dtype: they are moved and cast; later calls must follow the contract above).
    ``weights_id`` labels the weights in disk cache keys
    (the module's own state is hashed too); ``cache_dir`` defaults to ``cache.cache_dir()``."""
    if backend == "auto":
        backend, why = choose(device)
        msg = f"engines: backend 'auto' chose {backend!r}: {why}"
        if msg not in _LOGGED:
            _LOGGED.add(msg)
            log.info(msg)
    if backend not in ENGINES:
        raise ValueError(f"unknown engine backend {backend!r}; valid: 'auto', " + ", ".join(map(repr, ENGINES)))
    if not isinstance(example_inputs, tuple):
        raise TypeError(f"example_inputs must be a tuple of tensors, got {type(example_inputs).__name__}")
    reason = _REASONS[backend](device)
    if reason is not None:
        raise EngineUnavailable(f"backend {backend!r} cannot run: {reason}")
    module_name, cls_name = ENGINES[backend].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    kwargs = {"weights_id": weights_id, "cache_dir": cache_dir} if backend in ("tensorrt", "onnxruntime") else {}
    return cls(module, example_inputs, device=device, precision=precision, **kwargs)


def export_onnx(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: str | Path, *,
                dynamic: bool = True, opset: int | None = None) -> Path:
    """Write ``module`` as one self-contained ONNX file (see ``onnxruntime_engine.export_onnx``)."""
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineUnavailable(f"ONNX export needs {', '.join(missing)}: {ONNX_HINT}")
    from engines.onnxruntime_engine import export_onnx as _export

    return _export(module, example_inputs, path, dynamic=dynamic, opset=opset)
