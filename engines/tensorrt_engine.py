"""TensorRT through torch-tensorrt: ahead-of-time compiled per input shape, cached on disk.

Build: ``torch_tensorrt.compile(module, ir="dynamo", arg_inputs=...)`` on a copy of the
module in the precision's dtype (fp16 by default). Since torch-tensorrt 2.13 precision
comes from the module's dtypes (explicit typing), not from ``enabled_precisions``. Ops
TensorRT cannot take (the uint8 -> float cast at the encoder's input, if rejected) stay in
PyTorch by torch-tensorrt's partitioning. One static-shape engine per input signature.

Cache: ``cache_dir()/tensorrt/<key>.ep`` (``torch_tensorrt.save``, ExportedProgram
format) with ``<key>.json`` beside it. The key is our own (torch-tensorrt's built-in engine
cache ignores the GPU model, the TensorRT version and the weights): sha256 over the weights
id, the module's class and fingerprint (class source + state dict), input shapes and
dtypes, precision, GPU name and compute capability, and the torch / torch_tensorrt /
tensorrt / CUDA versions (``cache_parts``). A corrupt or stale entry is logged, deleted and
rebuilt (``engines.cache.load_or_build``); files are written atomically.

Needs a CUDA GPU and ``pip install 'rtstyle[trt]'`` (torch-tensorrt matching your torch).
Inputs live on ``engine.device`` (cuda), float inputs in ``engine.dtype``. For the lowest
latency a caller may wrap the loaded engine in CUDA graphs (copying outputs out).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from engines import (
    TRT_HINT,
    EngineUnavailable,
    as_examples,
    check_inputs,
    precision_name,
    prepare_module,
    resolve_device,
    resolve_dtype,
    signature,
)
from engines.cache import cache_dir as default_cache_dir
from engines.cache import cache_key, load_or_build, module_fingerprint

log = logging.getLogger(__name__)


def cache_parts(*, module_name: str, fingerprint: str, weights_id: str, inputs: tuple[torch.Tensor, ...],
                precision: str, gpu: str, versions: dict[str, str]) -> dict:
    """Everything a built TensorRT engine depends on; ``cache_key(**parts)`` names its file."""
    return {
        "backend": "tensorrt", "weights_id": weights_id, "module": module_name,
        "fingerprint": fingerprint, "inputs": [[list(t.shape), str(t.dtype)] for t in inputs],
        "precision": precision, "gpu": gpu, **versions,
    }


def _versions() -> dict[str, str]:
    import tensorrt
    import torch_tensorrt

    return {"torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__,
            "tensorrt": tensorrt.__version__, "cuda": str(torch.version.cuda)}


def _compile_and_save(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    import torch_tensorrt

    with torch.no_grad():
        trt_gm = torch_tensorrt.compile(module, ir="dynamo", arg_inputs=list(inputs))
        torch_tensorrt.save(trt_gm, str(path), output_format="exported_program", arg_inputs=list(inputs))


def _load(path: Path) -> torch.nn.Module:
    import torch_tensorrt  # registers tensorrt::execute_engine for torch.export.load

    return torch_tensorrt.load(str(path)).module()


class TensorRTEngine:
    """TensorRT engines for ``module``, one per input signature, on a CUDA ``device``."""

    name = "tensorrt"

    def __init__(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *,
                 device: str | torch.device | None = None, precision: str | None = None,
                 weights_id: str = "", cache_dir: Path | None = None):
        try:
            import torch_tensorrt  # noqa: F401
        except ImportError as e:
            raise EngineUnavailable(f"the tensorrt backend needs torch-tensorrt: {TRT_HINT} ({e})") from e
        self.device = resolve_device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise EngineUnavailable(f"the tensorrt backend needs a CUDA GPU (device {self.device})")
        self.dtype = resolve_dtype(precision, self.device)
        self.module = prepare_module(module, self.device, self.dtype)
        self.weights_id = weights_id
        self.cache_dir = Path(cache_dir or default_cache_dir()) / "tensorrt"
        cap = torch.cuda.get_device_capability(self.device)
        self._static = {
            "module_name": f"{type(module).__module__}.{type(module).__qualname__}",
            "fingerprint": module_fingerprint(module),
            "gpu": f"{torch.cuda.get_device_name(self.device)} sm_{cap[0]}{cap[1]}",
            "versions": _versions(),
        }
        self._engines: dict[tuple, torch.nn.Module] = {}
        self(*as_examples(example_inputs, self.device, self.dtype))

    def _build(self, inputs: tuple[torch.Tensor, ...]) -> torch.nn.Module:
        parts = cache_parts(weights_id=self.weights_id, inputs=inputs,
                            precision=precision_name(self.dtype), **self._static)
        path = self.cache_dir / f"{cache_key(**parts)}.ep"
        return load_or_build(path, parts, lambda tmp: _compile_and_save(self.module, inputs, tmp), _load)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        sig = signature(inputs)
        engine = self._engines.get(sig)
        if engine is None:
            check_inputs(inputs, self)
            engine = self._engines[sig] = self._build(inputs)
        with torch.inference_mode():
            return engine(*inputs)

    def __repr__(self) -> str:
        return f"TensorRTEngine({self._static['module_name']}, {self.device}, {self.dtype}, {len(self._engines)} shapes)"
