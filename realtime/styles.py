"""Styles as data: the ``--style`` argument, style images and their ``StyleCode``.

The built-in artworks are drawn in ``realtime.artworks``; any image file is a style too.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import logging
import math
import re
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from realtime.adain import StyleCode, style_code
from realtime.images import ImageError, read_image

from realtime.artworks import BUILTINS, DEFAULT_STYLE, check_size  # noqa: F401  (re-exported)
from realtime.frames import check_rgb

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- --style argument


class StyleEntry(NamedTuple):
    """One ``--style`` entry: a built-in name or an image path, and its mixing weight (> 0)."""

    source: str
    weight: float


StyleSpec = list[StyleEntry]
_WEIGHT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_style_arg(arg: str) -> StyleSpec:
    """``"mosaic,waves:0.3,path/to/img.jpg:2"`` -> ``[("mosaic", 1.0), ("waves", 0.3), ...]``.

    Entries are separated by commas. Only a trailing ``:<number>`` is a weight (default 1),
    so ``C:\\art\\x.jpg`` and ``name:with:colons`` stay whole; write ``file:2:1`` to use a
    file literally named ``file:2``. Weights must be finite and > 0. Raises ``ValueError``
    quoting the offending entry.
    """
    if not isinstance(arg, str) or not arg.strip():
        raise ValueError(f"--style needs at least one style name or image path, got {arg!r}")
    spec: StyleSpec = []
    for i, raw in enumerate(arg.split(",")):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"empty style entry at position {i + 1} in {arg!r}")
        source, weight = entry, 1.0
        head, sep, tail = entry.rpartition(":")
        if sep and _WEIGHT.fullmatch(tail.strip()):
            if not head.strip():
                raise ValueError(f"style entry {entry!r} has a weight but no style name or path")
            source, weight = head.strip(), float(tail)
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"style weight must be a finite number > 0, got {entry!r}")
        spec.append(StyleEntry(source, weight))
    return spec


# ----------------------------------------------------------------------------- images and codes


def load_style_image(name_or_path: str | Path, size: int = 512, *, max_side: int = 1024) -> np.ndarray:
    """A built-in name or an image file -> ``(H, W, 3) uint8 RGB``.

    A built-in renders at ``(size, size)``. A file is read with ``images.read_image`` and
    resized (keeping its aspect) so its shorter side is ``size``, unless that would make
    the longer side exceed ``max_side``, which then bounds it (area interpolation when
    shrinking, bicubic when enlarging). A built-in name wins over a file of the same name.
    Raises ``ImageError`` (listing the built-ins) for an unknown name that is not a file.
    """
    size = check_size(size)
    key = str(name_or_path)
    if key in BUILTINS:
        return BUILTINS[key](size)
    path = Path(name_or_path)
    if not path.exists():
        raise ImageError(
            f"{key}: not a built-in style and no such file; built-in styles: {', '.join(BUILTINS)}"
        )
    img = read_image(path)
    h, w = img.shape[:2]
    scale = min(size / min(h, w), max_side / max(h, w))
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return img
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(img, (nw, nh), interpolation=interp))


def _module_device(encoder) -> torch.device | None:
    if isinstance(encoder, torch.nn.Module):
        for p in encoder.parameters():
            return p.device
    return None


def encode_style(encoder, image_rgb_u8: np.ndarray, *, device: str | torch.device | None = None) -> StyleCode:
    """One style image -> its ``StyleCode`` (relu4_1 mean/std, (C,) float32, on the CPU).

    ``image_rgb_u8``: ``(H, W, 3) uint8 RGB``, at least 16x16; it is centre-cropped to
    multiples of 8 as the ``Encoder`` requires. ``encoder``: an ``Encoder`` (or any callable
    with its contract: ``(N, H, W, 3) uint8 RGB`` -> ``(N, C, H/8, W/8)``). ``device``: where
    to run; default the encoder's own device (the encoder is never moved).
    """
    img = image_rgb_u8
    check_rgb(img, "style image")
    h, w = img.shape[:2]
    ch, cw = h - h % 8, w - w % 8
    if ch < 16 or cw < 16:
        raise ValueError(f"style image must be at least 16x16 pixels, got {w}x{h}")
    top, left = (h - ch) // 2, (w - cw) // 2
    img = np.array(img[top : top + ch, left : left + cw])  # a writable copy: torch wants one
    own = _module_device(encoder)
    dev = torch.device(device) if device is not None else own or torch.device("cpu")
    if own is not None and (own.type != dev.type or dev.index not in (None, own.index)):
        raise ValueError(f"encoder is on {own} but device={str(device)!r} was asked for; move the encoder first")
    dev = own or dev
    with torch.inference_mode():
        feats = encoder(torch.from_numpy(img).unsqueeze(0).to(dev))
        code = style_code(feats)
    return StyleCode(code.mean.float().cpu(), code.std.float().cpu())


def encode_spec(encode, spec: StyleSpec, *, size: int = 512, reference: np.ndarray | None = None,
                cache: CodeCache | None = None):
    """Every entry of a parsed ``--style`` -> one mixed code (weights normalized). ``encode``:
    a style encoder, (H, W, 3) uint8 RGB -> code (``Stylizer``'s: ``AdaINStyleEncoder`` or a
    model family's own); codes are mixed by their type's ``mix``. ``reference``: (H, W, 3)
    uint8 RGB content the style images are recoloured to first (colour transfer before
    encoding, ``realtime.color.match_color``). ``cache``: each entry's code is read from it
    when there, else computed and kept there (not with a ``reference``: a recoloured picture
    is another picture)."""
    from realtime.color import match_color

    codes = []
    for e in spec:
        key = source_fingerprint(e.source, size) if cache is not None and reference is None else None
        code = cache.load(key) if key else None
        if code is None:
            img = load_style_image(e.source, size)
            if reference is not None:
                img = match_color(img, reference)
            code = encode(img)
            if key:
                cache.save(key, code)
        codes.append(code)
    return type(codes[0]).mix(codes, [e.weight for e in spec])


# ----------------------------------------------------------------------------- codes on disk
# The code that turns a picture into a code, or draws a built-in: a change to any of these
# modules makes every cached code stale (the weights are the cache folder's name).
CODE_MODULES = ("realtime.styles", "realtime.artworks", "realtime.images", "realtime.adain", "realtime.model",
                "realtime.microast", "realtime.fastconv", "realtime.stylizer")


@functools.cache
def code_digest() -> str:
    """sha256 (first 16 hex) of the source of ``CODE_MODULES`` (``engines.cache.source_bytes``)."""
    from engines.cache import source_bytes

    h = hashlib.sha256()
    for name in CODE_MODULES:
        h.update(source_bytes(importlib.import_module(name)))
    return h.hexdigest()[:16]


def source_fingerprint(source: str, size: int) -> str | None:
    """What ``load_style_image(source, size)`` returns, named without making it: a built-in's
    name, a file's resolved path, byte size and modification time; None for neither."""
    if source in BUILTINS:
        return f"builtin:{source}:{size}"
    try:
        path = Path(source).resolve()
        st = path.stat()
    except (OSError, RuntimeError):  # missing, unreadable, a symlink loop: load_style_image says why
        return None
    return f"file:{path}:{st.st_size}:{st.st_mtime_ns}:{size}" if path.is_file() else None


def code_folder(encoder_digest: str | None) -> Path | None:
    """``<cache>/style-codes/<encoder digest>`` (``engines.cache.cache_dir``): a code depends
    on the encoder's weights only, so models that share an encoder share codes. None without a
    digest (weights of unknown identity)."""
    from engines.cache import cache_dir

    return cache_dir() / "style-codes" / encoder_digest if encoder_digest else None


class CodeCache:
    """Style codes on disk, one ``.npz`` a code in ``folder``, named by a fingerprint of the
    picture (``source_fingerprint``, or an upload's pixel hash) and ``code_digest()``.
    ``kind``: the code's type, a frozen dataclass of tensors (``StyleCode``, ``MicroCode``).
    A file that cannot be read is logged and computed again, never trusted; one that cannot
    be written is logged and skipped: the cache never fails the work it speeds up."""

    def __init__(self, folder: Path, kind: type):
        self.folder, self.kind = Path(folder), kind

    def path(self, fingerprint: str) -> Path:
        name = hashlib.sha256(f"{fingerprint}\0{code_digest()}".encode()).hexdigest()[:32]
        return self.folder / f"{name}.npz"

    def load(self, fingerprint: str):
        """The cached code (CPU tensors), or None."""
        path = self.path(fingerprint)
        if not path.is_file():
            return None
        try:
            with np.load(path) as f:
                return self.kind(**{k.name: torch.from_numpy(f[k.name]) for k in dataclasses.fields(self.kind)})
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("style cache: %s is unreadable (%s); computing the code again", path, e)
            return None

    def save(self, fingerprint: str, code) -> None:
        from engines.cache import atomic_write

        path = self.path(fingerprint)
        arrays = {k.name: getattr(code, k.name).cpu().numpy() for k in dataclasses.fields(code)}
        try:
            atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
        except OSError as e:
            log.warning("style cache: cannot write %s (%s); the code is used, not kept", path, e)


def describe_style(image: np.ndarray, colors: int = 5) -> dict:
    """Summary of an ``(H, W, 3) uint8 RGB`` style image for ``rtstyle styles --inspect``.

    Returns ``{"width", "height", "mean_rgb": [r, g, b], "palette": [{"rgb", "hex",
    "share"}, ...]}``; the palette holds up to ``colors`` dominant colours (median-cut
    quantization of a 128-px downsample, deterministic), most common first, shares sum to 1.
    """
    check_rgb(image, "image")
    from PIL import Image

    h, w = image.shape[:2]
    s = min(1.0, 128 / max(h, w))
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    q = Image.fromarray(small).quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    pal = q.getpalette()
    counts = sorted(q.getcolors(), reverse=True)
    total = sum(c for c, _ in counts)
    palette = []
    for count, i in counts:
        rgb = [int(v) for v in pal[3 * i : 3 * i + 3]]
        palette.append({"rgb": rgb, "hex": "#{:02x}{:02x}{:02x}".format(*rgb), "share": round(count / total, 4)})
    mean = image.reshape(-1, 3).mean(axis=0)
    return {"width": w, "height": h, "mean_rgb": [round(float(v), 2) for v in mean], "palette": palette}
