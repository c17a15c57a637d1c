"""torch.compile (Inductor), one static-shape graph per input signature.

Mode: CPU uses the default mode (C++/OpenMP kernels around oneDNN convolutions; needs a
C++ compiler). CUDA uses ``"max-autotune-no-cudagraphs"``: fp16 + channels_last, with
convolution algorithms benchmarked once per shape (cached by Inductor on disk). Not
``"reduce-overhead"``: CUDA graphs replay into static output buffers, so a returned tensor
is overwritten by the next call, while the pipeline keeps encoder features and decoded
frames alive across calls (AdaIN in between, frames queued for the encoder thread); and
at >= 256x256 this network is compute-bound (>= 63 GFLOP a frame), so launch overhead that
CUDA graphs remove is small. Graphs can be wrapped explicitly by a caller that copies out.

``dynamic=False``: each new frame size compiles its own specialized graph (Dynamo keeps
them, guarded on shape) instead of one slower symbolic-shape graph. Dynamo's recompile
limit (8 signatures per module) bounds this; a video has one or two frame sizes.
``fullgraph=True``: a graph break is an error, not a silent partial compile.
"""
from __future__ import annotations

import logging
import time

import torch

from engines import as_examples, check_inputs, prepare_module, resolve_device, resolve_dtype, signature

log = logging.getLogger(__name__)
CUDA_MODE = "max-autotune-no-cudagraphs"
CPU_MODE = "default"


class CompileEngine:
    """torch.compile of ``module``; inputs on ``device``, float inputs in ``dtype``."""

    name = "compile"

    def __init__(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *,
                 device: str | torch.device | None = None, precision: str | None = None):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        cuda = self.device.type == "cuda"
        self.mode = CUDA_MODE if cuda else CPU_MODE
        self.module = prepare_module(module, self.device, self.dtype, channels_last=cuda)
        self._compiled = torch.compile(self.module, mode=self.mode, dynamic=False, fullgraph=True)
        self._built: set[tuple] = set()
        self(*as_examples(example_inputs, self.device, self.dtype))

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        sig = signature(inputs)
        with torch.inference_mode():
            if sig in self._built:
                return self._compiled(*inputs)
            check_inputs(inputs, self)
            t0 = time.perf_counter()
            out = self._compiled(*inputs)  # first call with this signature compiles it
            self._built.add(sig)
            log.info("compile engine: %s built for %s in %.1f s (mode %s)",
                     type(self.module).__name__, [s for s, _ in sig], time.perf_counter() - t0, self.mode)
            return out

    def __repr__(self) -> str:
        return f"CompileEngine({type(self.module).__name__}, {self.device}, {self.dtype}, mode={self.mode!r})"
