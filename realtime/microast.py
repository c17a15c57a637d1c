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
from realtime.fastconv import BlockConv, UpConv, dense_conv, upsample2x
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
