"""Colour preservation (Gatys et al. 2016, "Preserving colour in neural artistic style
transfer"; Huang & Belongie 2017, section 7), as pure torch functions.

Two ways to keep the content's colours while taking the style's texture:

* ``luminance_only``: after stylization, keep the stylized frame's luma and put back the
  content frame's chroma. Cheap, per frame, runs on whatever device the frames are on.
* ``match_color``: before encoding the style, recolour the style image so its RGB mean and
  covariance equal the content's. Done once per (style, content) pair.

Colour space for ``luminance_only``: full-range YCbCr with the ITU-R BT.601 luma weights
(the JPEG/JFIF variant: Y = 0.299 R + 0.587 G + 0.114 B, Cb and Cr centred on 0). A grey
content pixel has Cb = Cr = 0, so the output is exactly grey.

Matrix root for ``match_color``: the symmetric (principal) square roots of the two 3x3
covariances, ``A = C_c^(1/2) C_s^(-1/2)`` (the "Image Analogies" variant in Gatys et al.,
which they found slightly better than Cholesky). It is the linear map that matches the
covariance while rotating colours the least.
"""
from __future__ import annotations

import numpy as np
import torch

# BT.601 full range (JFIF): Y = KR R + KG G + KB B; Cb = (B - Y) / (2 (1 - KB)); Cr = (R - Y) / (2 (1 - KR)).
# Swapping chroma only needs B - Y and R - Y, so the constant factors cancel.
KR, KG, KB = 0.299, 0.587, 0.114
# Covariances are regularized by this (in [0, 1]^2 units, i.e. std ~ 0.4 grey levels)
# so a flat or grey style image does not blow up the inverse root.
COV_EPS = 2e-6


def _check_pair(stylized: torch.Tensor, content: torch.Tensor) -> None:
    for name, t in (("stylized", stylized), ("content", content)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 3 or t.shape[-1] != 3:
            raise ValueError(f"{name} must be (..., H, W, 3) RGB, got shape {tuple(t.shape)}")
        if t.dtype != torch.uint8 and not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be uint8 or float, got {t.dtype}")
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} differ in shape")
    if stylized.dtype != content.dtype:
        raise ValueError(f"stylized ({stylized.dtype}) and content ({content.dtype}) differ in dtype")
    if stylized.device != content.device:
        raise ValueError(f"stylized ({stylized.device}) and content ({content.device}) are on different devices")


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma, written as G plus offsets so that R = G = B = v gives exactly v."""
    g = rgb[..., 1]
    return g + KR * (rgb[..., 0] - g) + KB * (rgb[..., 2] - g)


def luminance_only(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Stylized luma with the content's chroma (BT.601 YCbCr, full range).

    ``stylized``, ``content``: ``(..., H, W, 3)`` RGB tensors of the same shape, dtype and
    device, typically ``(N, H, W, 3)``; either uint8 in [0, 255] or float in [0, 1]. Returns
    the same shape, dtype, range and device. Computed in fp32; where the recombined colour
    falls outside the RGB cube it is clamped per channel.
    """
    _check_pair(stylized, content)
    u8 = stylized.dtype == torch.uint8
    scale = 255.0 if u8 else 1.0
    s = stylized.float() / scale
    c = content.float() / scale
    y = _luma(s)
    # Chroma as offsets from the content's luma (Cr, Cb up to a constant factor). Written
    # so a grey content pixel gives exactly zero and the output is exactly grey.
    yc = _luma(c)
    dr = c[..., 0] - yc
    db = c[..., 2] - yc
    r = y + dr
    b = y + db
    g = y - (KR * dr + KB * db) / KG
    out = torch.stack((r, g, b), dim=-1).clamp_(0.0, 1.0)
    if u8:
        return (out * 255.0 + 0.5).to(torch.uint8)
    return out.to(stylized.dtype)


def _mean_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 3) float64 -> mean (3,), covariance (3, 3) (biased, like the paper)."""
    mean = x.mean(dim=0)
    d = x - mean
    return mean, d.T @ d / x.shape[0]


def _sym_power(cov: torch.Tensor, power: float) -> torch.Tensor:
    """Symmetric positive-definite (3, 3) -> its principal power via eigendecomposition."""
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp_min(COV_EPS)
    return (evecs * evals.pow(power)) @ evecs.T


def color_transfer_matrix(style_rgb: torch.Tensor, content_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map ``x -> A x + b`` (float64, [0, 1] units) taking the style pixels'
    mean/covariance to the content's. Inputs: (P, 3) float64 RGB in [0, 1]."""
    mu_s, cov_s = _mean_cov(style_rgb)
    mu_c, cov_c = _mean_cov(content_rgb)
    eye = torch.eye(3, dtype=cov_s.dtype, device=cov_s.device)
    a = _sym_power(cov_c + COV_EPS * eye, 0.5) @ _sym_power(cov_s + COV_EPS * eye, -0.5)
    return a, mu_c - a @ mu_s


def match_color(style: np.ndarray | torch.Tensor, content: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Recolour ``style`` so its RGB mean and covariance match ``content``'s.

    ``style``: ``(H, W, 3) uint8 RGB``; ``content``: ``(H', W', 3) uint8 RGB`` (any size).
    Numpy arrays or torch tensors (any device); the result has ``style``'s type, shape and
    device, uint8, clipped to [0, 255]. Clipping and rounding make the match approximate
    where the mapped colours leave the RGB cube.
    """
    is_np = isinstance(style, np.ndarray)
    # torch wants writable memory (it warns on a read-only array, e.g. one from Pillow): copy only then
    s = torch.from_numpy(np.require(style, requirements=("C", "W"))) if is_np else style
    c = torch.from_numpy(np.require(content, requirements=("C", "W"))) if isinstance(content, np.ndarray) else content
    for name, t in (("style", s), ("content", c)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 3 or t.shape[2] != 3:
            desc = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB image, got {desc}")
        if t.shape[0] * t.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    device = s.device
    sp = s.reshape(-1, 3).to(torch.float64) / 255.0
    cp = c.to(device).reshape(-1, 3).to(torch.float64) / 255.0
    a, b = color_transfer_matrix(sp, cp)
    out = (sp @ a.T + b).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).reshape(s.shape)
    return out.numpy() if is_np else out
