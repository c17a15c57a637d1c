"""The record and the check that cross stage boundaries.

* ``Frame``: one picture with its timing, from a file (``video.VideoFileSource``) or a live source
  (``capture``): ``pixels`` (H, W, 3) uint8 RGB, C-contiguous, upright; ``pts`` in ``time_base``
  units exactly as decoded (None for live input or a file without timestamps); ``index``, the
  0-based decode/capture count (gaps are dropped frames); ``captured_at``, ``time.monotonic()``
  seconds when a live source took it (None from a file read as fast as possible).
* ``check_rgb``: the one "(H, W, 3) uint8 RGB array" check at a boundary, with the actual
  value in the message.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Frame:
    pixels: np.ndarray
    pts: int | None
    time_base: Fraction | None
    index: int
    captured_at: float | None = None


def check_rgb(a, what: str = "image", error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``what`` unless ``a`` is an (H, W, 3) uint8 numpy array."""
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        desc = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise error(f"{what} must be an (H, W, 3) uint8 RGB array, got {desc}")
