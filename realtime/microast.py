"""MicroAST (Wang et al., AAAI 2023; MIT): arbitrary style transfer in ~0.47M parameters, no VGG.

Four parts. Two encoders of the same shape (one for content, one for style): a 9x9 conv, two
stride-2 depthwise 3x3 convs each followed by a 1x1 conv, then two residual blocks; the
features after each block are the two *levels*, ``(N, 64, H/4, W/4)`` each (0: after the
first block, 1: after the second). The modulator turns each style level into per-channel
filter weights and biases (a depthwise 3x3 conv, then the spatial mean). The decoder takes
the content's level 1 and, for level 1 then level 0: re-normalizes the features to the
style's statistics at that level (AdaIN) and runs a residual block whose convolutions are
*modulated*, ``w * conv(x) + b * x`` with that level's weights and biases; then two bilinear
2x upsamplings, each with a depthwise 3x3 and a 1x1 conv, and a 9x9 conv to RGB.

A style is data, a ``MicroCode``: four ``(2, 64)`` float32 tensors (row = level). It is
computed once per style switch; every frame then runs the content encoder and the decoder
with the code as plain tensor inputs, so an exported engine never changes with the style.

Data contract (every image here is ``(N, 3, H, W)`` float RGB in [0, 1], on the module's device):

* ``MicroAST.style_code(style)``: ``(1, 3, Hs, Ws)``, any size with sides >= ``MIN_SIDE``
  -> ``MicroCode``, float32.
* ``MicroAST.forward(content, mean, std, weight, bias, alpha)``: the per-frame graph that
  engines export. H and W must be multiples of ``MULTIPLE`` (4); the code tensors are
  ``(2, 64)`` float32 (or ``(N, 2, 64)``, a style per sample, as training uses them) and
  ``alpha`` a float or a 0-d float32 tensor. -> ``(N, 3, H, W)`` in
  the content's dtype, *not clamped* (the published network overshoots [0, 1]).
* ``MicroAST.stylize(content, code, alpha)``: any H, W >= ``MIN_SIDE``; reflect-pads to a
  multiple of 4 at the bottom/right, runs ``forward``, crops, clamps to [0, 1].

Strength ``alpha`` (0..1) blends the output with the content in image space:
``alpha * net(content) + (1 - alpha) * content``. The published code instead blends each AdaIN
output with its input features (``Decoder``'s ``alpha``, kept for parity), but with the
published weights only 1 is usable there: at 0.25-0.75 most pixels land far outside [0, 1]
and the clamped image is one flat colour; at 0 it is a colour wash (the training script only
ever used 1, and the blend mixes content-encoder features into statistics of the style
encoder's feature space). A gentler, dearer strength is
``mix_codes([code, style_code(frame)], [alpha, 1 - alpha])`` per frame at alpha 1.
Statistics use the unbiased variance (``torch.var``'s default, as in the published code)
plus 1e-5, computed in fp32.

Why one file: the architecture, the published key map its converter reads and the product's
engine wrappers (``FrameEncoder``, ``FrameDecoder``) change together; a renamed layer breaks all three.

Weights: ``load_microast(folder)`` converts the four published state dicts (key map below);
``save_microast``/``load_microast_file`` write and read this package's fp16 safetensors file.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from realtime import WeightsError
from realtime.adain import EPS, adain, channel_var_mean
from realtime.model import to_uint8_frames

CHANNELS = 64  # feature channels at both levels
LEVELS = 2
MULTIPLE = 4  # the encoders downsample by 4
MIN_SIDE = 8  # below this a reflection pad at H/4 has nothing to reflect
FORMAT = "rtstyle-microast-v1"
SOURCE_REPO = "github.com/EndyWon/MicroAST"
SOURCE_COMMIT = "5a6c9050d8c408191cb9db12c697f3e4c7ebe137"
LICENCE = "MIT, Copyright (c) 2022 Zhizhong Wang"
# part -> (file in the weights folder, its path in the source repository)
SOURCE_FILES = {
    part: (f"{part}.pth", f"models/{part}_iter_160000.pth.tar")
    for part in ("content_encoder", "style_encoder", "modulator", "decoder")
}


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A k x k conv with reflection padding k // 2 (every conv in MicroAST). A 1x1 conv has no
    padding, so no padding mode: with one, ``nn.Conv2d`` copies its input through a zero-width
    ``F.pad`` (1.1 ms for the decoder's last 1x1 conv at 640x360)."""
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups,
                     padding_mode="reflect" if k > 1 else "zeros")


def mean_std(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) any float dtype -> per-channel mean and std, (N, C) float32. Unlike
    ``realtime.adain.mean_std`` the variance is the unbiased one, as MicroAST was trained."""
    var, mean = channel_var_mean(feats, correction=1)
    return mean, (var + EPS).sqrt()


def modulate(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Filter modulation: ``weight * conv(x) + bias * x`` with per-channel weight and bias, (C,)
    for the whole batch or (N, C) per sample. The conv runs in its weights' dtype, the rest in
    ``x``'s (a bf16 decoder keeps its residual stream in fp32: ``Decoder.body``)."""
    w = weight.to(x.dtype).reshape(*weight.shape, 1, 1)
    b = bias.to(x.dtype).reshape(*bias.shape, 1, 1)
    return w * conv(x.to(conv.weight.dtype)).to(x.dtype) + b * x


class Residual(nn.Module):
    """``x + conv2(relu(conv1(x)))``, 3x3 convs; with ``weight``/``bias`` each conv is modulated."""

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.conv1, self.conv2 = _conv(channels, channels, 3), _conv(channels, channels, 3)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        if weight is None:
            return x + self.conv2(F.relu(self.conv1(x)))
        h = F.relu(modulate(self.conv1, x, weight, bias))
        return x + modulate(self.conv2, h, weight, bias)


class Encoder(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> the two levels, (N, 64, ceil(H/4), ceil(W/4)) each."""

    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 16, 9)
        self.down1, self.mix1 = _conv(16, 32, 3, stride=2, groups=16), _conv(32, 32, 1)
        self.down2, self.mix2 = _conv(32, 64, 3, stride=2, groups=32), _conv(64, 64, 1)
        self.res1, self.res2 = Residual(), Residual()

    def forward(self, x: torch.Tensor, downs: Sequence[nn.Module] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``downs``: stand-ins for ``down1`` and ``down2`` that compute the same (``dense_conv``;
        the frame encoder's), else the model's own."""
        down1, down2 = downs if downs is not None else (self.down1, self.down2)
        for conv in (self.stem, down1, self.mix1, down2, self.mix2):
            x = F.relu(conv(x))
        level0 = self.res1(x)
        return level0, self.res2(level0)


class Modulator(nn.Module):
    """The two style levels -> filter (weight, bias), (N, 2, 64) each. Affine in the features
    (a depthwise conv, then the mean), so it commutes with mixing same-size feature maps."""

    def __init__(self):
        super().__init__()
        self.weight = nn.ModuleList(_conv(CHANNELS, CHANNELS, 3, groups=CHANNELS) for _ in range(LEVELS))
        self.bias = nn.ModuleList(_conv(CHANNELS, CHANNELS, 3, groups=CHANNELS) for _ in range(LEVELS))

    def forward(self, levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.stack([conv(f).mean((2, 3)) for conv, f in zip(self.weight, levels)], 1)
        bias = torch.stack([conv(f).mean((2, 3)) for conv, f in zip(self.bias, levels)], 1)
        return weight, bias


class Decoder(nn.Module):
    """Content level 1 (N, 64, h, w) + a style's code -> (N, 3, 4h, 4w) RGB, not clamped.
    The code tensors are (2, 64), one style for the batch, or (N, 2, 64), a style per sample
    (training). ``alpha`` is the published feature-space blend; the product passes 1 (module
    docstring)."""

    def __init__(self):
        super().__init__()
        self.res1, self.res2 = Residual(), Residual()
        self.up1, self.mix1 = _conv(64, 32, 3, groups=32), _conv(32, 32, 1)
        self.up2, self.mix2 = _conv(32, 16, 3, groups=16), _conv(16, 16, 1)
        self.out = _conv(16, 3, 9)

    def forward(self, f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
        return self.out(self.body(f, mean, std, weight, bias, alpha))

    def body(self, f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
             bias: torch.Tensor, alpha: float | torch.Tensor,
             ups: Sequence[nn.Module] | None = None) -> torch.Tensor:
        """Everything before the 9x9 conv to RGB: (N, 16, 4h, 4w) features, in the weights' dtype.
        ``ups``: two modules that compute ``up1(upsample2x(x))`` and ``up2(upsample2x(x))``
        (``UpConv``; the frame decoder's), else the plain ops (training, parity).

        The residual stream (AdaIN and the modulated blocks' sums) runs in fp32 whatever the
        weights' dtype: a bf16 network measured 34.7 dB against fp32 with a bf16 stream, 38.4
        with this one (4 film frames at 384 px, one style). In fp32 the casts do nothing."""
        f = f.float()
        for level, res in ((1, self.res1), (0, self.res2)):  # deep level first, as trained
            f = adain(f, mean[..., level, :], std[..., level, :], alpha, content_stats=mean_std(f))
            f = res(f, weight[..., level, :], bias[..., level, :])
        f = f.to(self.up1.weight.dtype)
        for k, (up, mix) in enumerate(((self.up1, self.mix1), (self.up2, self.mix2))):
            f = ups[k](f) if ups is not None else up(upsample2x(f))
            f = F.relu(mix(F.relu(f)))
        return f


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """The decoder's 2x bilinear upsampling (half-pixel centres, edges clamped)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class BlockConv(nn.Module):
    """A stride-1 k x k conv with reflection padding k // 2, computed exactly (up to float
    summation order) on ``factor`` x ``factor`` pixel blocks: reflect-pad, space-to-depth,
    one small conv with ``cin * f^2`` inputs and ``cout * f^2`` outputs, depth-to-space.
    The blocks' channels are phase-major (``space_to_depth``), not ``pixel_unshuffle``'s order.

    Why: the decoder's last conv (9x9, 16 -> 3 channels at full resolution) gives oneDNN 3
    output channels to work with and ran at a fifth of the speed of the 64-channel convs;
    as a 3x3 conv 256 -> 48 on 4x4 blocks it did 1.8x the multiply-adds in half the time
    (640x360, 2 cores: 46 ms -> 22 ms, benchmarks in BENCHMARKS.md). H and W must be multiples
    of ``factor``, and so must ``2 * (k // 2)``."""

    def __init__(self, conv: nn.Conv2d, factor: int = 4):
        super().__init__()
        k, pad, f = conv.kernel_size[0], conv.padding[0], factor
        if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.kernel_size != (k, k)
                or conv.padding != (k // 2, k // 2) or (pad and conv.padding_mode != "reflect") or conv.bias is None
                or (2 * pad) % f):
            raise ValueError(f"BlockConv needs a square stride-1 dense conv with bias and reflection padding "
                             f"k // 2, twice a multiple of {f}")
        cout, cin = conv.weight.shape[:2]
        taps = (f - 1 + k - 1) // f + 1  # block offsets a pixel's kernel reaches
        w = conv.weight.detach()
        kernel = w.new_zeros(cout, f, f, cin, f, f, taps, taps)
        # out[c, f*i + py, f*j + px] = sum w[c, ci, dy, dx] * padded[ci, f*i + py + dy, f*j + px + dx]
        for py in range(f):
            for dy in range(k):
                by, qy = divmod(py + dy, f)
                for px in range(f):
                    for dx in range(k):
                        bx, qx = divmod(px + dx, f)
                        kernel[:, py, px, :, qy, qx, by, bx] = w[:, :, dy, dx]
        kernel = kernel.permute(0, 1, 2, 4, 5, 3, 6, 7)  # inputs phase-major, as space_to_depth
        self.factor, self.pad = f, pad
        self.register_buffer("weight", kernel.reshape(cout * f * f, cin * f * f, taps, taps))
        self.register_buffer("bias", conv.bias.detach().repeat_interleave(f * f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        y = F.conv2d(space_to_depth(x, self.factor), self.weight.to(x.dtype), self.bias.to(x.dtype))
        return F.pixel_shuffle(y, self.factor)


def dense_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A grouped ``conv`` as one dense conv, zero weights between the groups (no gradients):
    the same result. Why: oneDNN ran the encoder's stride-2 convs (one input channel a group)
    far below its dense speed; dense, in bf16 at 640x360 on 2 cores, 5.2 -> 1.9 ms and 2.3 ->
    1.4 ms, with 16 and 32 times the multiply-adds."""
    w, g = conv.weight.detach(), conv.groups
    cout, cin_g = w.shape[:2]
    # skip_init: no random initialisation to overwrite (it would move the global RNG)
    dense = nn.utils.skip_init(nn.Conv2d, cin_g * g, cout, conv.kernel_size, conv.stride, conv.padding,
                               conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    weight = w.new_zeros(dense.weight.shape)
    for k, rows in enumerate(w.split(cout // g)):
        weight[k * len(rows):(k + 1) * len(rows), k * cin_g:(k + 1) * cin_g] = rows
    with torch.no_grad():
        dense.weight.copy_(weight)
        if conv.bias is not None:
            dense.bias.copy_(conv.bias)
    return dense.to(w.dtype).requires_grad_(False)


def space_to_depth(x: torch.Tensor, f: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, f * f * C, H / f, W / f), channel ``(py * f + px) * C + c`` holding
    pixel ``(f * i + py, f * j + px)`` of channel c; channels_last out, one copy. From a
    channels_last input each pixel's channels move as one run: ``F.pixel_unshuffle``'s order
    (``c * f * f + ...``) took 4.1 ms for the decoder's (1, 16, 368, 648) bf16 map on 2 cores,
    this one 0.3 ms."""
    n, c, h, w = x.shape
    t = x.permute(0, 2, 3, 1).reshape(n, h // f, f, w // f, f, c).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(n, h // f, w // f, f * f * c).permute(0, 3, 1, 2)


# Bilinear 2x (half-pixel centres) on an edge-padded input: output row 2i + r, r in -1..2 (rows
# of the neighbouring output pixels too), from input rows i-1, i, i+1.
_BILINEAR_TAPS = ((0.75, 0.25, 0.0), (0.25, 0.75, 0.0), (0.0, 0.75, 0.25), (0.0, 0.25, 0.75))


class UpConv(nn.Module):
    """``conv(upsample2x(x))`` for a stride-1 3x3 conv with reflection padding 1 (any groups),
    computed at the input's resolution: the upsampling's fixed weights are folded into the
    conv, which then makes the four output pixels of each input pixel at once (4x the output
    channels, then ``pixel_shuffle``). In fp32 the same result up to float summation order; in
    bf16 the folded weights are rounded once more, after folding (this conv's error about a
    sixth larger; the network's PSNR against fp32 on a real frame 39.7 dB against 39.8 with the
    plain ops).

    The folded conv pads the input by repeating its edge (as the upsampling clamps there); the
    plain conv reflects the *upsampled* picture instead, which differs on the outermost output
    rows and columns only. Those four lines are computed the plain way from two-pixel strips.

    Why: the decoder's 2x upsamplings and the grouped convs after them took 12.4 and 6.0 ms of
    the network's 76 ms at 640x360 in bf16 on 2 cores; folded, edges included, 4.5 and 2.8 ms
    (BENCHMARKS.md, "CPU, 2026-12-01"). Input H and W must be >= 2. Under ``torch.export``
    with a dynamic height the edge strips make H = 2 a case the exported program refuses (the
    ONNX export keeps it; TensorRT builds one engine per shape)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if (conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.dilation != (1, 1)
                or conv.padding != (1, 1) or conv.padding_mode != "reflect" or conv.bias is None):
            raise ValueError("UpConv needs a stride-1 3x3 conv with bias and reflection padding 1")
        w = conv.weight.detach().float()
        taps = w.new_tensor(_BILINEAR_TAPS)  # (4, 3): output row offset r + 1 -> input row taps
        # out[c, 2i + py, 2j + px] = sum w[c, ci, dy, dx] * up[ci, 2i + py + dy - 1, 2j + px + dx - 1]
        rows = torch.stack([taps[py:py + 3] for py in range(2)])  # (2 phases, 3 dy, 3 input taps)
        kernel = torch.einsum("oiyx,pya,qxb->opqiab", w, rows, rows)
        cout, cin_g = w.shape[:2]
        self.groups = conv.groups
        self.register_buffer("weight", kernel.reshape(cout * 4, cin_g, 3, 3).to(conv.weight.dtype))
        self.register_buffer("bias", conv.bias.detach().repeat_interleave(4))
        self.register_buffer("plain_weight", conv.weight.detach().clone())
        self.register_buffer("plain_bias", conv.bias.detach().clone())

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        u = F.pad(upsample2x(x), (1, 1, 1, 1), mode="reflect")
        return F.conv2d(u, self.plain_weight.to(x.dtype), self.plain_bias.to(x.dtype), groups=self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.weight.to(x.dtype), self.bias.to(x.dtype),
                     groups=self.groups)
        y = F.pixel_shuffle(y, 2)
        # The edges joined with torch.cat, not written in place: the same in eager (+0.3 ms for
        # up2 at 640x360 in bf16), but exported to ONNX in-place writes became ScatterND, which
        # took the decoder from 78 to 129 ms in onnxruntime.
        n = x.shape[0]  # each pair of edge strips in one call, stacked in the batch
        rows = self.plain(torch.cat([x[..., :2, :], x[..., -2:, :]]))
        y = torch.cat([rows[:n, :, :1], y[..., 1:-1, :], rows[n:, :, -1:]], dim=2)
        cols = self.plain(torch.cat([x[..., :2], x[..., -2:]]))
        return torch.cat([cols[:n, ..., :1], y[..., 1:-1], cols[n:, ..., -1:]], dim=3)


@dataclass(frozen=True)
class MicroCode:
    """A style for MicroAST: per level (row 0, 1) the style features' channel ``mean`` and
    ``std`` and the modulator's filter ``weight`` and ``bias``; four (2, 64) float32 tensors."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The code in ``MicroAST.forward``'s argument order."""
        return self.mean, self.std, self.weight, self.bias

    def to(self, device: torch.device | str) -> MicroCode:
        return MicroCode(*(t.to(device) for t in self.tensors()))

    @staticmethod
    def mix(codes: Sequence[MicroCode], weights: Sequence[float]) -> MicroCode:
        return mix_codes(codes, weights)


def mix_codes(codes: Sequence[MicroCode], weights: Sequence[float]) -> MicroCode:
    """A convex combination of codes (weights normalized to sum 1), field by field.

    Why linear: the filter weights and biases are affine in the style features, so mixing them
    equals running the modulator on the mixed features; each AdaIN is affine in (mean, std),
    so mixing the statistics equals mixing that layer's AdaIN outputs, the rule
    ``realtime.adain.mix`` uses. Weights (1, 0) give the first style exactly."""
    if not codes or len(codes) != len(weights):
        raise ValueError(f"need one weight per style, got {len(codes)} styles, {len(weights)} weights")
    w = [float(x) for x in weights]
    if min(w) < 0 or sum(w) <= 0:
        raise ValueError(f"style weights must be non-negative with a positive sum, got {list(weights)}")
    w = [x / sum(w) for x in w]
    fields = zip(*(c.tensors() for c in codes))
    return MicroCode(*(sum(wi * t for wi, t in zip(w, ts)) for ts in fields))


def check_image(x: torch.Tensor, name: str) -> None:
    """Raise ValueError unless ``x`` is (N, 3, H, W) floating with H, W >= ``MIN_SIDE``."""
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point() or min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"{name} must be (N, 3, H, W) float RGB with sides >= {MIN_SIDE}, "
                         f"got {tuple(x.shape)} {x.dtype}")


class MicroAST(nn.Module):
    """The four parts. ``provenance`` holds the metadata that ``save_microast`` writes."""

    def __init__(self):
        super().__init__()
        self.content_encoder, self.style_encoder = Encoder(), Encoder()
        self.modulator, self.decoder = Modulator(), Decoder()
        self.provenance: dict[str, str] = {}

    @torch.no_grad()
    def style_code(self, style: torch.Tensor) -> MicroCode:
        """(1, 3, Hs, Ws) float RGB in [0, 1] -> its ``MicroCode``. Run once per style switch."""
        check_image(style, "style")
        if style.shape[0] != 1:
            raise ValueError(f"one style image at a time, got a batch of {style.shape[0]}")
        levels = self.style_encoder(style.to(self.decoder.out.weight.dtype))
        weight, bias = self.modulator(levels)
        stats = [mean_std(f) for f in levels]
        mean, std = (torch.cat([s[i] for s in stats]) for i in (0, 1))
        return MicroCode(mean, std, weight[0].float(), bias[0].float())

    def forward(self, content: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, alpha: float | torch.Tensor = 1.0) -> torch.Tensor:
        """The per-frame graph: content with H, W multiples of 4 + code tensors -> raw output
        blended with the content by ``alpha`` (1: the published network's output)."""
        out = self.decoder(self.content_encoder(content)[1], mean, std, weight, bias, 1.0)
        return alpha * out + (1 - alpha) * content

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, code: MicroCode, alpha: float = 1.0) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [0, 1] -> stylized, same shape, clamped to [0, 1]."""
        check_image(content, "content")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        h, w = content.shape[-2:]
        pad = (0, -w % MULTIPLE, 0, -h % MULTIPLE)
        x = F.pad(content, pad, mode="reflect") if any(pad) else content
        out = self(x, *code.tensors(), torch.tensor(float(alpha), device=x.device))
        return out[..., :h, :w].clamp(0, 1)


# Published key prefixes (each followed by ``.conv_layer.weight``/``.bias``) of our convs.
_ENCODER_KEYS = {"stem": "enc1.0", "down1": "enc1.2", "mix1": "enc1.4", "down2": "enc1.6", "mix2": "enc1.8",
                 "res1.conv1": "enc1.10.conv1", "res1.conv2": "enc1.10.conv2",
                 "res2.conv1": "enc2.0.conv1", "res2.conv2": "enc2.0.conv2"}
_PUBLISHED_KEYS = {
    "content_encoder": _ENCODER_KEYS,
    "style_encoder": _ENCODER_KEYS,
    "modulator": {"weight.0": "weight1.0", "bias.0": "bias1.0", "weight.1": "weight2.0", "bias.1": "bias2.0"},
    "decoder": {"res1.conv1": "dec1.conv1", "res1.conv2": "dec1.conv2", "res2.conv1": "dec2.conv1",
                "res2.conv2": "dec2.conv2", "up1": "dec3.1", "mix1": "dec3.3", "up2": "dec3.6",
                "mix2": "dec3.8", "out": "dec3.10"},
}


def _published_state(part: str, module: nn.Module, path: Path) -> dict:
    """Read one published state dict and rename its keys to ``module``'s."""
    from realtime.weights import _torch_load

    raw = _torch_load(path)
    renamed = {}
    for key in module.state_dict():
        prefix, param = key.rsplit(".", 1)
        source = f"{_PUBLISHED_KEYS[part][prefix]}.conv_layer.{param}"
        if source not in raw:
            raise WeightsError(f"{path}: not the MicroAST {part.replace('_', ' ')} (no {source!r})")
        renamed[key] = raw.pop(source)
    if raw:
        raise WeightsError(f"{path}: unexpected tensors for the MicroAST {part.replace('_', ' ')}: {sorted(raw)[:4]}")
    return renamed


def load_microast(folder: Path) -> MicroAST:
    """The four published state dicts in ``folder`` (``content_encoder.pth``,
    ``style_encoder.pth``, ``modulator.pth``, ``decoder.pth``) -> ``MicroAST``, fp32, eval.
    A missing or wrong file raises ``WeightsError`` naming it."""
    from realtime.weights import _assign, sha256

    model = MicroAST()
    digests = {}
    for part, (name, _) in SOURCE_FILES.items():
        path = Path(folder) / name
        module = getattr(model, part)
        _assign(module, _published_state(part, module, path), path)
        digests[part] = sha256(path)
    model.provenance = {
        "source_repo": SOURCE_REPO, "source_commit": SOURCE_COMMIT, "licence": LICENCE,
        "source_paths": json.dumps({part: repo_path for part, (_, repo_path) in SOURCE_FILES.items()}),
        "sha256": json.dumps(digests),
    }
    return model.eval()


def save_microast(model: MicroAST, path: Path) -> None:
    """Write ``model`` as fp16 safetensors, format ``FORMAT``, with ``model.provenance``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={**model.provenance, "format": FORMAT})


def load_microast_file(path: Path) -> MicroAST:
    """A file from ``save_microast`` -> ``MicroAST`` in fp32 (weights rounded to fp16), eval."""
    from realtime.weights import _assign, _read_safetensors

    state, meta = _read_safetensors(Path(path), FORMAT)
    model = MicroAST()
    _assign(model, state, Path(path))
    model.provenance = {k: v for k, v in meta.items() if k != "format"}
    return model.eval()


# ---------------------------------------------------------------------------- in the product
# The ``Stylizer`` runs two engines with uint8 frames at their ends, as for AdaIN: the content
# encoder and the decoder, the style code passed to the decoder as plain tensor inputs.
class FrameEncoder(nn.Module):
    """(N, H, W, 3) uint8 RGB, H and W multiples of 4 -> content level 1 (N, 64, H/4, W/4)."""

    def __init__(self, model: MicroAST):
        super().__init__()
        self.encoder = model.content_encoder
        # the same convs, faster (dense_conv's docstring)
        self.downs = nn.ModuleList([dense_conv(self.encoder.down1), dense_conv(self.encoder.down2)])
        self.use_blocks = True  # False: the model's own convs, for counting its FLOPs

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).to(self.encoder.stem.weight.dtype) / 255.0
        return self.encoder(x, self.downs if self.use_blocks else None)[1]


class FrameDecoder(nn.Module):
    """Content level 1 + the code's four tensors -> (N, 4h, 4w, 3) uint8 RGB (clamped)."""

    def __init__(self, model: MicroAST):
        super().__init__()
        self.decoder = model.decoder
        # the same convs, faster (their docstrings)
        self.out = BlockConv(model.decoder.out)
        self.ups = nn.ModuleList([UpConv(model.decoder.up1), UpConv(model.decoder.up2)])
        # False: the plain ops, for counting the network's own FLOPs (BlockConv adds zero taps)
        self.use_blocks = True

    def forward(self, f: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        x = self.decoder.body(f, mean, std, weight, bias, 1.0, self.ups if self.use_blocks else None)
        x = self.out(x) if self.use_blocks else self.decoder.out(x)
        return to_uint8_frames(x)


class StyleEncoder:
    """(H, W, 3) uint8 RGB style image (sides >= 8) -> its ``MicroCode`` (fp32, CPU); an fp32
    copy of the style encoder and the modulator, run once per style."""

    code_type = MicroCode

    def __init__(self, model: MicroAST):
        import copy

        self.model = copy.deepcopy(model).float().eval()

    def to(self, device) -> StyleEncoder:
        self.model.to(device)
        return self

    def __call__(self, rgb) -> MicroCode:
        from realtime.frames import check_rgb

        check_rgb(rgb, "style image")
        dev = self.model.modulator.weight[0].weight.device
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].to(dev, torch.float32) / 255.0
        return self.model.style_code(x).to("cpu")


class Restyle:
    """The style step for the ``Stylizer``: the decoder takes the features and the code as they
    are (its AdaIN layers use the content's own statistics: no temporal stats filter here);
    strength ``alpha`` blends the output picture with the content (see the module docstring)."""

    alpha_in_image = True

    @staticmethod
    def decoder_inputs(feats: torch.Tensor, settings) -> tuple[torch.Tensor, ...]:
        return (feats, *(t.to(feats.device) for t in settings.code.tensors()))
