"""The style map: the gallery's styles laid out in 2-D by t-SNE of their AdaIN style codes,
drawn as named thumbnails on a grid; a click on the map picks one style or a blend of two.

The layout (from the seed talk's t-SNE section): each style is its ``StyleCode`` (relu4_1
channel means and stds), standardized per channel and reduced by PCA to at most 50
dimensions, then embedded by exact t-SNE (van der Maaten & Hinton, JMLR 2008) with a fixed
seed, so the same styles always give the same map. ``layout`` then snaps the embedding to a
grid of ``THUMB`` px thumbnails (each style takes the free cell nearest to its t-SNE place),
so with hundreds of styles no thumbnail hides another and each has its name under it: on a
phone there is no hover. The page shows the map at this size and scrolls it.

Why a t-SNE of our own rather than scikit-learn: the map has a few hundred points, where
exact t-SNE is a few numpy lines per iteration (O(N^2): 430 styles x 1000 iterations take
seconds); scikit-learn with scipy would add ~100 MB to the demo extra for one function.

Click rule (``pick``): a click on a thumbnail (or its name) selects that style alone, and so
does a click nearer one style than 0.6 of the distance to the next. Only a click clearly
between two styles (in the gap between their thumbnails) blends them, each weighted by the
inverse of its distance to the click: the second style's weight is ``d1 / (d1 + d2)``, in
(0.375, 0.5]; the nearer style stays primary. ``blend_point`` is the inverse, used to mark
the current mix.

Data contract: codes are ``StyleCode``s (C,) float32; thumbnails ``(h, w, 3) uint8 RGB``;
points and clicks are ``(x, y)`` pixel coordinates of the rendered map.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from realtime.adain import StyleCode

SEED = 0
BACKGROUND = (246, 245, 242)
MARK = (220, 40, 40)
THUMB = 64  # thumbnail side on the map, px
GAP = 14  # between thumbnails, px
LABEL = 14  # height of the name under a thumbnail, px
CELL = (THUMB + GAP, THUMB + LABEL + GAP)  # (width, height) of a grid cell
SLACK = 1.25  # grid cells per style: room for the t-SNE shape
NEAREST = 0.6  # a click nearer one style than this share of the distance to the next selects it
MAP_WIDTH = 24 * CELL[0]  # the widest map (about 24 columns), px


# ----------------------------------------------------------------------------- t-SNE


def code_features(codes: Sequence[StyleCode], dims: int = 50) -> np.ndarray:
    """Style codes -> (N, D) float64 features: [mean, std] per channel, each column
    standardized across the styles (constant columns dropped), PCA to ``dims`` at most."""
    x = np.stack([np.concatenate([c.mean.detach().cpu().numpy(), c.std.detach().cpu().numpy()])
                  for c in codes]).astype(np.float64)
    sd = x.std(axis=0)
    x = (x[:, sd > 1e-12] - x.mean(axis=0)[sd > 1e-12]) / sd[sd > 1e-12]
    if x.shape[1] == 0 or len(x) < 2:
        return np.zeros((len(x), 1))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    k = min(dims, len(s))
    return u[:, :k] * s[:k]


def _joint_probabilities(d2: np.ndarray, perplexity: float, steps: int = 64) -> np.ndarray:
    """Symmetric t-SNE affinities P (N, N) from squared distances: a Gaussian per point whose
    precision is found by bisection (all rows at once) so its entropy is log(perplexity)."""
    n = len(d2)
    target = np.log(perplexity)
    lo, hi = np.zeros(n), np.full(n, np.inf)
    beta = np.ones(n)
    off = ~np.eye(n, dtype=bool)
    d2 = d2 / max(np.median(d2[off]), 1e-12)  # scale-free bisection start
    for _ in range(steps):
        logits = -d2 * beta[:, None]
        logits[~off] = -np.inf
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        entropy = -np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-300)), 0.0), axis=1)
        too_flat = entropy > target  # widen the precision
        lo = np.where(too_flat, beta, lo)
        hi = np.where(too_flat, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2, (lo + hi) / 2)
    p = (p + p.T) / (2 * n)
    return np.maximum(p, 1e-12)


def tsne(x: np.ndarray, *, perplexity: float = 30.0, iterations: int = 1000, seed: int = SEED) -> np.ndarray:
    """Exact t-SNE: (N, D) features -> (N, 2) float64 embedding, centred; deterministic for a
    given ``seed``. The perplexity is capped at (N - 1) / 3 (and at least 1) for small N.
    Optimizer as in the paper and scikit-learn: early exaggeration 12 for 250 iterations,
    momentum 0.5 then 0.8, per-parameter gains, learning rate max(N / 48, 50)."""
    n = len(x)
    if n < 3:
        return np.array([[-1.0, 0.0], [1.0, 0.0]])[:n]
    perplexity = float(np.clip(perplexity, 1.0, max(1.0, (n - 1) / 3)))
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    p = _joint_probabilities(d2, perplexity)
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, 1e-4, (n, 2))
    velocity, gains = np.zeros_like(y), np.ones_like(y)
    rate = max(n / 48.0, 50.0)
    for it in range(iterations):
        early = it < 250
        yy = np.sum(y * y, axis=1)
        num = 1.0 / (1.0 + np.maximum(yy[:, None] + yy[None, :] - 2 * y @ y.T, 0.0))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        w = ((12.0 if early else 1.0) * p - q) * num
        grad = 4.0 * (w.sum(axis=1)[:, None] * y - w @ y)
        same = np.sign(grad) == np.sign(velocity)
        gains = np.maximum(np.where(same, gains * 0.8, gains + 0.2), 0.01)
        velocity = (0.5 if early else 0.8) * velocity - rate * gains * grad
        y = y + velocity
    return y - y.mean(axis=0)


# ----------------------------------------------------------------------------- canvas


def layout(embedding: np.ndarray) -> tuple[np.ndarray, tuple[int, int], int]:
    """(N, 2) embedding -> ((N, 2) pixel centres of the thumbnails, canvas (width, height), thumb).

    A grid of about ``SLACK * N`` cells, as square as ``MAP_WIDTH`` allows; the embedding is
    stretched over it and each style, in turn from the densest part outwards, takes the free
    cell nearest its place (deterministic)."""
    e = np.asarray(embedding, dtype=np.float64).reshape(-1, 2)
    n = len(e)
    cols = int(np.clip(np.ceil(np.sqrt(SLACK * max(n, 1))), 1, MAP_WIDTH // CELL[0]))
    rows = max(1, int(np.ceil(SLACK * max(n, 1) / cols)))
    lo, span = e.min(axis=0) if n else np.zeros(2), np.ptp(e, axis=0) if n else np.ones(2)
    unit = np.where(span > 0, (e - lo) / np.where(span > 0, span, 1.0), 0.5)
    want = unit * [cols - 1, rows - 1]
    cells = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), axis=-1).reshape(-1, 2).astype(np.float64)
    free = np.ones(len(cells), dtype=bool)
    centre = want.mean(axis=0) if n else np.zeros(2)
    taken = np.zeros((n, 2))
    for i in np.argsort(np.linalg.norm(want - centre, axis=1), kind="stable"):
        d = np.linalg.norm(cells - want[i], axis=1)
        d[~free] = np.inf
        j = int(np.argmin(d))
        free[j] = False
        taken[i] = cells[j]
    points = np.stack([(taken[:, 0] + 0.5) * CELL[0], taken[:, 1] * CELL[1] + GAP / 2 + THUMB / 2], axis=1)
    return points, (cols * CELL[0], rows * CELL[1]), THUMB


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size)
    except (OSError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render(thumbs: Sequence[np.ndarray], points: np.ndarray, size: tuple[int, int], thumb: int,
           labels: Sequence[str] | None = None) -> np.ndarray:
    """Thumbnails (square-cropped to ``thumb`` px, thin frame) centred on ``points``, each with
    its name under it -> the map, (height, width, 3) uint8 RGB."""
    canvas = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for i, (img, (x, y)) in enumerate(zip(thumbs, points)):
        tile = ImageOps.fit(Image.fromarray(img), (thumb, thumb), Image.Resampling.LANCZOS)
        left, top = round(x - thumb / 2), round(y - thumb / 2)
        draw.rectangle((left - 2, top - 2, left + thumb + 1, top + thumb + 1), fill=(255, 255, 255),
                       outline=(150, 150, 150))
        canvas.paste(tile, (left, top))
        if labels is not None:
            text = _fit(draw, labels[i], font, thumb + GAP - 2)
            draw.text((x, top + thumb + 3), text, fill=(40, 40, 40), font=font, anchor="mt")
    return np.asarray(canvas).copy()


def blend_point(points: np.ndarray, primary: int, second: int | None, mix: float) -> np.ndarray:
    """Where a mix sits on the map: ``(1 - mix) * P[primary] + mix * P[second]`` (inverse of ``pick``
    for clicks on the segment between the two)."""
    if second is None or mix <= 0:
        return points[primary].astype(np.float64)
    return (1 - mix) * points[primary] + mix * points[second]


def mark(base: np.ndarray, points: np.ndarray, thumb: int, primary: int | None,
         second: int | None = None, mix: float = 0.0) -> np.ndarray:
    """A copy of the map with the current choice marked: a red frame on the primary style;
    for a blend, a line to the second style and a dot at ``blend_point``."""
    canvas = Image.fromarray(base)
    if primary is None:
        return base.copy()
    draw = ImageDraw.Draw(canvas)
    x, y = points[primary]
    r = thumb / 2 + 3
    draw.rectangle((x - r, y - r, x + r, y + r), outline=MARK, width=3)
    if second is not None and mix > 0:
        draw.line([tuple(points[primary]), tuple(points[second])], fill=MARK, width=2)
        bx, by = blend_point(points, primary, second, mix)
        draw.ellipse((bx - 6, by - 6, bx + 6, by + 6), fill=MARK, outline=(255, 255, 255), width=2)
    return np.asarray(canvas).copy()


def pick(points: np.ndarray, xy: tuple[float, float], thumb: float) -> tuple[int, int | None, float]:
    """A click at ``xy`` -> (primary index, second index or None, weight of the second in [0, 0.5]).

    On a thumbnail of side ``thumb`` (its name under it included), or nearer one centre than
    ``NEAREST`` of the distance to the next: that style alone. Otherwise the two nearest,
    blended by inverse distance: weight of the second = d1 / (d1 + d2)."""
    if len(points) == 0:
        raise ValueError("the map has no styles")
    x, y = float(xy[0]), float(xy[1])
    d = np.hypot(points[:, 0] - x, points[:, 1] - y)
    order = np.argsort(d, kind="stable")
    first = int(order[0])
    dx, dy = x - points[first, 0], y - points[first, 1]
    on_tile = abs(dx) <= thumb / 2 + 2 and -thumb / 2 - 2 <= dy <= thumb / 2 + LABEL
    if len(points) == 1 or on_tile or d[first] < NEAREST * d[int(order[1])]:
        return first, None, 0.0
    second = int(order[1])
    return first, second, float(d[first] / (d[first] + d[second]))
