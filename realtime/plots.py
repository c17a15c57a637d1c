"""Pictures of a training run: loss curves and the held-out sample grid, as PNGs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from realtime.images import write_image


def draw_curves(records: list[dict], path: Path, size: tuple[int, int] = (960, 540)) -> None:
    """Train (thin) and held-out (thick) losses against step, log-scale y, as a PNG."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = 70, w - 190, 30, h - 40
    series = []
    for kind, thick in (("train", 1), ("eval", 2)):
        rs = [r for r in records if r["kind"] == kind]
        for key, color in (("total", (0, 0, 0)), ("content", (200, 80, 0)), ("style", (0, 60, 220))):
            if rs:
                series.append((f"{'held-out' if kind == 'eval' else 'train'} {key}", thick, color,
                               np.array([r["step"] for r in rs], float),
                               np.log10(np.maximum([r[key] for r in rs], 1e-12))))
    if series:
        xmax = max(s[3].max() for s in series) or 1.0
        lo = np.floor(min(s[4].min() for s in series))
        hi = max(np.ceil(max(s[4].max() for s in series)), lo + 1)
        px = lambda x: (x0 + (x1 - x0) * x / xmax).astype(np.int32)  # noqa: E731
        py = lambda y: (y1 - (y1 - y0) * (y - lo) / (hi - lo)).astype(np.int32)  # noqa: E731
        for d in range(int(lo), int(hi) + 1):
            y = int(py(np.array(float(d))))
            cv2.line(img, (x0, y), (x1, y), (225, 225, 225), 1)
            cv2.putText(img, f"1e{d}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        for k in range(5):
            x = x0 + (x1 - x0) * k // 4
            cv2.putText(img, f"{xmax * k / 4:.0f}", (x - 15, y1 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        for i, (label, thick, color, xs, ys) in enumerate(series):
            pts = np.stack([px(xs), py(ys)], 1).reshape(-1, 1, 2)
            cv2.polylines(img, [pts], False, color, thick, cv2.LINE_AA)
            cv2.line(img, (x1 + 12, y0 + 20 * i + 6), (x1 + 36, y0 + 20 * i + 6), color, thick)
            cv2.putText(img, label, (x1 + 42, y0 + 20 * i + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1)
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, "loss (log10) vs step; style loss unweighted", (x0, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    write_image(path, cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def draw_grid(content: torch.Tensor, style: torch.Tensor, out: torch.Tensor, path: Path) -> None:
    """Content (Nc, 3, h, w) down the left, styles (Ns, ...) along the top, outputs (Nc, Ns, 3,
    h, w) inside, all RGB in [0, 1] -> a ((Nc + 1) h, (Ns + 1) w) PNG."""
    nc, ns, _, h, w = out.shape
    canvas = torch.ones(3, (nc + 1) * h, (ns + 1) * w)
    for j in range(ns):
        canvas[:, :h, (j + 1) * w:(j + 2) * w] = style[j]
    for i in range(nc):
        canvas[:, (i + 1) * h:(i + 2) * h, :w] = content[i]
        for j in range(ns):
            canvas[:, (i + 1) * h:(i + 2) * h, (j + 1) * w:(j + 2) * w] = out[i, j]
    img = (canvas.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(path, img)
