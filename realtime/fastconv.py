"""Exact, faster forms of the convolutions MicroAST's frame modules run on the CPU.

Each computes what the plain ops compute (tests compare them to 1e-5 in fp32; in bf16 the
rounding differs: BENCHMARKS.md, "CPU, 2026-12-01"). They replace, at inference only, layers
that oneDNN ran far below its rate on 2 cores: a conv with 3 output channels (``BlockConv``),
a 2x upsampling followed by a grouped conv (``UpConv``), grouped convs with one input channel a
group (``dense_conv``). ``realtime.microast``'s ``FrameEncoder`` and ``FrameDecoder`` build
them from the model's layers when they are made (weights changed later are not followed; the
product builds the frame modules from a loaded model) and keep the plain ops one flag away
(``use_blocks``), which FLOP counts use.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
    # built on the meta device, then given its weights: no random initialisation to overwrite
    # (it would move the global RNG; ``nn.utils.skip_init`` imports sympy, 0.4 s of start-up)
    dense = nn.Conv2d(cin_g * g, cout, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                      bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta")
    weight = w.new_zeros(dense.weight.shape)
    for k, rows in enumerate(w.split(cout // g)):
        weight[k * len(rows):(k + 1) * len(rows), k * cin_g:(k + 1) * cin_g] = rows
    dense.weight = nn.Parameter(weight, requires_grad=False)
    if conv.bias is not None:
        dense.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
    return dense


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
