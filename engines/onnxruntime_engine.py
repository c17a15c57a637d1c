"""ONNX Runtime: the module exported to ONNX (cached on disk) and run by an InferenceSession.

One export serves every frame size and batch: input 0 is exported with dynamic dimensions
(the other inputs, a style code, keep their shapes), so a new frame size costs nothing to
build, and the cache key has no frame shape in it (it has the module fingerprint, weights id,
input 0's dtype and rank, the other inputs' dtypes and shapes, precision, opset, export
format and library versions). A cached file that ONNX Runtime cannot load, or whose metadata
does not match, is logged, deleted and exported again (``engines.cache.load_or_build``).

Device: ``device="cuda"`` runs on the CUDAExecutionProvider and fails if the session does
not get it (ONNX Runtime itself would quietly fall back to the CPU); ``device="cpu"`` on
the CPU provider; ``None`` picks CUDA when both torch and onnxruntime see it, else CPU.
Either way inputs and outputs cross as numpy on the host: ``engine.device`` is ``cpu``,
the inputs are CPU tensors (float ones in ``engine.dtype``), the output a CPU tensor.
uint8 in and uint8 out are kept (the encoder takes uint8 frames, the decoder returns them).
The CPU provider uses ``torch.get_num_threads()`` threads, so side-by-side timings with
eager share the same CPU budget, and its workers do not spin-wait between runs: spinning
was within noise on the real network (577 vs 589 ms, VGG at 256x256) and would burn the
cores that the decode/encode threads and the torch ops around the engine need.
"""
from __future__ import annotations

import contextlib

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from engines import EngineUnavailable, as_examples, precision_name, prepare_module, resolve_dtype, signature
from engines.cache import cache_dir as default_cache_dir
from engines.cache import cache_key, load_or_build, module_fingerprint

CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"
# How ``export_onnx`` shapes its graph, in the cache key: files of an older layout are not
# loaded (version 1 fixed a batch of 1 inside MicroAST's decoder).
EXPORT_FORMAT = 2


def export_onnx(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: str | Path, *,
                dynamic: bool = True, opset: int | None = None) -> Path:
    """Export ``module`` (as it is: its device and dtype) to one self-contained ONNX file.

    Uses the dynamo exporter (needs onnxscript). ``dynamic=True`` makes input 0's batch and
    frame size dynamic (``_batch_and_size``); its channels and the other inputs (a style code,
    a strength) keep the example's shapes, so an input that carries the batch or a picture
    must be input 0 (a 0-d input 0 leaves the whole graph static). Input 0 is exported at a
    batch of 2 when its example has 1: traced at 1, the exporter fixed the batch inside
    MicroAST's decoder (a reshape to (1, 64)) and a batch of 2 failed in ONNX Runtime; with
    every dimension of every input dynamic (``Dim.AUTO``) the decoder's export failed on a
    shape constraint. Inputs are named ``input0..``, the output ``output0``. The file is
    written atomically: a failed export leaves nothing at ``path``. The module is put in eval
    mode.
    """
    from engines.cache import atomic_write

    path = Path(path)
    module = module.eval()
    shapes = None
    if dynamic and example_inputs and example_inputs[0].dim():
        first, rest = example_inputs[0], tuple(example_inputs[1:])
        if first.shape[0] == 1:
            first = first.expand(2, *first.shape[1:]).contiguous()
        example_inputs = (first, *rest)
        shapes = (_batch_and_size(first), *(None for _ in rest))

    def write(tmp: Path) -> None:
        with _quiet_exporter():
            _export(tmp)

    def _export(tmp: Path) -> None:
        torch.onnx.export(
            module, example_inputs, str(tmp), dynamo=True, external_data=False, verbose=False,
            opset_version=opset, dynamic_shapes=shapes,
            input_names=[f"input{i}" for i in range(len(example_inputs))], output_names=["output0"],
        )

    with torch.inference_mode(False), torch.no_grad():
        return atomic_write(path, write)


def _batch_and_size(t: torch.Tensor) -> dict:
    """Input 0's dynamic dimensions: the batch and the picture's height and width of
    ``(N, H, W, C)`` uint8 frames or ``(N, C, H, W)`` float maps (the stages' data contract);
    for a tensor of another rank, every dimension the graph leaves free (``Dim.AUTO``)."""
    dims = ((0, 1, 2) if t.dtype == torch.uint8 else (0, 2, 3)) if t.dim() == 4 else range(t.dim())
    return {d: torch.export.Dim.AUTO for d in dims}


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs every optimizer pass (INFO on the root logger) and warns about
    torchvision ops this network never uses; keep the user's terminal for what matters."""
    names = ("torch.onnx", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # torch's own pytree deprecations, raised inside export
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    return {"torch": torch.__version__, "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__}


class OnnxRuntimeEngine:
    """ONNX Runtime session for ``module``; CPU tensors in and out (see module docstring)."""

    name = "onnxruntime"

    def __init__(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *,
                 device: str | torch.device | None = None, precision: str | None = None,
                 weights_id: str = "", cache_dir: Path | None = None, opset: int | None = None):
        import onnxruntime as ort

        have_cuda_ep = CUDA_EP in ort.get_available_providers()
        if device is None:
            device = "cuda" if (have_cuda_ep and torch.cuda.is_available()) else "cpu"
        self.compute_device = torch.device(device)
        if self.compute_device.type == "cuda" and not have_cuda_ep:
            raise EngineUnavailable("onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu, "
                                    "or use device='cpu'")
        self.device = torch.device("cpu")  # where inputs and outputs live
        self.dtype = resolve_dtype(precision, self.compute_device)
        if self.dtype == torch.bfloat16:
            raise EngineUnavailable("onnxruntime runs fp32 (and fp16 on CUDA), not bf16: use backend 'eager' for bf16")
        m = prepare_module(module, torch.device("cpu"), self.dtype)  # exported on the CPU
        ex = as_examples(example_inputs, self.device, self.dtype)
        self.parts = {
            "backend": "onnxruntime", "weights_id": weights_id,
            "module": f"{type(module).__module__}.{type(module).__qualname__}",
            "fingerprint": module_fingerprint(module),
            # input 0's rank and dtype (its batch and size are dynamic); the others' shapes are fixed
            "inputs": [[t.dim(), str(t.dtype)] if i == 0 else [list(t.shape), str(t.dtype)] for i, t in enumerate(ex)],
            "precision": precision_name(self.dtype), "opset": opset, "export": EXPORT_FORMAT, **_versions(),
        }
        self.key = cache_key(**self.parts)
        self.path = Path(cache_dir or default_cache_dir()) / "onnx" / f"{self.key}.onnx"
        providers = [CUDA_EP, CPU_EP] if self.compute_device.type == "cuda" else [CPU_EP]

        def load(path: Path):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.log_severity_level = 3  # errors only; a failed load raises anyway
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(path), opts, providers=providers)

        self.session = load_or_build(
            self.path, self.parts, lambda tmp: export_onnx(m, ex, tmp, dynamic=True, opset=opset), load
        )
        if self.session.get_providers()[0] != providers[0]:  # ORT falls back quietly; we do not
            raise EngineUnavailable(f"onnxruntime did not start {providers[0]} (got {self.session.get_providers()})")
        self._names = [i.name for i in self.session.get_inputs()]
        if len(self._names) != len(ex):
            raise ValueError(f"{self.path}: model takes {len(self._names)} inputs, example has {len(ex)}")
        self._seen: set[tuple] = set()
        self(*ex)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        sig = signature(inputs)
        if sig not in self._seen:
            for i, t in enumerate(inputs):
                if t.device.type != "cpu":
                    raise ValueError(f"onnxruntime engine: input {i} is on {t.device}; pass CPU tensors")
                if t.is_floating_point() and t.dtype != self.dtype:
                    raise ValueError(f"onnxruntime engine: input {i} is {t.dtype}, float inputs must be {self.dtype}")
            self._seen.add(sig)
        feeds = {n: np.ascontiguousarray(t.detach().numpy()) for n, t in zip(self._names, inputs)}
        try:
            (out,) = self.session.run(None, feeds)
        except Exception as e:  # ORT's own classes (Fail, InvalidArgument, ...) derive from Exception only
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            raise RuntimeError(f"onnxruntime ({self.path.name}): {e}") from e
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"OnnxRuntimeEngine({self.path.name}, {self.session.get_providers()[0]}, {self.dtype})"
