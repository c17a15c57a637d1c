"""Still-image I/O at the boundary: any file Pillow reads in, ``(H, W, 3) uint8 RGB`` out.

Everything inside the project is RGB uint8 (or float in [0, 1]); this module is where the
zoo of file modes is normalized, once:

* RGB, L, 1 (bilevel), YCbCr: converted to RGB.
* P (palette): the palette is applied (never returned as indices); with transparency it is
  flattened onto white like RGBA.
* RGBA, LA, PA, RGBa, La: alpha-composited onto a white background.
* CMYK: through its embedded ICC profile to sRGB when it has one, else Pillow's
  multiplicative formula ``R = (255 - C) * (255 - K) / 255``.
* I;16, I;16B, I;16L, I;16N: 16-bit values *scaled* to 8 bit, ``round(v * 255 / 65535)``
  (65535 -> 255, 32768 -> 128), never clipped.
* I (32-bit int): read as 16-bit data as above when all values lie in [0, 65535] (what PNG,
  PGM and most TIFF decoders produce); otherwise stretched linearly from its min..max.
* F (float): [0, 1] data is scaled by 255; data in [0, 255] is taken as is; anything else
  is stretched from its min..max. NaN becomes 0.
* Animated GIF/WebP/APNG: the first frame. EXIF orientation is applied.

Sizes are checked from the header before any pixel is decoded, against ``max_pixels`` (the
caller's limit replaces Pillow's process-wide decompression-bomb limit); a JPEG over it can be
decoded at 1/2, 1/4 or 1/8 of its size instead (``reduce=True``: the decoder's own scaling,
so the full-size picture never exists in memory). Arrays returned are writable. Every failure
is an ``ImageError`` whose message names the file.
"""
from __future__ import annotations

import io
import logging
import os
import secrets
import struct
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from realtime import ImageError, UserError  # noqa: F401
from realtime.frames import check_rgb

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 80_000_000
# Output format by the *requested* output suffix (the user's choice of format).
WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
# What Pillow raises for a bad file besides OSError (a plugin's parse errors, bad EXIF).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)
_PILLOW_LIMIT = threading.Lock()


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")


@contextmanager
def _own_limit():
    """Open with Pillow's process-wide pixel limit lifted: ``read_image`` applies its caller's
    ``max_pixels`` instead (a lock, as the limit is a module global)."""
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               reduce: bool = False) -> np.ndarray:
    """Read any still image (first frame if animated) -> ``(H, W, 3) uint8 RGB``, contiguous
    and writable.

    EXIF orientation is applied, so H and W are the displayed size. Images whose header
    declares more than ``max_pixels`` pixels are refused before decoding, unless ``reduce``
    and the format decodes at a reduced scale (JPEG: 1/2, 1/4, 1/8): then they are decoded
    at the largest of those that fits ``max_pixels`` (the result is that much smaller).
    Raises ``ImageError`` naming the file for a missing file, a directory, an empty,
    non-image, truncated or oversized file.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with _own_limit():
            im = Image.open(path)
        with im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageError(f"{path}: header declares an empty picture, {w}x{h}")
            if reduce and w * h > max_pixels and im.format == "JPEG":
                k = next((k for k in (2, 4, 8) if -(-w // k) * -(-h // k) <= max_pixels), 8)
                im.draft(None, (w // k, h // k))  # the decoder's DCT scaling
            if im.size[0] * im.size[1] > max_pixels:
                scaled = f" (still {im.size[0]}x{im.size[1]} at 1/8 scale)" if im.size != (w, h) else ""
                raise ImageError(
                    f"{path}: header declares {w}x{h} = {w * h:,} pixels{scaled}, more than the limit of "
                    f"{max_pixels:,} (max_pixels, rtstyle convert --max-pixels); refusing to decode it"
                )
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im, path)
    except ImageError:
        raise
    except Image.UnidentifiedImageError as e:
        raise ImageError(f"{path}: not an image file Pillow can identify") from e
    except _DECODE_ERRORS as e:
        raise ImageError(f"{path}: unreadable or truncated image ({type(e).__name__}: {e})") from e


def _flatten_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 straight alpha -> (H, W, 3) uint8 composited over white."""
    rgb = rgba[..., :3].astype(np.float32)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * a + 255.0 * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _scale_to_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map [lo, hi] -> [0, 255], rounded (not clipped data: the range is the data's)."""
    x = (x.astype(np.float64) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _grey_to_u8(im: Image.Image, path: Path) -> np.ndarray:
    """A single-band image of mode I;16*, I or F -> (H, W) uint8."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return _scale_to_u8(a, 0.0, 65535.0)
    if im.mode == "I":
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return _scale_to_u8(a, 0.0, 65535.0)
        log.info("%s: mode I values span [%d, %d]; stretching that range to 0..255", path, lo, hi)
        return _scale_to_u8(a, lo, hi)
    # mode F
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return _scale_to_u8(a, 0.0, 1.0)
    if lo >= 0.0 and hi <= 255.0:
        return _scale_to_u8(a, 0.0, 255.0)
    log.info("%s: float values span [%g, %g]; stretching that range to 0..255", path, lo, hi)
    return _scale_to_u8(a, lo, hi)


def _cmyk_to_rgb(im: Image.Image, path: Path) -> Image.Image:
    icc = im.info.get("icc_profile")
    if not icc:
        return im.convert("RGB")
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError) as e:
        log.warning("%s: embedded CMYK ICC profile unusable (%s); using the plain formula", path, e)
        return im.convert("RGB")


def _to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        out = _flatten_on_white(np.asarray(im.convert("RGBA")))
    elif mode == "CMYK":
        out = np.asarray(_cmyk_to_rgb(im, path))
    elif mode.startswith("I;16") or mode in ("I", "F"):
        out = np.repeat(_grey_to_u8(im, path)[..., None], 3, axis=2)
    elif mode in ("RGB", "L", "1", "YCbCr", "HSV", "RGBX"):
        out = np.asarray(im.convert("RGB"))
    else:
        raise ImageError(f"{path}: unsupported image mode {mode!r}")
    if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
        raise ImageError(f"{path}: mode {mode!r} decoded to {out.dtype} {out.shape}, expected (H, W, 3) uint8")
    return np.require(out, requirements=("C", "W"))  # Pillow's arrays are read-only


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, quality: int = 95) -> None:
    """Write ``(H, W, 3) uint8 RGB`` as JPEG, PNG or WebP, chosen by ``path``'s suffix.

    The suffix is the user's requested output format (case-insensitive: .jpg .jpeg .png
    .webp). ``quality`` (1..100) applies to JPEG and WebP. The file is written under a
    temporary name in the same directory and renamed over ``path``, so a failure never
    leaves a partial file under the final name (nor the temporary one).
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"{path}: unsupported output suffix {path.suffix!r}; supported: {', '.join(WRITE_FORMATS)}"
        )
    check_rgb(rgb, f"{path}: the picture", ImageError)
    if not 1 <= int(quality) <= 100:
        raise ImageError(f"{path}: quality must be in 1..100, got {quality}")
    if not path.parent.is_dir():
        raise ImageError(f"{path}: directory {path.parent} does not exist")
    options = {"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never clobber someone else's file; mode 0o666 lets the umask decide.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise ImageError(f"{path}: cannot create a file in {path.parent} ({e})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(f, format=fmt, **options)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, ValueError)):
            raise ImageError(f"{path}: writing {fmt} failed ({e})") from e
        raise


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as the file's header declares it (before EXIF orientation); nothing
    is decoded."""
    try:
        with _own_limit():
            with Image.open(path) as im:
                return im.size
    except _DECODE_ERRORS as e:
        raise ImageError(f"{path}: not an image file Pillow can identify ({type(e).__name__}: {e})") from e


def is_image_file(path: str | os.PathLike) -> bool:
    """True when Pillow recognizes the file's *content* as an image (the suffix is ignored).

    Only the header and, where the format allows, its checksums are read (``verify``).
    A file too large to decode still counts as an image: ``read_image`` then says why.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.verify()
        return True
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return True
    except _DECODE_ERRORS:
        return False
