"""The style catalogue: built-in styles and a folder of images, their thumbnails, and their
codes, encoded once per encoder and kept in memory (LRU) and on disk.

A ``Style`` is a key ("builtin:NAME", "file:NAME" or "upload:SHA"), a label, its source (what
``--style`` takes; None for an upload) and a fingerprint of the pixels that get encoded, which
names its cache file. Codes live under ``default_code_cache(stylizer)``:
``$RTSTYLE_CACHE`` or ``$XDG_CACHE_HOME/rtstyle`` / ``style-codes/<encoder digest>``, since a
style code depends only on the encoder. A corrupt cache file is recomputed, never trusted.
Used by the browser demo; anything that switches between many styles can use it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from realtime import __version__
from realtime.adain import StyleCode
from realtime.styles import BUILTINS, DEFAULT_STYLE, load_style_image
from realtime.stylizer import Stylizer

log = logging.getLogger(__name__)

THUMB = 128  # gallery thumbnail side, px
STYLE_SIZE = 512  # style images are encoded with this shorter side (as rtstyle convert does)
CODE_CACHE = 1024  # style codes kept in memory (4 KB each at full width)
STYLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def default_code_cache(stylizer: Stylizer) -> Path | None:
    """``<cache>/style-codes/<encoder digest>``; None when the stylizer does not know its weights."""
    from engines.cache import cache_dir

    key = stylizer.network.encoder_digest if stylizer.network is not None else None
    return cache_dir() / "style-codes" / key if key else None


@dataclass(frozen=True)
class Style:
    key: str  # "builtin:NAME", "file:NAME" or "upload:SHA"
    label: str
    source: str | None  # what --style takes (a built-in name or an image path); None: an upload
    fingerprint: str  # identity of the pixels that get encoded: the disk cache's key


def thumbnail(img: Image.Image) -> np.ndarray:
    return np.asarray(ImageOps.fit(img.convert("RGB"), (THUMB, THUMB), Image.Resampling.LANCZOS)).copy()


def file_thumbnail(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.draft("RGB", (2 * THUMB, 2 * THUMB))  # JPEG: decode at a fraction of the size
        return thumbnail(ImageOps.exif_transpose(im))


class StyleCatalog:
    """The gallery (built-ins, then the images of ``styles_dir`` by name) and the style codes.

    ``code(style)`` encodes a style once: an LRU of ``CODE_CACHE`` codes in memory, and when
    ``cache_dir`` is given a file per code there (a corrupt one is recomputed, never trusted).
    """

    def __init__(self, stylizer: Stylizer, *, styles_dir: Path | None = None, cache_dir: Path | None = None):
        self.stylizer, self.cache_dir = stylizer, cache_dir
        self._codes: OrderedDict[str, StyleCode] = OrderedDict()
        self._lock = threading.Lock()
        self._files = tempfile.TemporaryDirectory(prefix="rtstyle-gallery-")  # removed with the library
        self.styles: list[Style] = []
        self.thumbs: dict[str, np.ndarray] = {}
        self._paths: dict[str, str] = {}
        for name, draw in BUILTINS.items():
            self._add(Style(f"builtin:{name}", name, name, f"builtin:{name}:{__version__}:{STYLE_SIZE}"),
                      thumbnail(Image.fromarray(draw(THUMB))))
        if styles_dir is not None:
            self._add_dir(Path(styles_dir))
        self.by_key = {s.key: s for s in self.styles}
        self.default = self.by_key[f"builtin:{DEFAULT_STYLE}"]

    def _add(self, style: Style, thumb: np.ndarray) -> None:
        path = Path(self._files.name) / f"{len(self.styles):05d}.png"
        Image.fromarray(thumb).save(path)
        self.styles.append(style)
        self.thumbs[style.key], self._paths[style.key] = thumb, str(path)

    def _add_dir(self, folder: Path) -> None:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in STYLE_SUFFIXES):
            if "," in str(path.resolve()):  # a comma separates styles in a --style string
                log.warning("styles: skipping %s: commas in style paths are not supported", path)
                continue
            try:
                thumb = file_thumbnail(path)
            except (OSError, ValueError) as e:
                log.warning("styles: skipping %s: not a readable image (%s)", path, e)
                continue
            st = path.stat()
            label = path.stem.split("__", 1)[-1].replace("_", " ")
            self._add(Style(f"file:{path.name}", label, str(path.resolve()),
                            f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{STYLE_SIZE}"), thumb)

    def gallery_item(self, style: Style) -> tuple[str, str]:
        return self._paths[style.key], style.label

    @staticmethod
    def upload(rgb: np.ndarray, label: str) -> Style:
        digest = hashlib.sha256(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()
        return Style(f"upload:{digest[:16]}", label, None, f"upload:{digest}")

    def code(self, style: Style, image: np.ndarray | None = None) -> StyleCode:
        """The style's code; ``image`` (H, W, 3 uint8 RGB) for an upload, else read from its source."""
        with self._lock:
            if style.key in self._codes:
                self._codes.move_to_end(style.key)
                return self._codes[style.key]
        code = self._load(style)
        if code is None:
            rgb = image if image is not None else load_style_image(style.source, STYLE_SIZE)
            rgb = np.require(rgb, np.uint8, ["C", "W"])  # a file read as is comes back read-only
            code = self.stylizer.encode_style(rgb)
            self._save(style, code)
        with self._lock:
            self._codes[style.key] = code
            while len(self._codes) > CODE_CACHE:
                self._codes.popitem(last=False)
        return code

    def _file(self, style: Style) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(style.fingerprint.encode()).hexdigest()[:32] + ".npz")

    def _load(self, style: Style) -> StyleCode | None:
        path = self._file(style)
        if path is None or not path.is_file():
            return None
        kind = self.stylizer.code_type  # a frozen dataclass of tensors (StyleCode, MicroCode)
        try:
            with np.load(path) as f:
                code = kind(**{k.name: torch.from_numpy(f[k.name]) for k in dataclasses.fields(kind)})
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("style cache: %s is unreadable (%s); recomputing it", path, e)
            return None
        return code.to(self.stylizer.device)

    def _save(self, style: Style, code: StyleCode) -> None:
        path = self._file(style)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **{k.name: getattr(code, k.name).cpu().numpy() for k in dataclasses.fields(code)})
        os.replace(tmp, path)


# ----------------------------------------------------------------------------- per visitor
