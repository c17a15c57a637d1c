"""Temporal smoothing of stylized video: pure functions at the core, ``TemporalSmoother`` at the edge.

Two mechanisms, each switchable (``SMOOTH_MODES``):

* ``stats``: an exponential moving average of the content feature statistics that AdaIN
  normalizes with (passed as ``StyleSettings.stats_filter``), meant to damp global flicker.
* ``flow``: optical flow from each new *input* frame to the previous one on small grayscale
  copies (OpenCV DIS, one flow a frame), backward-warp the previous output onto the new
  frame (bicubic) and blend it in as far as the warped previous input matches the new input
  (weight falling linearly to 0 at a grey-level difference of ``change``); where something
  moved fast, appeared or the flow failed, the inputs do not match and the new stylized
  frame is taken, so nothing ghosts. Still pixels (no motion, or a flat area) whose input has
  not drifted from the input their output shows, and whose new stylized frame still looks
  like that output, are *held*: the previous output is kept as it is instead of averaged, so a
  still scene does not flicker and its texture is not washed out by averaging many frames.

Both restart on a scene cut (detected here) and on ``reset()`` (call it on a style switch).

``DEFAULT_SMOOTH = "flow"`` at ``DEFAULT_STRENGTH`` 0.75: chosen by benchmarks/TEMPORAL.md (14
real clips x 32 frames at 384 px): with the default model it removes 65 % of the warping error
that stylization adds over the input's own, at a style-loss cost of +9.2 % (74 % / +7.6 %
against the published MicroAST per frame), and a still, noisy scene changes by 0.16 grey
levels a frame (its input by 2.26); without the hold (strength 0.7) it was 62 % for +9.3 %,
and the still scene changed by 6.4. ``stats`` changed nothing measurable for either model
family when last measured.

Data contract: frames are ``(H, W, 3) uint8 RGB`` numpy arrays on the CPU, one at a time in
frame order; small grayscale copies are ``(h, w) uint8``; flows are ``(h, w, 2) float32``
(x, y) displacements in pixels of the grid they live on.
"""
from __future__ import annotations

import functools

import logging
from typing import Callable

import cv2
import numpy as np
import torch
from realtime.frames import check_rgb

log = logging.getLogger(__name__)

SMOOTH_MODES = ("none", "stats", "flow", "all")
DEFAULT_SMOOTH = "flow"  # why: the module docstring
DEFAULT_STRENGTH = 0.75  # why: benchmarks/TEMPORAL.md, "Still scenes" and "Choosing the defaults"
STATS_MAX_MOMENTUM = 0.9  # EMA weight of the past at strength 1
FLOW_MAX_BLEND = 0.9  # weight of the warped previous output at strength 1
# DIS FAST (patch search down to 1/4 resolution + variational refinement): about 1 ms a call
# on 256x144 gray on this CPU; a (2.3, -1.6) px shift of a texture comes back within 0.03 px on
# average. MEDIUM (down to 1/2) costs ~4x; the benchmark grades with MEDIUM at full size.
DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_FAST
# Holding still pixels (``TemporalSmoother._held``). A pixel may be held where it did not move:
# its flow is under SNAP_FLOW pixels of the flow's grid (DIS's answer on a still, noisy frame:
# a few hundredths to a few tenths of a pixel there), or it lies in a flat area (local std of
# the lightly blurred gray under FLAT_STD grey levels over DRIFT_BOX pixels), where the flow is
# noise and moving or not shows little. Only while the output is at most HOLD_MAX_SCALE times
# the flow's grid (640 px at the default ``flow_side`` of 256): on a coarser grid a slow pan
# of fine texture is under SNAP_FLOW and invisible to the checks below, and it would stick
# (tested at 1280x720); a larger ``flow_side`` holds larger frames. It is held (previous
# output copied, flow taken as zero: not resampled, which would blur it) as long as
#   * the input has not drifted from the input the held output shows: their difference,
#     averaged over DRIFT_BOX pixels (sensor noise cancels, a real change does not), stays under
#     ``still`` grey levels (released fully at twice that);
#   * no small spot (3x3 average, or its neighbour) changed by SPOT grey levels (a small thing,
#     or a texture sliding slowly, which the wider average would cancel; released fully at
#     twice that);
#   * the stylized frame still *looks* like the held output: their colour difference averaged
#     over DRIFT_BOX pixels stays under LOOK grey levels (released fully at twice that); the
#     network's own frame-to-frame flicker at that scale reaches ~24 (99th percentile on a
#     still, noisy scene), a new colour setting or a strong change of strength goes past it.
# Why these values: benchmarks/TEMPORAL.md, "Still scenes".
DEFAULT_STILL = 2.0
SNAP_FLOW = 0.25
HOLD_MAX_SCALE = 2.5
FLAT_STD = 1.0
DRIFT_BOX = 7
SPOT = 8.0
LOOK = 25.0
HOLD_FULL_AT = 0.5  # strength from which still pixels are held fully (below: in proportion)

StatsPair = tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- pure functions


def gray_small(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (h, w) uint8 gray, shrunk (area) so max(h, w) <= ``max_side``."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    if max(h, w) <= max_side:
        return gray
    s = max_side / max(h, w)
    return cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _resized(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 (h, w, 3) for ``shape = (h, w)`` (area; a copy either way)."""
    if rgb.shape[:2] == tuple(shape):
        return rgb.astype(np.float32)
    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32)


def dis_flow(gray0: np.ndarray, gray1: np.ndarray, preset: int = DIS_PRESET) -> np.ndarray:
    """Dense flow ``f`` with ``gray0(x) ~ gray1(x + f(x))``: (h, w) uint8 pair -> (h, w, 2) float32."""
    return cv2.DISOpticalFlow_create(preset).calc(gray0, gray1, None)


def upscale_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 2) flow -> (H, W, 2) flow for ``size = (H, W)``, vectors rescaled to the new grid."""
    h, w = flow.shape[:2]
    if (h, w) == tuple(size):
        return flow
    big = cv2.resize(flow, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    big[..., 0] *= size[1] / w
    big[..., 1] *= size[0] / h
    return big


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of an (h, w) frame; built once per size, read-only."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


@functools.lru_cache(maxsize=8)
def _pixel_points(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 (x, y) pixel coordinates; built once per size, read-only."""
    points = np.stack(_pixel_grid(h, w), -1)
    points.flags.writeable = False
    return points


def _sample_points(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _pixel_grid(*flow.shape[:2])
    return gx + flow[..., 0], gy + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Backward warp: ``out(x) = image(x + flow(x))``, bilinear (or ``interpolation``), edges replicated.

    ``image``: (H, W) or (H, W, C), uint8 or float32; ``flow``: (H, W, 2) float32. Same dtype out.
    The sample points go to OpenCV as one (H, W, 2) map: the same result as an x map and a y
    map, one pass instead of two strided ones.
    """
    points = flow + _pixel_points(*flow.shape[:2])
    return cv2.remap(image, points, None, interpolation, borderMode=cv2.BORDER_REPLICATE)


def consistency_mask(fwd: np.ndarray, bwd: np.ndarray, a1: float = 0.01, a2: float = 0.5) -> np.ndarray:
    """Forward-backward check (Sundaram et al. 2010; Ruder et al. 2016) -> (h, w) bool, True = reliable.

    ``fwd``: flow from the new frame to the previous one (on the new frame's grid, the one used to
    warp); ``bwd``: flow from the previous frame to the new one. A pixel is reliable when
    ``|fwd + bwd(x + fwd)|^2 <= a1 (|fwd|^2 + |bwd(x + fwd)|^2) + a2`` and ``x + fwd`` is inside.
    """
    h, w = fwd.shape[:2]
    back = warp(bwd, fwd)
    err = np.sum((fwd + back) ** 2, axis=-1)
    tol = a1 * (np.sum(fwd**2, axis=-1) + np.sum(back**2, axis=-1)) + a2
    mx, my = _sample_points(fwd)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return (err <= tol) & inside


def blend(styled: np.ndarray, warped: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(1 - weight) * styled + weight * warped``, rounded (ties may go either way).

    ``styled``, ``warped``: (H, W, 3) uint8; ``weight``: (H, W) float32 in [0, 1]. Exact where
    the weight is 0 or 1. (cv2.blendLinear: ~4 ms at 1080p, 7x faster than numpy float.)
    """
    return cv2.blendLinear(warped, styled, weight, 1.0 - weight)


def is_scene_cut(prev_gray: np.ndarray, gray: np.ndarray, mad: float = 0.1, hist: float = 0.2) -> bool:
    """A cut between two (h, w) uint8 gray frames: mean absolute difference > ``mad`` (in [0, 1])
    AND Bhattacharyya distance of 32-bin histograms > ``hist``. On the shared clips, motion
    peaks at 0.05 / 0.19 and the cuts (cutbunny, bikes) start at 0.19 / 0.25."""
    if np.abs(gray.astype(np.int16) - prev_gray).mean() / 255.0 <= mad:
        return False
    h0, h1 = (cv2.calcHist([g], [0], None, [32], [0, 256]) for g in (prev_gray, gray))
    return cv2.compareHist(h0, h1, cv2.HISTCMP_BHATTACHARYYA) > hist


class StatsEMA:
    """EMA along frames of AdaIN content statistics; a callable for ``Stylizer.stats_filter``.

    ``__call__(mean, std)``: each (N, C) float32 torch tensors, rows in frame order -> the
    smoothed (mean, std), same shape/device. ``ema = x + momentum * (ema - x)``, so constant
    statistics stay exactly constant. A row whose mean or std differs from the running value
    by more than ``restart`` (relative L2) restarts the average there (a cut, seen in feature
    space before the pixels reach ``TemporalSmoother``). ``reset()`` forgets the past.
    """

    def __init__(self, momentum: float = 0.7, restart: float = 0.4):
        self.momentum, self.restart = momentum, restart
        self.state: StatsPair | None = None

    def reset(self) -> None:
        self.state = None

    @staticmethod
    def _jump(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x - ref) / (torch.linalg.vector_norm(ref) + 1e-6)

    def __call__(self, mean: torch.Tensor, std: torch.Tensor) -> StatsPair:
        if mean.shape != std.shape or mean.ndim != 2:
            raise ValueError(f"mean/std must both be (N, C), got {tuple(mean.shape)} and {tuple(std.shape)}")
        outs_m, outs_s = [], []
        for m, s in zip(mean, std):
            st = self.state
            if st is None or st[0].shape != m.shape or st[0].device != m.device:
                st = (m.clone(), s.clone())
            else:  # decided on the device: no host sync per frame
                cut = torch.maximum(self._jump(m, st[0]), self._jump(s, st[1])) > self.restart
                st = (torch.where(cut, m, m + self.momentum * (st[0] - m)),
                      torch.where(cut, s, s + self.momentum * (st[1] - s)))
            self.state = st
            outs_m.append(st[0])
            outs_s.append(st[1])
        return torch.stack(outs_m), torch.stack(outs_s)


# ----------------------------------------------------------------------------- stateful wrapper


class TemporalSmoother:
    """Smooths a stylized stream frame by frame; one instance per stream.

    ``mode``: one of ``SMOOTH_MODES``. ``strength`` in [0, 1], settable live: 0 is no smoothing
    (output == mode "none"), 1 the most (EMA momentum ``STATS_MAX_MOMENTUM``, warped-previous
    weight ``FLOW_MAX_BLEND``). ``flow_side``: longer side of the grayscale copies the flow runs
    on. ``change``: the |warped previous input - input| (gray, [0, 1]) at which the blend
    weight reaches 0 (it falls linearly from full weight at no difference). ``still``: the
    drift in grey levels (0-255) up to which still pixels are held (module docstring; 0: never
    hold; fixed for the smoother's life). Still pixels are held fully from strength
    ``HOLD_FULL_AT`` (0.5) up, in proportion below it.

    Use: pass ``StyleSettings(code, stats_filter=smoother.stats_filter)`` (None when the mode has no stats
    part), then for each frame ``out = smoother(content, styled)``. A batch stylized at once is
    passed frame by frame in order. A scene cut or a change of frame size resets both parts.
    """

    def __init__(self, mode: str = DEFAULT_SMOOTH, strength: float = DEFAULT_STRENGTH,
                 flow_side: int = 256, change: float = 0.1, still: float = DEFAULT_STILL):
        if mode not in SMOOTH_MODES:
            raise ValueError(f"smoothing mode must be one of {SMOOTH_MODES}, got {mode!r}")
        if int(flow_side) < 16:
            raise ValueError(f"flow_side must be >= 16 pixels, got {flow_side}")
        if not 0 < float(change) <= 1:
            raise ValueError(f"change must be in (0, 1], got {change}")
        if not 0 <= float(still) <= 255:
            raise ValueError(f"still must be in [0, 255] grey levels, got {still}")
        self.mode, self.flow_side, self.change, self._still = mode, int(flow_side), float(change), float(still)
        self._ema = StatsEMA() if mode in ("stats", "all") else None
        self._flow = mode in ("flow", "all")
        self.strength = strength
        self.cuts = 0  # scene cuts detected so far
        self.reset()

    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {value}")
        self._strength = value
        if self._ema is not None:
            self._ema.momentum = value * STATS_MAX_MOMENTUM

    @property
    def still(self) -> float:
        return self._still

    @property
    def stats_filter(self) -> Callable[[torch.Tensor, torch.Tensor], StatsPair] | None:
        """The ``Stylizer.stats_filter`` for this mode: (mean, std) (N, C) -> smoothed, or None."""
        return self._ema

    def reset(self) -> None:
        """Forget the past (call on a style switch); the next frame passes through unchanged."""
        self._prev_gray: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        # What the output shows, on the flow's grid (float32): its input's gray (h, w) and the
        # output itself (h, w, 3); followed only when still pixels are held.
        self._shown: np.ndarray | None = None
        self._shown_rgb: np.ndarray | None = None
        if self._ema is not None:
            self._ema.reset()

    def __call__(self, content: np.ndarray, styled: np.ndarray) -> np.ndarray:
        """content, styled: (H, W, 3) uint8 RGB, same shape -> the output frame, (H, W, 3) uint8."""
        check_rgb(content, "content")
        check_rgb(styled, "styled")
        if content.shape != styled.shape:
            raise ValueError(f"content {content.shape} and styled {styled.shape} frames differ in shape")
        if self.mode == "none":
            return styled
        gray = gray_small(content, self.flow_side)
        prev_gray, prev_out = self._prev_gray, self._prev_out
        if prev_gray is not None:
            resized = prev_out.shape != styled.shape
            if resized or is_scene_cut(prev_gray, gray):
                self.cuts += not resized
                log.debug("temporal smoothing: reset (%s)", "new frame size" if resized else "scene cut")
                self.reset()
                prev_gray = None
        out = styled
        if self._flow and prev_gray is not None and self._strength > 0:
            out = blend(styled, *self._warped_previous(gray, prev_gray, prev_out, styled))
        elif self._holds(styled.shape[:2], gray.shape):
            self._shown, self._shown_rgb = gray.astype(np.float32), _resized(styled, gray.shape)
        # Our own copy: the caller may draw on the frame it gets back.
        self._prev_gray, self._prev_out = gray, out.copy() if self._flow else out
        return out

    def _warped_previous(self, gray: np.ndarray, prev_gray: np.ndarray, prev_out: np.ndarray,
                         styled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (the previous output warped onto the new frame, its blend weight (H, W) float32).

        One flow per frame, new -> previous, on the small gray copies. A pixel counts as far
        as it lands inside the previous frame and the warped previous gray matches the new
        gray: fully at equal grey, falling linearly to 0 at a difference of ``change``. That
        check catches occlusions, fast motion and most flow failures (where the flow is wrong
        the warped picture does not match; not in flat areas or across a change of colour at
        equal brightness, where a wrong blend shows little), so the new stylized frame is
        taken there. The weights are shrunk by one (small) pixel (a 3x3 minimum) so the blend
        stays off the edges of what moved. A forward-backward check (the previous version)
        costs a second flow a frame; ghosting, what it guarded against, is measured in
        benchmarks/TEMPORAL.md. Where holding a still pixel (``_held``) weighs more than
        this blend, the pixel is held instead: weight 1 (at full strength), flow zero."""
        fwd = dis_flow(gray, prev_gray)
        mx, my = _sample_points(fwd)
        h, w = gray.shape
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        warped = cv2.remap(prev_gray, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        match = 1.0 - cv2.absdiff(warped, gray).astype(np.float32) / (self.change * 255.0)
        match = np.clip(match, 0.0, 1.0) * inside
        reliable = cv2.erode(match, np.ones((3, 3), np.uint8))
        weight = reliable * (self._strength * FLOW_MAX_BLEND)
        size = prev_out.shape[:2]
        if self._holds(size, gray.shape):
            small = _resized(styled, gray.shape)
            held = self._held(gray, fwd, small) * min(1.0, self._strength / HOLD_FULL_AT)
            wins = held > weight
            fwd = np.where(wins[..., None], np.float32(0.0), fwd)
            weight = np.where(wins, held, weight)
            self._follow(gray, small, fwd, weight)
        weight = cv2.resize(weight, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        # Bicubic: the previous output is warped again every frame, and bilinear's blur piles up
        # in the blend (four clips at strength 0.65: style loss +11.4 % bilinear, +8.4 % bicubic;
        # benchmarks/TEMPORAL.md, "Choosing the defaults"). At zero flow it copies exactly.
        return warp(prev_out, upscale_flow(fwd, size), cv2.INTER_CUBIC), weight

    def _holds(self, size: tuple[int, ...], grid: tuple[int, ...]) -> bool:
        """Whether still pixels are held for frames of ``size`` (H, W) on a flow grid of ``grid``
        (h, w): ``still`` > 0 and the frame at most HOLD_MAX_SCALE times the grid."""
        return self._still > 0 and max(size) <= HOLD_MAX_SCALE * max(grid)

    def _held(self, gray: np.ndarray, fwd: np.ndarray, small: np.ndarray) -> np.ndarray:
        """How far each pixel of the flow's grid may be held, (h, w) float32 in [0, 1] (the rules
        above ``DEFAULT_STILL``). ``small``: the stylized frame on that grid, float32 (h, w, 3).
        Judged at zero flow: held pixels do not move."""
        box = (DRIFT_BOX, DRIFT_BOX)
        unmoved = fwd[..., 0] ** 2 + fwd[..., 1] ** 2 < SNAP_FLOW**2
        g = cv2.blur(gray, (3, 3)).astype(np.float32)
        mean = cv2.blur(g, box)
        flat = cv2.blur(g * g, box) - mean * mean < FLAT_STD**2
        diff = gray.astype(np.float32) - self._shown
        drift = np.abs(cv2.blur(diff, box)) / self._still
        spot = cv2.dilate(np.abs(cv2.blur(diff, (3, 3))), np.ones((3, 3), np.uint8)) / SPOT
        looks = np.abs(cv2.blur(small - self._shown_rgb, box))
        # the largest of the three colours, as np.maximum: .max(axis=-1) took 1.3 ms here, this 0.05
        look = np.maximum(np.maximum(looks[..., 0], looks[..., 1]), looks[..., 2]) / LOOK
        return np.clip(2.0 - np.maximum(np.maximum(drift, spot), look), 0.0, 1.0) * (unmoved | flat)

    def _follow(self, gray: np.ndarray, small: np.ndarray, fwd: np.ndarray, weight: np.ndarray) -> None:
        """What the output now shows, on the flow's grid: ``weight * warped previous + (1 -
        weight) * new``, for its input's gray and for the output itself."""
        mx, my = _sample_points(fwd)
        shown = cv2.remap(self._shown, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rgb = cv2.remap(self._shown_rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self._shown = shown + (1.0 - weight) * (gray - shown)
        self._shown_rgb = rgb + (1.0 - weight)[..., None] * (small - rgb)
