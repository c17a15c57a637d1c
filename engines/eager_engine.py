"""Eager PyTorch: the reference every other backend is checked against.

CPU: fp32 (default), or bf16 with channels_last weights (oneDNN's bf16 kernels want NHWC).
CUDA: fp16 (default) with channels_last weights, so cuDNN runs its NHWC kernels; a uint8
NHWC frame permuted to NCHW is already channels_last in memory.
Runs under ``torch.inference_mode()``. Nothing is built, but each new input signature is
checked once at the boundary (device, float dtype).
"""
from __future__ import annotations

import torch

from engines import as_examples, check_inputs, prepare_module, resolve_device, resolve_dtype, signature


class EagerEngine:
    """``module`` on ``device`` in ``precision``; inputs on ``device``, floats in ``dtype``."""

    name = "eager"

    def __init__(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *,
                 device: str | torch.device | None = None, precision: str | None = None):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        nhwc = self.device.type == "cuda" or self.dtype == torch.bfloat16
        self.module = prepare_module(module, self.device, self.dtype, channels_last=nhwc)
        self._seen: set[tuple] = set()
        self(*as_examples(example_inputs, self.device, self.dtype))

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        sig = signature(inputs)
        if sig not in self._seen:
            check_inputs(inputs, self)
            self._seen.add(sig)
        with torch.inference_mode():
            return self.module(*inputs)

    def __repr__(self) -> str:
        return f"EagerEngine({type(self.module).__name__}, {self.device}, {self.dtype})"
