"""The style catalogue: built-in styles and a folder of images, their thumbnails, and their
codes, encoded once per encoder and kept in memory (LRU) and on disk.

A ``Style`` is a key ("builtin:NAME", "file:NAME" or "upload:SHA"), a label, its source (what
``--style`` takes; None for an upload) and a fingerprint of the pixels that get encoded
(``realtime.styles.source_fingerprint``; an upload's pixel hash), which names its cache file
(``realtime.styles.CodeCache``, which also keeps the 512 px codes of ``Stylizer.encode_spec``).
Codes live under ``default_code_cache(stylizer)``: ``$RTSTYLE_CACHE`` or
``$XDG_CACHE_HOME/rtstyle`` / ``style-codes/<encoder digest>``, since a style code depends only
on the encoder (not the decoder: two models that share an encoder share codes). Thumbnails do
not depend on any weights: ``style-thumbs/`` beside them. A corrupt cache file is recomputed,
never trusted.

**The index** (``StyleCatalog.index``, ``rtstyle styles --index DIR``, and ``rtstyle serve`` in
the background at start-up): every style's code and thumbnail computed ahead, so a gallery of
hundreds of styles and its map are ready when the doors open. Styles are encoded at
``STYLE_SIZE`` = 256 px on the shorter side (one encoder pass; AdaIN's own training crops were
256 px), a quarter of the pixels of the 512 px that ``rtstyle convert -s`` encodes (its time:
BENCHMARKS.md, "Style index"). The index runs the encoder on one thread: these small
convolutions gain nothing from a second thread on a busy machine and lose up to 10x when the
other core is taken.

Used by the browser demo; anything that switches between many styles can use it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from engines.cache import atomic_write
from realtime.adain import StyleCode
from realtime.styles import BUILTINS, DEFAULT_STYLE, CodeCache, code_folder, load_style_image, source_fingerprint
from realtime.stylizer import Stylizer

log = logging.getLogger(__name__)

THUMB = 128  # gallery thumbnail side, px
STYLE_SIZE = 256  # style images are encoded with this shorter side (see the module docstring)
CODE_CACHE = 1024  # style codes kept in memory (4 KB each at full width)
STYLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def default_code_cache(stylizer: Stylizer) -> Path | None:
    """``<cache>/style-codes/<encoder digest>``; None when the stylizer does not know its weights."""
    return code_folder(stylizer.network.encoder_digest if stylizer.network is not None else None)


def default_thumb_cache() -> Path:
    """``<cache>/style-thumbs``: gallery thumbnails of style files (no weights involved)."""
    from engines.cache import cache_dir

    return cache_dir() / "style-thumbs"


def style_labels(paths: list[Path], taken: tuple[str, ...] = ()) -> list[str]:
    """Readable, distinct gallery labels for style files named ``<source-tag>__<stem>.jpg``:
    the stem with spaces; where the stem is only digits or a generic word with a number
    ("0", "style-0", "sty-00"), or two files or a label in ``taken`` share it, the source tag
    leads ("msg 0")."""
    import re

    def plain(p: Path) -> tuple[str, str]:
        tag, sep, stem = p.stem.partition("__")
        return (tag if sep else ""), (stem if sep else tag).replace("_", " ").strip()

    parts = [plain(p) for p in paths]
    counts = Counter(stem.lower() for _, stem in parts) + Counter(t.lower() for t in taken)
    generic = re.compile(r"^(?:(?:style|sty|img|image|s|content|art)[ -]?)?\d*$", re.IGNORECASE)
    labels = [f"{tag} {stem}".strip() if tag and (counts[stem.lower()] > 1 or generic.match(stem)) else stem or tag
              for tag, stem in parts]
    seen: Counter = Counter(t.lower() for t in taken)
    out = []
    for label in labels:  # still equal (same tag and stem in another case): number them
        seen[label.lower()] += 1
        out.append(label if seen[label.lower()] == 1 else f"{label} ({seen[label.lower()]})")
    return out


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

    def __init__(self, stylizer: Stylizer, *, styles_dir: Path | None = None, cache_dir: Path | None = None,
                 thumb_dir: Path | None = None):
        self.stylizer, self.cache_dir, self.thumb_dir = stylizer, cache_dir, thumb_dir
        self._disk = CodeCache(cache_dir, stylizer.code_type) if cache_dir is not None else None
        self._codes: OrderedDict[str, StyleCode] = OrderedDict()
        self._lock = threading.Lock()
        self._files = tempfile.TemporaryDirectory(prefix="rtstyle-gallery-")  # removed with the library
        self.styles: list[Style] = []
        self.thumbs: dict[str, np.ndarray] = {}
        self._paths: dict[str, str] = {}
        for name, draw in BUILTINS.items():
            self._add(Style(f"builtin:{name}", name, name, source_fingerprint(name, STYLE_SIZE)),
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
        paths = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in STYLE_SUFFIXES):
            if "," in str(path.resolve()):  # a comma separates styles in a --style string
                log.warning("styles: skipping %s: commas in style paths are not supported", path)
                continue
            paths.append(path)
        for path, label in zip(paths, style_labels(paths, tuple(s.label for s in self.styles))):
            fingerprint = source_fingerprint(str(path), STYLE_SIZE)
            if fingerprint is None:
                log.warning("styles: skipping %s: not a readable file", path)
                continue
            style = Style(f"file:{path.name}", label, str(path.resolve()), fingerprint)
            try:
                thumb = self._thumbnail(style, path)
            except (OSError, ValueError) as e:
                log.warning("styles: skipping %s: not a readable image (%s)", path, e)
                continue
            self._add(style, thumb)

    def _thumbnail(self, style: Style, path: Path) -> np.ndarray:
        """A file's thumbnail, from ``thumb_dir`` when it holds one for these bytes (else made
        and stored there)."""
        cached = None
        if self.thumb_dir is not None:
            cached = self.thumb_dir / (hashlib.sha256(style.fingerprint.encode()).hexdigest()[:32] + ".png")
            if cached.is_file():
                try:
                    with Image.open(cached) as im:
                        thumb = np.asarray(im.convert("RGB")).copy()
                    if thumb.shape == (THUMB, THUMB, 3):
                        return thumb
                except (OSError, ValueError) as e:
                    log.warning("style cache: %s is unreadable (%s); recomputing it", cached, e)
        thumb = file_thumbnail(path)
        if cached is not None:
            atomic_write(cached, lambda tmp: Image.fromarray(thumb).save(tmp, format="PNG"))
        return thumb

    def ready(self, style: Style) -> bool:
        """True when the style's code is in memory or on disk (no encoding needed)."""
        return style.key in self._codes or (self._disk is not None and self._disk.path(style.fingerprint).is_file())

    def index(self, progress: Callable[[int, int, float], None] | None = None, *,
              every_s: float = 5.0) -> "IndexReport":
        """Every gallery style's code, computed now where it is not cached (the index built
        ahead). ``progress(done, total, seconds)`` is called at most every ``every_s`` seconds
        and at the end. A style that fails to encode is logged and skipped."""
        t0 = last = time.perf_counter()
        encoded = failed = 0
        total = len(self.styles)
        for i, style in enumerate(self.styles):
            cached = self.ready(style)
            try:
                self.code(style)
            except (OSError, ValueError) as e:  # ImageError is a ValueError
                log.warning("styles: %s cannot be encoded (%s); it is skipped", style.source, e)
                failed += 1
                continue
            encoded += not cached
            now = time.perf_counter()
            if progress is not None and (now - last >= every_s or i + 1 == total):
                progress(i + 1, total, now - t0)
                last = now
        return IndexReport(total, encoded, failed, time.perf_counter() - t0)

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

    def _load(self, style: Style) -> StyleCode | None:
        code = self._disk.load(style.fingerprint) if self._disk is not None else None
        return code.to(self.stylizer.device) if code is not None else None

    def _save(self, style: Style, code: StyleCode) -> None:
        if self._disk is not None:
            self._disk.save(style.fingerprint, code)


@dataclass(frozen=True)
class IndexReport:
    styles: int
    encoded: int  # computed now (the rest came from the cache)
    failed: int
    seconds: float


def index_command(styles_dir: Path, stylizer: Stylizer) -> IndexReport:
    """``rtstyle styles --index DIR``: the codes (for this stylizer's encoder) and thumbnails of
    every image in ``styles_dir`` and the built-ins, into the cache ``rtstyle serve`` reads."""
    if not Path(styles_dir).is_dir():
        raise ValueError(f"--index {styles_dir}: not a directory")
    code_dir = default_code_cache(stylizer)
    torch.set_num_threads(1)  # see the module docstring
    t0 = time.perf_counter()
    catalog = StyleCatalog(stylizer, styles_dir=Path(styles_dir), cache_dir=code_dir, thumb_dir=default_thumb_cache())
    log.info("styles: %d styles, thumbnails ready in %.1f s; encoding into %s", len(catalog.styles),
             time.perf_counter() - t0, code_dir)
    report = catalog.index(lambda done, total, s: log.info("styles: %d/%d encoded or cached (%.0f s)",
                                                           done, total, s))
    report = dataclasses.replace(report, seconds=time.perf_counter() - t0)  # thumbnails included
    log.info("styles: index of %d styles ready in %.1f s (%d encoded now, %d from the cache, %d failed)",
             report.styles, report.seconds, report.encoded, report.styles - report.encoded - report.failed,
             report.failed)
    return report

