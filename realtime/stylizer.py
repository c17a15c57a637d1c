"""The stylizer: encoder engine -> AdaIN (plain torch, fp32 statistics) -> decoder engine.

It owns the two engines and the current style. A style, its strength and colour
preservation are small tensors and flags: changing them never rebuilds an engine.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F

import engines
from realtime.adain import StyleCode, adain, mean_std
from realtime.color import luminance_only
from realtime.model import Decoder, Encoder
from realtime.styles import encode_spec, encode_style, parse_style_arg

log = logging.getLogger(__name__)

MULTIPLE = 8  # the encoder downsamples by 8; frames are reflect-padded to a multiple of it


def _reflect_index(n: int, padded: int, device) -> torch.Tensor:
    """Indices that reflect-pad a length-``n`` axis to ``padded`` (no edge repeat)."""
    idx = torch.arange(padded, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx % period
    return torch.where(idx < n, idx, period - idx)


def pad_to_multiple(frames: torch.Tensor, multiple: int = MULTIPLE) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H', W', 3) with H', W' multiples of ``multiple``, reflect-padded
    at the bottom/right (works on integer tensors, unlike F.pad's reflect mode)."""
    _, h, w, _ = frames.shape
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) == (h, w):
        return frames
    frames = frames[:, _reflect_index(h, ph, frames.device)]
    return frames[:, :, _reflect_index(w, pw, frames.device)]


def resize_u8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, h, w, 3) uint8 RGB; antialiased when shrinking."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    shrink = size[0] < frames.shape[1]
    x = F.interpolate(x, size=size, mode="bilinear" if shrink else "bicubic", antialias=shrink, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# The network's longer side when the user does not choose (``--max-side auto``): on a CPU, video
# at 640 (Big Buck Bunny's 720p converts in about a minute on 2 cores, BENCHMARKS.md) and photos
# at 1280; on a GPU, full size.
CPU_MAX_SIDE = {"video": 640, "image": 1280}
MIN_SIDE = 16  # below this the encoder's reflection padding has nothing to reflect by relu4_1


def resolve_max_side(max_side: int | str | None, device: torch.device, kind: str = "video") -> int | None:
    """``"auto"`` -> the device's default for ``kind`` ("video" or "image"); ``"full"``/None ->
    None (full size); an int >= ``MIN_SIDE`` as is."""
    if max_side == "auto":
        return CPU_MAX_SIDE[kind] if torch.device(device).type == "cpu" else None
    if max_side in ("full", None):
        return None
    if int(max_side) < MIN_SIDE:
        raise ValueError(f"--max-side must be auto, full or at least {MIN_SIDE}, got {max_side}")
    return int(max_side)


def compute_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The size the network runs at: the frame's, or shrunk so its longer side is ``max_side``."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    s = max_side / max(height, width)
    return max(MULTIPLE, round(height * s)), max(MULTIPLE, round(width * s))


class Stylizer:
    """Stylizes batches of frames with the current style.

    ``encoder``/``decoder``: fp32 CPU modules (see ``realtime.models.load_network``).
    ``backend``/``device``/``precision`` go to ``engines.build``; ``weights_id`` keys its cache.
    ``network``: the ``NetworkInfo`` they came with (model name, digests), when known.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        *,
        backend: str = "auto",
        device: str | torch.device | None = None,
        precision: str | None = None,
        weights_id: str = "",
        network=None,
    ):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.backend, self.precision, self.weights_id = backend, precision, weights_id
        self.network = network
        # Style images are encoded once per style, in fp32, by an eager copy.
        self._style_encoder = copy.deepcopy(encoder).float().to(self.device).eval()
        self._encoder, self._decoder = encoder, decoder
        self._enc = self._dec = None
        self.code: StyleCode | None = None
        self.alpha = 1.0
        self.preserve_color = False
        # Optional temporal filter of the content statistics at the AdaIN step:
        # (mean, std), each (N, C) float32 in frame order -> the (mean, std) to use.
        self.stats_filter = None

    @property
    def engine_name(self) -> str | None:
        return self._enc.name if self._enc is not None else None

    def encode_style(self, rgb: np.ndarray) -> StyleCode:
        """(H, W, 3) uint8 RGB style image -> its ``StyleCode`` (fp32, on the stylizer's device)."""
        return encode_style(self._style_encoder, rgb).to(self.device)

    def encode_spec(self, arg: str, reference: np.ndarray | None = None) -> StyleCode:
        """A ``--style`` argument ("name", "path", "a,b:0.3") -> its mixed ``StyleCode`` on the
        stylizer's device; ``reference`` recolours the style images to that content first."""
        spec = parse_style_arg(arg)
        return encode_spec(self._style_encoder, spec, reference=reference).to(self.device)

    def set_style(self, code: StyleCode, alpha: float | None = None) -> None:
        self.code = code.to(self.device)
        if alpha is not None:
            self.set_alpha(alpha)

    def set_alpha(self, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def _build(self, frames: torch.Tensor) -> None:
        self._enc = engines.build(
            self._encoder, (frames,), self.backend, device=self.device,
            precision=self.precision, weights_id=self.weights_id + ":enc",
        )
        feats = self._enc(frames.to(self._enc.device))
        self._dec = engines.build(
            self._decoder, (feats,), self._enc.name, device=self.device,
            precision=self.precision, weights_id=self.weights_id + ":dec",
        )
        log.info("stylizer: %s engines on %s", self._enc.name, self.device)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, max_side: int | None = None) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB, any device -> (N, H, W, 3) uint8 RGB on the CPU."""
        if self.code is None:
            raise RuntimeError("no style set: call set_style() first")
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}")
        n, h, w, _ = frames.shape
        frames = frames.to(self.device, non_blocking=True)
        small = resize_u8(frames, compute_size(h, w, max_side))
        padded = pad_to_multiple(small)
        if self._enc is None:
            self._build(padded)
        feats = self._enc(padded.to(self._enc.device))
        feats = feats.to(self.device)
        stats = self.stats_filter(*mean_std(feats)) if self.stats_filter is not None else None
        t = adain(feats, self.code.mean, self.code.std, self.alpha, content_stats=stats)
        out = self._dec(t.to(self._dec.device, self._dec.dtype)).to(self.device)
        out = resize_u8(out[:, : small.shape[1], : small.shape[2]], (h, w))
        if self.preserve_color:
            out = luminance_only(out, frames)
        return out.cpu()
