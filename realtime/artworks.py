"""Built-in styles: artworks drawn by this project's own code (no third-party images).

Each is a function ``size -> (size, size, 3) uint8 RGB``, deterministic (fixed seed), and
the same picture at every size (the random draws do not depend on ``size``; only the
rasterization does).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import cv2
import numpy as np

# ----------------------------------------------------------------------------- helpers


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1): (x, y), each (size, size) float32."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(t, t)


def _noise(rng: np.random.Generator, size: int, cells: int, octaves: int = 1, shape=None) -> np.ndarray:
    """Fractal value noise, (size, size) float32 roughly in [-1, 1]. ``shape`` (h, w) overrides."""
    h, w = shape or (size, size)
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        n = cells * 2**k
        g = rng.uniform(-1, 1, (n + 1, n + 1)).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return out / total


def _lerp_colors(t: np.ndarray, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """Map t (any shape) through a piecewise-linear colour ramp -> (..., 3) float32 in 0..255."""
    xs = [p for p, _ in stops]
    return np.stack([np.interp(t, xs, [c[i] for _, c in stops]) for i in range(3)], -1).astype(np.float32)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _paper(rng: np.random.Generator, size: int, color, grain: float = 6.0) -> np.ndarray:
    base = np.empty((size, size, 3), np.float32)
    base[:] = color
    fibre = cv2.resize(rng.normal(0, 1, (256, 256)).astype(np.float32), (size, size))
    blotch = _noise(rng, size, 3, 2)
    return base + (grain * fibre + 1.5 * grain * blotch)[..., None]


def check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 4096:
        raise ValueError(f"style size must be an int in 16..4096, got {size!r}")
    return int(size)


# ----------------------------------------------------------------------------- built-ins


def _mosaic(size: int, seed: int = 11) -> np.ndarray:
    """Roman floor mosaic: Voronoi tesserae with bevels and dark grout, a sun medallion."""
    rng = np.random.default_rng(seed)
    n = 30                                     # tiles per side; 2 more off each edge
    m = n + 4
    jit = rng.uniform(0.1, 0.9, (m, m, 2)).astype(np.float32)
    seeds = ((np.stack(np.meshgrid(np.arange(m), np.arange(m)), -1) - 2 + jit) / n).astype(np.float32)
    flat = seeds.reshape(-1, 2)
    x, y = _grid(size)
    cx, cy = np.floor(x * n).astype(np.int32) + 2, np.floor(y * n).astype(np.int32) + 2
    # Worley: nearest and second-nearest seed among the 5x5 neighbouring cells
    d1 = np.full(x.shape, 9.0, np.float32)
    d2 = d1.copy()
    idx = np.zeros(x.shape, np.int32)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            k = (cy + dy) * m + (cx + dx)
            s = flat[k]
            d = np.hypot(x - s[..., 0], y - s[..., 1])
            closer = d < d1
            d2 = np.where(closer, d1, np.minimum(d2, d))
            idx = np.where(closer, k, idx)
            d1 = np.minimum(d, d1)
    d1 *= n
    d2 *= n
    # the design, evaluated at each tile's seed: border, teal field, petals, sun
    sx, sy = flat[:, 0], flat[:, 1]
    r, th = np.hypot(sx - 0.5, sy - 0.5), np.arctan2(sy - 0.5, sx - 0.5)
    edge = np.minimum(np.minimum(sx, 1 - sx), np.minimum(sy, 1 - sy))
    ivory, sand, gold, rust = (226, 214, 188), (205, 180, 140), (232, 176, 52), (178, 64, 38)
    orange, navy, teal, cream = (220, 120, 48), (32, 52, 96), (40, 112, 118), (240, 230, 205)
    wave = np.sin(sx * 8 * math.pi) * np.sin(sy * 8 * math.pi)
    col = np.where(wave[:, None] > 0.5, np.float32(sand), np.float32(ivory)).astype(np.float32)
    col[r < 0.43] = navy
    col[r < 0.40] = teal
    petals = r < 0.25 + 0.09 * np.abs(np.cos(5 * th))
    odd = np.floor((th + math.pi) / (2 * math.pi) * 10) % 2 == 1
    col[petals] = rust
    col[petals & odd] = orange
    col[r < 0.17] = cream
    col[r < 0.13] = gold
    col[r < 0.05] = rust
    col[edge < 0.07] = navy
    col[(edge < 0.07) & (edge > 0.033) & ((np.floor(sx * n) + np.floor(sy * n)) % 2 == 0)] = gold
    col *= rng.uniform(0.86, 1.1, (m * m, 1)).astype(np.float32)
    col += rng.normal(0, 6, (m * m, 3)).astype(np.float32)
    img = col[idx]
    gap = d2 - d1
    bevel = np.clip(gap / 0.35, 0, 1)[..., None]
    img = img * (0.78 + 0.22 * bevel)
    grout = np.clip((gap - 0.12) / (1.5 * n / size) + 0.5, 0, 1)[..., None]  # 1.5 px antialiased edge
    g = np.array((58, 50, 44), np.float32) + 10 * _noise(rng, size, 40)[..., None]
    return _to_u8(img * grout + g * (1 - grout))


def _waves(size: int, seed: int = 5) -> np.ndarray:
    """After Hokusai: layered Prussian-blue swells with foam lines, a great wave, Fuji."""
    rng = np.random.default_rng(seed)
    x, y = _grid(size)
    img = _paper(rng, size, (232, 220, 192), 4.0)
    img *= (0.93 + 0.07 * y)[..., None]
    # Mount Fuji in the distance
    tri = np.clip(1 - np.abs(x - 0.66) / 0.2, 0, 1)
    fuji = (tri > 0) & (y > 0.5 - 0.2 * tri ** 0.9)
    for cy, cx, w in ((0.12, 0.3, 0.25), (0.2, 0.75, 0.18), (0.08, 0.8, 0.12)):   # cloud bands
        band = np.exp(-((y - cy) / 0.012) ** 2 - ((x - cx) / w) ** 6)
        img += (band * 14)[..., None]
    cap = y < 0.36 + 0.015 * np.sin(x * 150)
    img[fuji & (y < 0.56)] = (70, 88, 120)
    img[fuji & cap & (y < 0.56)] = (238, 232, 218)
    navy, prussian, mid, light, foam = (18, 32, 74), (28, 66, 124), (64, 110, 160), (132, 170, 196), (246, 240, 226)
    layers = 6
    for k in range(layers):
        t = k / (layers - 1)
        base = 0.5 + 0.45 * t
        amp = 0.03 + 0.06 * t
        freq = rng.uniform(1.5, 3.0) * (1.4 - 0.6 * t)
        ph = rng.uniform(0, 2 * math.pi, 3)
        u = x
        if k == 3:   # the great wave leans over to the right
            u = x - 0.45 * np.clip(base - y, 0, None) ** 1.5
        crest = (np.sin(2 * math.pi * freq * u + ph[0]) + 0.5 * np.sin(2 * math.pi * 2.1 * freq * u + ph[1])
                 + 0.25 * np.sin(2 * math.pi * 4.3 * freq * u + ph[2]))
        crest = base - amp * np.abs(crest) ** 1.3
        if k == 3:
            crest = crest - 0.45 * np.exp(-((u - 0.22) / 0.15) ** 2) * (1 + 0.06 * np.sin(u * 90))
        d = y - crest
        inside = d > 0
        c0 = np.array(_lerp_colors(np.array(t), [(0, light), (0.5, mid), (1, prussian)]), np.float32)
        body = c0 + (np.array(navy, np.float32) - c0) * np.clip(d / 0.25, 0, 1)[..., None]
        lines = (np.sin(d * 2 * math.pi * 70) > 0.7) & (d < (0.3 if k == 3 else 0.08)) & (d > 0.012)
        body = np.where(lines[..., None], body * 0.45 + np.array(foam) * 0.55, body)
        w = 0.012 + 0.006 * t
        foamband = (d < w) & inside
        body = np.where(foamband[..., None], foam, body)
        img = np.where(inside[..., None], body, img)
    # spray: white dots above the front crests
    pts, rad = rng.uniform(0, 1, (500, 2)), rng.uniform(0.002, 0.007, 500)
    for (px, py), rr in zip(pts, rad, strict=True):
        if 0.62 < py < 0.9:
            cv2.circle(img, (int(px * size * 16), int(py * size * 16)), max(1, int(rr * size * 16)),
                       foam, -1, cv2.LINE_AA, 4)
    return _to_u8(img)


def _op_art(size: int, seed: int = 3) -> np.ndarray:
    """Vasarely-like checkerboard swelling under a lens, two colour pairs. No randomness."""
    del seed
    ss = 2 * size                              # supersample, then area-downsample
    x, y = _grid(ss)
    px, py = x - 0.55, y - 0.45
    r2 = px * px + py * py
    bulge = 1 - 0.55 * np.exp(-r2 / 0.06)
    u, v = px * bulge, py * bulge
    n = 14
    checker = (np.floor(u * n) + np.floor(v * n)) % 2 == 0
    inner = np.exp(-r2 / 0.06)
    a = _lerp_colors(inner, [(0, (24, 24, 28)), (0.5, (40, 30, 120)), (1, (210, 40, 60))])
    b = _lerp_colors(inner, [(0, (236, 230, 214)), (0.5, (120, 190, 220)), (1, (250, 200, 60))])
    img = np.where(checker[..., None], a, b)
    return _to_u8(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))


def _ink(size: int, seed: int = 8) -> np.ndarray:
    """Sumi-e: misty mountain ridges in ink wash, an enso brush circle, a red seal."""
    rng = np.random.default_rng(seed)
    x, y = _grid(size)
    img = _paper(rng, size, (236, 228, 208), 5.0)
    alpha = np.zeros((size, size), np.float32)
    for k, (base, amp, dens) in enumerate(((0.52, 0.18, 0.35), (0.64, 0.16, 0.55), (0.78, 0.14, 0.8))):
        ridge = base - amp * (0.5 + 0.5 * _noise(rng, size, 4, 4, shape=(1, size))[0])
        d = y - ridge[None, :]
        tex = 0.75 + 0.25 * _noise(rng, size, 24, 3)
        wash = np.where(d > 0, np.exp(-np.maximum(d, 0) / (0.05 + 0.03 * k)), 0) * dens * tex
        edge = np.exp(-(d / 0.004) ** 2) * dens * 0.9 * (d > -0.01)
        a_k = np.clip(np.maximum(wash, edge), 0, 1)
        alpha = alpha + a_k * (1 - alpha)
    # the enso: one stroke, thick to thin, bristle streaks, ink running out
    cx, cy, R = 0.7, 0.27, 0.15
    r = np.hypot(x - cx, y - cy)
    th = (np.arctan2(y - cy, x - cx) + 2.2) % (2 * math.pi) / (2 * math.pi)   # 0..1 along the stroke
    width = 0.035 * (1 - 0.75 * th) + 0.004
    rad = R + 0.01 * np.sin(th * 2 * math.pi * 1.5)
    t = (r - rad) / width
    bristle = cv2.resize(rng.uniform(0, 1, (1, 48)).astype(np.float32), (size * 4, 1),
                         interpolation=cv2.INTER_LINEAR)[0]
    bi = np.clip(((t + 1) / 2 * (bristle.size - 1)).astype(int), 0, bristle.size - 1)
    dry = bristle[bi] > (th ** 2) * 0.9
    stroke = (np.abs(t) < 1) & dry & (th < 0.93)
    alpha = np.maximum(alpha, stroke * 0.95)
    ink_rgb = np.array((22, 20, 24), np.float32)
    img = img * (1 - alpha[..., None]) + ink_rgb * alpha[..., None]
    seal = (np.abs(x - 0.9) < 0.035) & (np.abs(y - 0.9) < 0.05)
    carve = (np.abs(x - 0.9) < 0.028) & (np.abs(y - 0.9) < 0.043) & (
        (np.abs(x - 0.9) < 0.006) | (np.abs(y - 0.89) < 0.005) | (np.abs(y - 0.915) < 0.004))
    img[seal & ~carve] = img[seal & ~carve] * 0.25 + np.array((190, 30, 30), np.float32) * 0.75
    return _to_u8(img)


def _ember(size: int, seed: int = 4) -> np.ndarray:
    """Flames rising from the bottom: domain-warped turbulence through a fire ramp."""
    rng = np.random.default_rng(seed)
    x, y = _grid(size)
    wx = _noise(rng, size, 3, 3)
    wy = _noise(rng, size, 3, 3)
    # turbulence sampled on a domain-warped, vertically stretched grid
    base = np.abs(_noise(rng, 1024, 6, 5, shape=(1024, 1024)))
    mx = ((x + 0.12 * wx) % 1) * 1023
    my = ((y * 0.6 + 0.2 * wy) % 1) * 1023
    turb = cv2.remap(base, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR)
    flame = 1 - turb * 2.2
    heat = np.clip(flame * (0.25 + 1.05 * y ** 1.3) + 0.25 * y - 0.2, 0, 1)
    img = _lerp_colors(heat, [(0, (10, 4, 8)), (0.25, (90, 10, 12)), (0.5, (196, 40, 8)),
                              (0.7, (250, 120, 20)), (0.87, (255, 206, 80)), (1, (255, 248, 222))])
    pts, rad = rng.uniform(0, 1, (160, 2)), rng.uniform(0.0015, 0.004, 160)
    for (px, py), rr in zip(pts, rad, strict=True):
        if py < 0.6:
            cv2.circle(img, (int(px * size * 16), int(py * size * 16)), max(1, int(rr * size * 16)),
                       (255, 190, 90), -1, cv2.LINE_AA, 4)
    return _to_u8(img)


def _pointillism(size: int, seed: int = 9) -> np.ndarray:
    """Seurat-like: a sunny river landscape painted in dots of broken colour."""
    rng = np.random.default_rng(seed)
    m = 160                                        # the underlying scene, low resolution
    x, y = _grid(m)
    scene = _lerp_colors(y / 0.45, [(0, (96, 150, 214)), (0.6, (170, 200, 226)), (1, (250, 222, 160))])
    sun = np.hypot(x - 0.74, y - 0.2)
    scene = np.where((sun < 0.07)[..., None], (255, 214, 96), scene)
    scene += (np.exp(-(sun / 0.15) ** 2) * 40)[..., None] * np.array((1, 0.8, 0.2))
    hills = 0.47 - 0.05 * np.sin(x * 7 + 1) - 0.03 * np.sin(x * 17)
    scene = np.where((y > hills)[..., None], _lerp_colors(y, [(0.4, (70, 120, 90)), (0.55, (50, 96, 70))]), scene)
    river = (y > 0.56) & (y < 0.7 + 0.05 * np.sin(x * 6))
    water = _lerp_colors(y, [(0.56, (70, 120, 180)), (0.72, (40, 90, 160))])
    water += (np.exp(-((x - 0.74) / 0.05) ** 2) * 90)[..., None] * np.array((1, 0.85, 0.4))
    scene = np.where(river[..., None], water, scene)
    grass = y >= 0.7 + 0.05 * np.sin(x * 6)
    scene = np.where(grass[..., None], _lerp_colors(y, [(0.7, (150, 180, 70)), (1, (70, 130, 50))]), scene)
    canopy = np.hypot((x - 0.2) / 1.1, y - 0.36) < 0.17
    trunk = (np.abs(x - 0.21) < 0.02) & (y > 0.45) & (y < 0.8)
    scene = np.where(canopy[..., None], (40, 100, 60), scene)
    scene = np.where(trunk[..., None], (110, 70, 40), scene)
    flowers = grass & (_noise(rng, m, 12) > 0.35)
    scene = np.where(flowers[..., None], (226, 90, 60), scene)
    img = np.full((size, size, 3), (240, 232, 214), np.float32)
    count = 14000
    pts = rng.uniform(0, 1, (count, 2))
    rad = rng.uniform(0.0045, 0.008, count)
    base = scene[np.minimum((pts[:, 1] * m).astype(int), m - 1), np.minimum((pts[:, 0] * m).astype(int), m - 1)]
    # broken colour: brightness jitter, and a few dots of the complementary hue
    cols = base * rng.uniform(0.8, 1.2, (count, 1)) + rng.normal(0, 18, (count, 3))
    comp = rng.uniform(0, 1, count) < 0.1
    cols[comp] = 255 - base[comp] * 0.8
    for (px, py), rr, c in zip(pts, rad, np.clip(cols, 0, 255), strict=True):
        cv2.circle(img, (int(px * size * 16), int(py * size * 16)), max(8, int(rr * size * 16)),
                   tuple(float(v) for v in c), -1, cv2.LINE_AA, 4)
    return _to_u8(img)


def _hatching(size: int, seed: int = 2) -> np.ndarray:
    """Pencil cross-hatching of a lit still life (spheres on a table)."""
    rng = np.random.default_rng(seed)
    x, y = _grid(size)
    tone = 0.92 - 0.12 * y                       # wall
    tone = np.where(y > 0.68, 0.62 - 0.2 * (y - 0.68), tone)   # table
    light = np.array((-0.55, -0.6, 0.58)) / np.linalg.norm((-0.55, -0.6, 0.58))
    for cx, cy, r in ((0.33, 0.56, 0.17), (0.66, 0.62, 0.12), (0.52, 0.77, 0.08)):
        sh = np.hypot((x - cx - 0.6 * r) / 1.6, (y - cy - r * 0.95) / 0.45) < r
        tone = np.where(sh & (y > 0.66), tone * 0.45, tone)
    for cx, cy, r in ((0.33, 0.56, 0.17), (0.66, 0.62, 0.12), (0.52, 0.77, 0.08)):
        dx, dy = (x - cx) / r, (y - cy) / r
        inside = dx * dx + dy * dy < 1
        nz = np.sqrt(np.clip(1 - dx * dx - dy * dy, 0, 1))
        lam = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0, 1)
        tone = np.where(inside, 0.08 + 0.9 * lam ** 1.2, tone)
    wob = _noise(rng, size, 8, 2)
    grain = _noise(rng, size, 160, 1)
    out = np.ones_like(x)
    freq = 95.0
    for ang, thr in ((0.8, 0.9), (-0.75, 0.66), (0.05, 0.45), (1.5, 0.25)):
        s = (x * math.cos(ang) + y * math.sin(ang)) * freq + 0.6 * wob
        dist = np.abs(s - np.floor(s) - 0.5) * size / freq       # px to the line centre
        line = np.clip(0.9 * size / 512 + 0.5 - dist, 0, 1)
        amount = np.clip((thr - tone) / 0.12, 0, 1) * (0.75 + 0.25 * grain)
        out *= 1 - 0.8 * line * amount
    return _to_u8(_paper(rng, size, (244, 240, 230), 4.0) * out[..., None])


def _checked(draw: Callable[[int], np.ndarray]) -> Callable[[int], np.ndarray]:
    @functools.wraps(draw)
    def render(size: int) -> np.ndarray:
        return draw(check_size(size))

    return render


BUILTINS: dict[str, Callable[[int], np.ndarray]] = {
    name: _checked(draw)
    for name, draw in (
        ("mosaic", _mosaic), ("waves", _waves), ("op-art", _op_art), ("ink", _ink),
        ("ember", _ember), ("pointillism", _pointillism), ("hatching", _hatching),
    )
}
"""Built-in style name -> ``f(size) -> (size, size, 3) uint8 RGB``, deterministic."""
DEFAULT_STYLE = "mosaic"
