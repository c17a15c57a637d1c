"""rtstyle in the browser (Gradio 6): stylize your webcam live, convert a video or a photo,
and explore the styles on a t-SNE map. Run ``rtstyle serve`` or ``python -m demos.app``.

**Live.** ``gr.Image(sources=["webcam"], streaming=True)`` + ``.stream`` (fastrtc does not
support Gradio 6): the browser sends its newest frame every ``STREAM_EVERY`` s, never a
backlog, and the handler returns the stylized frame. Every control (style, second style and
blend, strength, colours, smoothing) is an input of the stream, so a change applies to the
next frame without restarting it. A readout under the picture gives fps and server time over
the last ``READOUT_FRAMES`` frames, whatever the rate.

**Mirroring.** The preview is mirrored (selfie view, Gradio's default) and Gradio mirrors the
pixels it sends too, so the server gets the mirror image. We keep that: the stylized picture
then moves like the preview beside it, as a mirror does, which is what a person facing a
camera expects. The price: text in the scene reads backwards, in the preview and the result
alike; the page says so. The file tab never mirrors.

**A booth: live and jobs never starve each other.** One ``Stylizer`` (engines built once)
serves everyone; each call passes that visitor's ``StyleSettings``. Live frames and jobs (file
conversion, style upload, model switch) are separate Gradio concurrency groups: ``"live"``
admits ``--concurrency`` seated visitors plus a line (``demos.booth.LiveSeats``: place and
longest wait shown above the camera, a per-visit time cap), and ``"jobs"`` runs ``--jobs`` at
once. Scripts get their own endpoint, ``/live_frame``: one frame a call, its slot free again
when the frame is answered, and the calls of an address share one capped visit. The stream
itself answers opened pages only: Gradio keeps a stream event, and its slot, waiting for the
next frame until the event's time limit, so a script's one-frame call would hold a slot for
minutes. Style codes and thumbnails come from the
index (``realtime.catalog``: ``rtstyle styles --index DIR`` ahead, or a background thread at
start-up whose progress goes to the log), and the map is drawn right after it, so neither a
visitor nor a slot waits for hundreds of styles to encode.

**Per visitor** (``gr.State``, a ``Visitor``): the selected style, uploaded styles (listed
first in the gallery), the gallery filter, the temporal smoother, the readout's frames and
errors already reported. A bad input (a text file named .png, a 225-megapixel PNG, a broken
video) gives one line in the page under the control it came from, never an error badge over
the panel; the log gets one line with the same id (``demos.booth.report``).

**Why one file** (~700 lines): it is one page. Its handlers and its layout refer to each other
(every control is an input of several handlers), and the reusable parts already live in
``realtime`` (the stylizer, the style catalogue, conversion), ``demos/booth.py`` (seats, the
line, failure reports) and ``demos/stylemap.py``.

**Safety.** Outputs leave only through Gradio's cache, under a random directory and a name
with the visitor's session; nothing of the project, the weights or any output root is in
``allowed_paths``; uploads are capped (``max_file_size``), photos and styles by pixels before
decoding, videos by duration; Gradio deletes its temporary files (every streamed frame is
one) after ``cache_age_s``.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network here; before gradio loads

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict, deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, NamedTuple  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from demos import booth, stylemap  # noqa: E402
from realtime import UserError  # noqa: E402
from realtime.adain import StyleCode  # noqa: E402
from realtime.serve import ServeConfig  # noqa: E402
from realtime.catalog import (STYLE_SIZE, Style, StyleCatalog, default_code_cache, default_thumb_cache,  # noqa: E402
                              thumbnail)
from realtime.models import MODELS  # noqa: E402
from realtime.styles import DEFAULT_STYLE, load_style_image  # noqa: E402
from realtime.stylizer import StyleSettings, Stylizer, compute_size, resolve_max_side  # noqa: E402

log = logging.getLogger(__name__)

STREAM_EVERY = 0.1  # seconds between the frames a browser sends (at most 10 fps)
LIVE, JOBS = "live", "jobs"  # the two concurrency groups
LINE = 8  # visitors in the seats' line whose frames are answered (with their place); more: Gradio's queue
QUEUE_MAX = 64  # visitors' events waiting at once; more are told the queue is full
READOUT_FRAMES = 10  # the readout's fps and server time are over this many frames
JOB_FRAME_S = 1.5, 0.5  # while a job runs, a camera gets a frame at most this often (its first
JOB_FIRST_S = 10.0  # JOB_FIRST_S seconds; after them, the second figure: a long video)
MAX_UPLOADED_STYLES = 8  # per visitor; the newest first
MAX_PHOTO_PIXELS = 40_000_000
MAX_STYLE_PIXELS = 40_000_000
MAX_PAGES = 4096  # opened pages remembered (to tell them from scripts)
FILE_PRESET = "veryfast"  # x264 preset for the file tab: the visitor is waiting
VIDEO_TYPES = [".mp4", ".mkv", ".mov", ".jpg", ".jpeg", ".png", ".webp"]
# An upload button, not gr.Image: Gradio's image preprocessing rejects a non-picture before the
# handler runs, with a bare "Error" over the panel; the handler says what is wrong instead.
STYLE_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]
MIRROR_HELP = ("Your camera is shown mirrored, like a mirror, and the stylized picture is mirrored "
               "the same way so both move alike (text in the scene reads backwards in both). "
               "Files in the File tab are never mirrored.")
START_TEXT = "Click the camera box to allow the webcam, then **Record**."
SCRIPT_TEXT = ("This endpoint streams the camera of a page opened in a browser. A script sends "
               "one frame a call to /live_frame (its calls share one visit per address).")
# Phones first: the camera and the result lead the page (the controls column follows them when
# the row wraps); the gallery's columns fit the width; the seat status is large.
CSS = """
#styles .grid-container { grid-template-columns: repeat(auto-fill, minmax(76px, 1fr)) !important;
  grid-template-rows: none !important; grid-auto-rows: 76px !important; }
#live-status { font-size: 1.15rem; }
#live-status p { margin: 0.2rem 0; }
#readout p { margin: 0.2rem 0; }
#stylemap-wrap { overflow: auto; max-height: 70vh; }
#stylemap, #stylemap .image-container, #stylemap .image-container > button, #stylemap .image-frame {
  width: max-content !important; height: auto !important; max-width: none !important; overflow: visible !important; }
#stylemap img { width: auto !important; height: auto !important; max-width: none !important;
  max-height: none !important; object-fit: none !important; }
#webcam .button-wrap { position: static !important; transform: none !important; margin: 6px auto 0;
  width: fit-content; }
#webcam video { max-height: calc(100% - 56px) !important; }
"""
# The map is shown at its own size (64 px thumbnails on a phone too) in a box that scrolls: on
# opening, the box scrolls to the selected style (``map_focus``) once the picture has loaded.
MAP_FOCUS_JS = """(p) => { if (!p) return; let tries = 0; const go = () => {
  const w = document.querySelector('#stylemap-wrap'), i = w && w.querySelector('img');
  if (!i || !i.complete || !i.naturalWidth) { if (tries++ < 50) setTimeout(go, 100); return; }
  w.scrollLeft = p[0] - w.clientWidth / 2; w.scrollTop = p[1] - w.clientHeight / 2; }; go(); }"""
# After the gallery changes (an upload, a map click, a filter): bring the selected style into view.
SCROLL_JS = """() => { setTimeout(() => { const s = document.querySelector('#styles .thumbnail-item.selected');
  if (s) s.scrollIntoView({block: 'nearest', inline: 'nearest'}); }, 400); }"""


class Visitor:
    """One browser session's state (``gr.State``). A plain class, not a dataclass: Gradio would
    serialize a dataclass into the page's config."""

    def __init__(self, style: str = f"builtin:{DEFAULT_STYLE}"):
        self.id = secrets.token_hex(8)  # the seat key when there is no request (tests, local calls)
        self.style = style  # the primary style's key
        self.model: str | None = None  # the model this visitor chose; None: the served one
        self.uploads: dict[str, tuple[Style, np.ndarray, np.ndarray]] = {}  # key -> (style, RGB, thumbnail)
        self.query = ""  # the gallery filter
        self.smoother = None  # realtime.smoothing.TemporalSmoother while smoothing is on
        self.look: tuple | None = None  # style, blend, strength, colour of the last frame: a change resets the smoother
        self.frames: deque[tuple[float, float]] = deque(maxlen=READOUT_FRAMES)  # (clock() when done, s spent)
        self.failures: dict[str, int] = {}  # exception type name -> frames it failed
        self.error = ""  # the warning under the picture while frames fail


class StyleMap(NamedTuple):
    keys: list[str]
    points: np.ndarray  # (N, 2) pixel centres
    thumb: int
    base: np.ndarray  # the rendered map, unmarked


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:40] or "upload"


def _header_pixels(path: Path) -> tuple[int, int]:
    """An image file's declared size, read from its header only (a decompression bomb is not
    decoded). Raises UserError for a file that is not an image."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read
            try:
                with Image.open(path) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (Image.UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path.name} is not a picture this demo can read (JPEG, PNG or WebP)") from e


# ----------------------------------------------------------------------------- handlers


class StyleDemo:
    """Everything behind the page; the methods are the event handlers (tests call them)."""

    def __init__(self, stylizer: Stylizer, cfg: ServeConfig = ServeConfig(), *, code_cache: Path | None | str = None,
                 thumb_cache: Path | None | str = None, clock: Callable[[], float] = time.monotonic):
        self.cfg, self.clock = cfg, clock
        self.stylizer = stylizer  # one set of engines for every visitor; settings travel with each call
        self._thumb_cache = default_thumb_cache() if thumb_cache == "auto" else thumb_cache
        self.library = StyleCatalog(stylizer, styles_dir=cfg.styles_dir, thumb_dir=self._thumb_cache,
                                    cache_dir=default_code_cache(stylizer) if code_cache == "auto" else code_cache)
        self.library.code(self.library.default)
        side = "full" if cfg.max_side in (0, None) else cfg.max_side
        self.live_side = resolve_max_side(side, stylizer.device, "live")  # the network's size for camera frames
        self.file_side = side  # convert resolves it per photo or video
        stylizer.warm_up(480, 640, self.live_side)  # the frame size most webcams send
        self.seats = booth.LiveSeats(cfg.concurrency, cfg.time_cap_s)
        self._pages: OrderedDict[str, None] = OrderedDict()  # session hashes of opened pages
        self._map: StyleMap | None = None
        self._map_lock = threading.Lock()
        self.indexed = (0, len(self.library.styles), 0.0)  # (done, total, seconds) of the index being built
        self.index_thread: threading.Thread | None = None
        self.index_report = None  # realtime.catalog.IndexReport once the index is built
        self._jobs, self._jobs_lock = 0, threading.Lock()  # jobs running now (cameras yield to them)
        self._no_jobs = threading.Event()
        self._job_since = 0.0  # time.monotonic() when the running jobs began
        self._no_jobs.set()
        self.served = stylizer.network.model if stylizer.network is not None else "served"
        self._code_cache = code_cache
        self._models = {self.served: (stylizer, self.library)}
        self._models_lock = threading.Lock()
        shipped = [n for n, spec in MODELS.items() if spec.decoder is not None and spec.decoder.is_file()]
        self.model_names = [self.served] + [n for n in shipped if n != self.served]

    # --- the index, built ahead
    def start_index(self) -> threading.Thread:
        """Encode what the cache lacks and draw the map, in a background thread (progress in the log)."""
        if self.index_thread is None:
            self.index_thread = threading.Thread(target=self.build_index, name="rtstyle-index", daemon=True)
            self.index_thread.start()
        return self.index_thread

    def build_index(self) -> None:
        def progress(done, total, seconds):
            self.indexed = (done, total, seconds)
            log.info("styles: %d/%d ready (%.0f s)", done, total, seconds)

        missing = sum(not self.library.ready(s) for s in self.library.styles)
        log.info("styles: %d styles, %d to encode (rtstyle styles --index DIR does it ahead)",
                 len(self.library.styles), missing)
        report = self.index_report = self.library.index(progress)
        self.style_map()
        log.info("styles: index and map ready in %.1f s (%d encoded, %d failed)", report.seconds + 0.0,
                 report.encoded, report.failed)

    def page_opened(self, request: gr.Request) -> None:
        """The page's load event: this session is a browser page (its live time is per visit)."""
        session = getattr(request, "session_hash", None)
        if session:
            self._pages[session] = None
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)

    def from_page(self, request: gr.Request | None) -> bool:
        """True for a call from an opened page (its load event came first) or a local call."""
        return request is None or getattr(request, "session_hash", None) in self._pages

    @staticmethod
    def address(request: gr.Request | None) -> str:
        """A script's seat key: its address (every REST call is a new session)."""
        return f"address:{getattr(getattr(request, 'client', None), 'host', None) or 'unknown'}"

    @contextlib.contextmanager
    def _job(self):
        """A conversion or a style encoding runs: cameras yield, a frame each ``JOB_FRAME_S[0]``
        s at most for the first ``JOB_FIRST_S`` s (a photo or an upload is done by then), then
        each ``JOB_FRAME_S[1]`` s, so that the visitor waiting on the job is not kept waiting by
        the cores the cameras take (two cameras made a 12-megapixel photo 2-3x slower on the
        shared 2-core CPU before). The frame handler waits rather than answering at once: the
        browser sends its next frame only after an answer, so fewer frames arrive to decode."""
        with self._jobs_lock:
            if not self._jobs:
                self._job_since = time.monotonic()
            self._jobs += 1
            self._no_jobs.clear()
        try:
            yield
        finally:
            with self._jobs_lock:
                self._jobs -= 1
                if not self._jobs:
                    self._no_jobs.set()

    # --- models: the served one, and the other shipped ones, opened on a visitor's first switch
    def engine(self, name: str | None) -> tuple[Stylizer, StyleCatalog]:
        """The model's stylizer and style catalogue (codes belong to an encoder), built once and
        shared by every visitor; same backend and device as the served model."""
        name = name or self.served
        with self._models_lock:
            if name not in self._models:
                if name not in self.model_names:
                    raise UserError(f"Unknown model {name!r}.")
                from realtime.models import load_model

                st = load_model(name, backend=self.stylizer.backend, device=self.stylizer.device)
                cache = (default_code_cache(st) if self._code_cache == "auto" else
                         None if self._code_cache is None else Path(self._code_cache) / name)
                catalog = StyleCatalog(st, styles_dir=self.cfg.styles_dir, cache_dir=cache, thumb_dir=self._thumb_cache)
                st.warm_up(480, 640, self.live_side)
                self._models[name] = (st, catalog)
            return self._models[name]

    def choose_model(self, visitor: Visitor, name: str):
        """A visitor switches model: the next frame and file use it (its style codes are its own)."""
        try:
            self.engine(name)  # opened now, before the stream needs it
        except Exception as e:  # noqa: BLE001  (a visitor's click: one line for them, one in the log)
            return visitor, booth.report("model switch", e)
        visitor.model, visitor.smoother = name, None
        return visitor, gr.skip()

    # --- styles of a visitor: their uploads first (the newest on top), then the gallery
    def styles(self, visitor: Visitor | None) -> list[Style]:
        ups = [s for s, _, _ in reversed(visitor.uploads.values())] if visitor else []
        return ups + self.library.styles

    def shown(self, visitor: Visitor | None) -> list[Style]:
        """The styles the gallery shows this visitor: all, or those whose label has the filter's words."""
        words = (visitor.query if visitor else "").lower().split()
        return [s for s in self.styles(visitor) if all(w in s.label.lower() for w in words)]

    def gallery(self, visitor: Visitor | None) -> list:
        thumbs = {s.key: t for s, _, t in (visitor.uploads.values() if visitor else ())}
        return [(thumbs[s.key], s.label) if s.key in thumbs else self.library.gallery_item(s)
                for s in self.shown(visitor)]

    def gallery_update(self, visitor: Visitor):
        keys = [s.key for s in self.shown(visitor)]
        return gr.update(value=self.gallery(visitor),
                         selected_index=keys.index(visitor.style) if visitor.style in keys else None)

    def choices(self, visitor: Visitor | None) -> list[tuple[str, str]]:
        return [("none", "")] + [(s.label, s.key) for s in self.styles(visitor)]

    def _style(self, visitor: Visitor, key: str) -> Style:
        if key in self.library.by_key:
            return self.library.by_key[key]
        if key in visitor.uploads:
            return visitor.uploads[key][0]
        raise UserError(f"Unknown style {key!r}: pick one from the gallery.")

    def _code(self, visitor: Visitor, key: str) -> StyleCode:
        image = visitor.uploads[key][1] if key in visitor.uploads else None
        return self.engine(visitor.model)[1].code(self._style(visitor, key), image)

    @staticmethod
    def _blends(visitor: Visitor, second: str | None, mix: float) -> bool:
        return bool(second) and second != visitor.style and mix > 0

    def mixed_code(self, visitor: Visitor, second: str | None, mix: float) -> StyleCode:
        """The primary style's code, blended with ``second`` at weight ``mix`` (0: primary only)."""
        first = self._code(visitor, visitor.style)
        if not self._blends(visitor, second, mix):
            return first
        return type(first).mix([first, self._code(visitor, second)], [1.0 - mix, mix])

    def describe(self, visitor: Visitor, second: str | None = "", mix: float = 0.0) -> str:
        first = self._style(visitor, visitor.style).label
        if not self._blends(visitor, second, mix):
            return f"Style: **{first}**"
        other = self._style(visitor, second).label
        return f"Style: **{first}** {100 * (1 - mix):.0f} % + **{other}** {100 * mix:.0f} %"

    def select_style(self, visitor: Visitor, second: str, mix: float, evt: gr.SelectData):
        visitor.style = self.shown(visitor)[evt.index].key
        return visitor, self.describe(visitor, second, mix)

    def search(self, query: str, visitor: Visitor):
        """The gallery filter: styles whose name has every word typed (the selection stays)."""
        visitor.query = (query or "").strip()[:80]
        n = len(self.shown(visitor))
        note = "" if not visitor.query else f"{n} style{'s' * (n != 1)} match" if n else "No style matches."
        return self.gallery_update(visitor), visitor, note

    def add_style(self, path: str | None, visitor: Visitor, second: str, mix: float):
        """An uploaded image becomes this visitor's style (encoded now), first in the gallery and
        selected. -> (gallery, second, visitor, selection, note). A bad file changes nothing but
        the note: one readable line."""
        if not path:
            return gr.skip(), gr.skip(), visitor, gr.skip(), gr.skip()
        src = Path(path)
        try:
            w, h = _header_pixels(src)
            if w * h > MAX_STYLE_PIXELS:
                raise UserError(f"{src.name} is {w}x{h} pixels; a style may have up to "
                                f"{MAX_STYLE_PIXELS / 1e6:g} megapixels. Try a smaller copy.")
            rgb = load_style_image(src, STYLE_SIZE)
            style = StyleCatalog.upload(rgb, _safe_stem(src.name))
            with self._job():
                self.engine(visitor.model)[1].code(style, rgb)
        except Exception as e:  # noqa: BLE001  (a visitor's file: one line for them, one in the log)
            note = booth.report("style upload", e, src.name, src)
            return gr.skip(), gr.skip(), visitor, gr.skip(), note
        visitor.uploads.pop(style.key, None)
        visitor.uploads[style.key] = (style, rgb, thumbnail(Image.fromarray(rgb)))
        while len(visitor.uploads) > MAX_UPLOADED_STYLES:
            visitor.uploads.pop(next(iter(visitor.uploads)))
        visitor.style, visitor.query = style.key, ""
        return (self.gallery_update(visitor), gr.update(choices=self.choices(visitor)), visitor,
                self.describe(visitor, second, mix), f"Added **{style.label}**: it is first in the gallery.")

    # --- live
    def live_frame(self, frame: np.ndarray | None, visitor: Visitor, alpha: float, keep_colour: bool,
                   smooth: float, second: str, mix: float, request: gr.Request = None):
        """One frame of a page's webcam stream, (H, W, 3) uint8 RGB -> (stylized frame, status,
        readout, webcam update); the page's visit is its seat key. A stream that does not come
        from an opened page (a script) is refused at once, with one line naming ``/live_frame``:
        Gradio keeps a stream event, and its live slot, waiting for the next frame until the
        event's time limit, and a script's call never sends one."""
        if not self.from_page(request):
            raise gr.Error(SCRIPT_TEXT, print_exception=False)
        return self._frame(f"visit:{visitor.id}", frame, visitor, alpha, keep_colour, smooth, second, mix)

    def api_frame(self, frame: np.ndarray | None, visitor: Visitor, alpha: float, keep_colour: bool,
                  smooth: float, second: str, mix: float, request: gr.Request = None):
        """The ``/live_frame`` API endpoint: one frame a call, answered, and the live slot is free
        again. Calls from one address add up to one visit that lasts ``time_cap_s`` of wall clock
        from the first (gaps included); the outputs are ``live_frame``'s."""
        key = self.address(request)
        return self._frame(key, frame, visitor, alpha, keep_colour, smooth, second, mix, wall_clock=True)

    def _frame(self, key: str, frame: np.ndarray | None, visitor: Visitor, alpha: float, keep_colour: bool,
               smooth: float, second: str, mix: float, *, wall_clock: bool = False):
        if frame is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        seat = self.seats.claim(key, self.clock(), wall_clock=wall_clock)
        if seat.state == "over":
            # Hiding the webcam stops the browser's stream; the seat went to the next in line.
            return gr.skip(), self.times_up(), "", gr.update(visible=False)
        status = booth.status_text(seat, self.cfg.concurrency)
        if seat.state == "waiting":
            return gr.skip(), status, gr.skip(), gr.skip()
        if self._jobs and visitor.frames:  # a job runs: it goes first (see _job)
            pace = JOB_FRAME_S[time.monotonic() - self._job_since > JOB_FIRST_S]
            self._no_jobs.wait(max(0.0, pace - (self.clock() - visitor.frames[-1][0])))
        t0 = time.perf_counter()
        try:
            out = self._stylize(frame, visitor, alpha, keep_colour, smooth, second, mix)
            visitor.error = ""
        # The boundary between one frame and the stream: whatever goes wrong with a frame (a
        # style that will not load, an engine error, out of memory) must not end every
        # visitor's stream, and Gradio would swallow it silently. So: log it (once per visitor
        # and kind, the traceback at debug level), tell the visitor under the picture, show the
        # frame unstyled, go on with the next one.
        except Exception as e:  # noqa: BLE001
            out = frame
            self._failed(visitor, e)
        visitor.frames.append((self.clock(), time.perf_counter() - t0))
        return out, status, self.readout(visitor, frame.shape), gr.skip()

    def _stylize(self, frame, visitor, alpha, keep_colour, smooth, second, mix) -> np.ndarray:
        code = self.mixed_code(visitor, second, mix)
        blends = self._blends(visitor, second, mix)
        # any change of the look resets the smoother: it would blend in, or hold, the old one
        look = (visitor.style, second if blends else None, round(float(mix), 3) if blends else None,
                round(float(alpha), 3), bool(keep_colour))
        smoother = self._smoother(visitor, float(smooth), look)
        settings = StyleSettings(code, float(alpha), bool(keep_colour), smoother.stats_filter if smoother else None)
        pixels = torch.from_numpy(np.require(frame, np.uint8, ["C", "W"]))[None]  # Gradio's are read-only
        styled = self.engine(visitor.model)[0](pixels, settings, self.live_side)[0].numpy()
        return smoother(frame, styled) if smoother is not None else styled

    @staticmethod
    def _smoother(visitor: Visitor, strength: float, look: tuple):
        switched, visitor.look = visitor.look != look, look
        if strength <= 0:
            visitor.smoother = None
            return None
        if visitor.smoother is None:
            from realtime.smoothing import DEFAULT_SMOOTH, TemporalSmoother

            visitor.smoother = TemporalSmoother(DEFAULT_SMOOTH, strength)
        elif switched:
            visitor.smoother.reset()  # a new look: do not blend (or hold) the old one's frames
        visitor.smoother.strength = strength
        return visitor.smoother

    @staticmethod
    def _failed(visitor: Visitor, error: Exception) -> None:
        kind = type(error).__name__
        count = visitor.failures[kind] = visitor.failures.get(kind, 0) + 1
        if count == 1:
            booth.report("live frame (shown unstyled; the stream goes on)", error)
        detail = str(error)[:160]  # the log has the rest
        visitor.error = (f"⚠ A frame could not be stylized ({kind}: {detail}); your camera is shown "
                         f"unstyled while the stream goes on ({count} frame{'s' * (count != 1)} so far).")

    def readout(self, visitor: Visitor, shape: tuple) -> str:
        """fps and server time over the last ``READOUT_FRAMES`` frames, at any rate."""
        h, w = shape[:2]
        nh, nw = compute_size(h, w, self.live_side)
        recent = list(visitor.frames)
        ms = np.array([s for _, s in recent]) * 1e3
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            fps = (len(recent) - 1) / (recent[-1][0] - recent[0][0])
            rate = f"**{fps:.2f} fps**" if fps < 1 else f"**{fps:.1f} fps**"
        else:
            rate = "**– fps** (first frame)"
        speed = (f"{rate} · server time a frame p50 {np.percentile(ms, 50):.0f} ms, "
                 f"p95 {np.percentile(ms, 95):.0f} ms (last {len(recent)} frame{'s' * (len(recent) != 1)})")
        text = f"{speed} · camera {w}×{h}, network {nw}×{nh}"
        return text + (f"\n\n{visitor.error}" if visitor.error else "")

    def times_up(self) -> str:
        return (f"**Your live turn is over** ({self.cfg.time_cap_s / 60:g} min a visit) so that others get "
                "a turn: the camera was switched off. Reload the page to queue again.")

    # --- file tab
    def convert_file(self, path: str | None, visitor: Visitor, alpha: float, keep_colour: bool, second: str,
                     mix: float, request: gr.Request | None = None, progress=gr.Progress(track_tqdm=True)):
        """Upload -> stylized file in Gradio's cache. Returns (video, photo, download, status);
        a bad file changes only the status: one readable line."""
        from realtime.convert import IMAGE_SUFFIXES, ConvertConfig, convert

        if not path:
            return gr.skip(), gr.skip(), gr.skip(), "⚠ Upload a video or a photo first."
        src = Path(path)
        out_dir = Path(gr.utils.get_upload_folder()) / secrets.token_hex(16)
        try:
            photo = self._check_upload(src)
            session = _safe_stem(getattr(request, "session_hash", None) or "local")[:8]
            suffix = (src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".png") if photo else ".mp4"
            out_dir.mkdir(parents=True)
            out = out_dir / f"{_safe_stem(src.name)}-styled-{session}{suffix}"
            cfg = ConvertConfig(input=src, output=out, alpha=float(alpha),
                                preserve_color="luminance" if keep_colour else "none",
                                max_side=self.file_side, preset=FILE_PRESET)
            progress(0, desc="Stylizing")
            with self._job():
                res = convert(cfg, self.engine(visitor.model)[0], self.mixed_code(visitor, second, mix))
        except Exception as e:  # noqa: BLE001  (a visitor's file: one line for them, one in the log)
            return gr.skip(), gr.skip(), gr.skip(), booth.report("file conversion", e, src.name, src)
        finally:
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
        what = "1 photo" if photo else f"{res.frames} frames{', sound kept' if res.audio else ''}"
        status = f"Done in {res.seconds:.1f} s: {what}. {self.describe(visitor, second, mix)}."
        if photo:
            return gr.update(value=None, visible=False), gr.update(value=str(out), visible=True), str(out), status
        return gr.update(value=str(out), visible=True), gr.update(value=None, visible=False), str(out), status

    def _check_upload(self, src: Path) -> bool:
        """Size, duration and pixel limits; True for a photo. Raises UserError naming the file."""
        from realtime.images import is_image_file
        from realtime.video import MediaError, VideoFileSource

        mb = src.stat().st_size / 2**20
        if mb > self.cfg.max_upload_mb:
            raise UserError(f"{src.name} is {mb:.1f} MB; the limit is {self.cfg.max_upload_mb:g} MB.")
        if is_image_file(src) or src.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
            w, h = _header_pixels(src)
            if w * h > MAX_PHOTO_PIXELS:
                raise UserError(f"{src.name} is {w}x{h} pixels; the limit is {MAX_PHOTO_PIXELS / 1e6:g} megapixels.")
            return True
        try:
            with VideoFileSource(src) as video:
                seconds = video.duration_s
        except MediaError as e:
            raise UserError(str(e).replace(str(src), src.name)) from e
        if seconds is None:
            raise UserError(f"{src.name}: the video does not say how long it is; re-save it as MP4 and try again.")
        if seconds > self.cfg.max_duration_s:
            raise UserError(f"{src.name} lasts {seconds:.1f} s; the limit is {self.cfg.max_duration_s:g} s. "
                            "Trim it and try again.")
        return False

    # --- style map
    def style_map(self, progress: Callable | None = None) -> StyleMap:
        """Every gallery style's code (from the index, else encoded now), t-SNE, the drawing:
        computed once."""
        with self._map_lock:
            if self._map is None:
                styles = self.library.styles
                codes = []
                for i, style in enumerate(styles):
                    if progress is not None:
                        progress((i, len(styles)), desc="Encoding the styles for the map", unit="styles")
                    codes.append(self.library.code(style))
                embedding = stylemap.tsne(stylemap.code_features(codes))
                points, size, thumb = stylemap.layout(embedding)
                base = stylemap.render([self.library.thumbs[s.key] for s in styles], points, size, thumb,
                                       [s.label for s in styles])
                self._map = StyleMap([s.key for s in styles], points, thumb, base)
            return self._map

    def _marked(self, m: StyleMap, visitor: Visitor, second: str, mix: float) -> np.ndarray:
        first = m.keys.index(visitor.style) if visitor.style in m.keys else None
        other = m.keys.index(second) if self._blends(visitor, second, mix) and second in m.keys else None
        return stylemap.mark(m.base, m.points, m.thumb, first, other, mix if other is not None else 0.0)

    def open_map(self, visitor: Visitor, second: str, mix: float):
        """The map tab: the map at once when the index is built, else where the index stands."""
        if self._map is None:
            done, total, seconds = self.indexed
            left = f", about {seconds / done * (total - done):.0f} s left" if done else ""
            return gr.skip(), (f"The map is being prepared: {done} of {total} styles ready{left}. "
                               "Open this tab again in a moment.")
        return self._marked(self._map, visitor, second, mix), ""

    def map_focus(self, visitor: Visitor) -> list[float] | None:
        """Where the page scrolls the map when it opens: the selected style's (x, y) on the map,
        else the map's centre; None while the map is being prepared."""
        if self._map is None:
            return None
        m = self._map
        if visitor.style in m.keys:
            return [float(v) for v in m.points[m.keys.index(visitor.style)]]
        return [m.base.shape[1] / 2, m.base.shape[0] / 2]

    def map_click(self, visitor: Visitor, second: str, evt: gr.SelectData):
        """A click on the map -> (map, gallery, second style, blend, visitor, description, filter)."""
        if self._map is None:
            return (gr.skip(),) * 4 + (visitor, gr.skip(), gr.skip())
        m = self._map
        first, other, weight = stylemap.pick(m.points, tuple(evt.index), m.thumb)
        weight = round(weight, 2)  # what the slider can show
        visitor.style, visitor.query = m.keys[first], ""
        second = m.keys[other] if other is not None else ""
        return (self._marked(m, visitor, second, weight), self.gallery_update(visitor), second,
                weight if other is not None else gr.skip(), visitor, self.describe(visitor, second, weight), "")


# ----------------------------------------------------------------------------- page


def build_app(stylizer: Stylizer, cfg: ServeConfig = ServeConfig(), *, code_cache: Path | None | str = "auto",
              thumb_cache: Path | None | str = "auto", clock: Callable[[], float] = time.monotonic,
              index: bool = True) -> gr.Blocks:
    """The page, wired to a ``StyleDemo`` (``blocks.style_demo``); launch it with ``launch``.
    ``index``: build the style index and map in the background now."""
    from realtime.smoothing import DEFAULT_STRENGTH

    demo = StyleDemo(stylizer, cfg, code_cache=code_cache, thumb_cache=thumb_cache, clock=clock)
    if index:
        demo.start_index()
    first = Visitor()
    live = dict(concurrency_limit=cfg.concurrency + LINE, concurrency_id=LIVE)
    jobs = dict(concurrency_limit=cfg.jobs, concurrency_id=JOBS)
    quick = dict(queue=False, show_progress="hidden")  # no network: never waits behind anything
    age = int(cfg.cache_age_s)
    with gr.Blocks(title="rtstyle: live style transfer", delete_cache=(max(1, min(60, age)), age)) as blocks:
        visitor = gr.State(Visitor)
        gr.Markdown("### rtstyle · live style transfer", elem_id="title")
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                with gr.Tabs():
                    with gr.Tab("Live", id="live"):
                        status = gr.Markdown(START_TEXT, elem_id="live-status")
                        with gr.Row():
                            cam = gr.Image(sources=["webcam"], streaming=True, label="Your camera (mirrored)",
                                           webcam_options=gr.WebcamOptions(mirror=True), elem_id="webcam",
                                           height=300, min_width=180)
                            out = gr.Image(label="Stylized", format="jpeg", interactive=False, elem_id="styled",
                                           buttons=["download", "fullscreen"], height=300, min_width=180)
                        readout = gr.Markdown("", elem_id="readout")
                        gr.Markdown(MIRROR_HELP)
                    with gr.Tab("File", id="file"):
                        file_in = gr.File(label=f"A video (up to {cfg.max_duration_s:g} s) or a photo, "
                                          f"up to {cfg.max_upload_mb:g} MB", file_types=VIDEO_TYPES,
                                          height=150, elem_id="file-in")
                        run = gr.Button("Stylize with the chosen style", variant="primary", elem_id="convert")
                        file_status = gr.Markdown(f"Sound is kept. Download within {age // 60} minutes: "
                                                  "results are deleted after that.", elem_id="file-status")
                        video_out = gr.Video(label="Result", interactive=False, height=360, elem_id="result-video")
                        photo_out = gr.Image(label="Result", interactive=False, visible=False, height=360,
                                             elem_id="result-photo")
                        download = gr.File(label="Download", interactive=False, height=80, elem_id="download")
                    with gr.Tab("Style map", id="map") as map_tab:
                        gr.Markdown("The gallery's styles laid out by t-SNE of their AdaIN statistics: "
                                    "similar styles sit together. Click a style to choose it; click in the "
                                    "gap between two to blend them (the nearer one weighs more).")
                        map_note = gr.Markdown("", elem_id="map-note")
                        with gr.Column(elem_id="stylemap-wrap"):
                            style_map = gr.Image(label="Style map", show_label=False, interactive=False,
                                                 elem_id="stylemap", buttons=["fullscreen"], format="jpeg")
                        focus = gr.JSON(None, visible=False)  # map_focus, for MAP_FOCUS_JS
            with gr.Column(scale=2, min_width=300):
                selection = gr.Markdown(demo.describe(first), elem_id="selection")
                search = gr.Textbox(placeholder="Filter the styles by name…", show_label=False, elem_id="search",
                                    max_lines=1, container=False)
                search_note = gr.Markdown("", elem_id="search-note")
                gallery = gr.Gallery(demo.gallery(None), label="Styles", columns=4, height=330, allow_preview=False,
                                     selected_index=[s.key for s in demo.styles(None)].index(first.style),
                                     object_fit="cover", elem_id="styles")
                upload = gr.UploadButton("Add your own style (a picture)", type="filepath", size="md",
                                         file_types=STYLE_TYPES, elem_id="style-upload")
                upload_note = gr.Markdown("", elem_id="upload-note")
                second = gr.Dropdown(demo.choices(None), value="", label="Blend with a second style", elem_id="second")
                mix = gr.Slider(0, 1, value=0.5, step=0.05, label="Share of the second style", elem_id="mix")
                model = gr.Radio(demo.model_names, value=demo.served, label="Model", elem_id="model",
                                 visible=len(demo.model_names) > 1)
                model_note = gr.Markdown("", elem_id="model-note")
                alpha = gr.Slider(0, 1, value=1.0, step=0.05, label="Style strength", elem_id="alpha")
                keep = gr.Checkbox(False, label="Keep my colours (stylize brightness only)", elem_id="keep")
                smooth = gr.Slider(0, 1, value=DEFAULT_STRENGTH, step=0.05, elem_id="smooth",
                                   label="Temporal smoothing (0: off; less flicker, a little trailing)")
        blocks.load(demo.page_opened, None, None, api_visibility="private", **quick)
        frame_io = [cam, visitor, alpha, keep, smooth, second, mix], [out, status, readout, cam]
        cam.stream(demo.live_frame, *frame_io, stream_every=STREAM_EVERY, time_limit=int(cfg.time_cap_s),
                   show_progress="hidden", api_name="live_stream", api_visibility="undocumented", **live)
        gr.on([], demo.api_frame, *frame_io, api_name="live_frame", show_progress="hidden", **live)  # scripts
        gallery.select(demo.select_style, [visitor, second, mix], [visitor, selection], **quick)
        search.change(demo.search, [search, visitor], [gallery, visitor, search_note], **quick).then(
            None, js=SCROLL_JS)
        upload.upload(demo.add_style, [upload, visitor, second, mix],
                      [gallery, second, visitor, selection, upload_note], **jobs).then(None, js=SCROLL_JS)
        second.change(demo.describe, [visitor, second, mix], selection, **quick)
        model.change(demo.choose_model, [visitor, model], [visitor, model_note], **jobs)
        mix.input(demo.describe, [visitor, second, mix], selection, trigger_mode="always_last", **quick)
        mix.change(demo.describe, [visitor, second, mix], selection, **quick)
        run.click(demo.convert_file, [file_in, visitor, alpha, keep, second, mix],
                  [video_out, photo_out, download, file_status], **jobs)
        map_tab.select(demo.open_map, [visitor, second, mix], [style_map, map_note], **quick).then(
            demo.map_focus, visitor, focus, **quick).then(None, focus, None, js=MAP_FOCUS_JS)
        style_map.select(demo.map_click, [visitor, second], [style_map, gallery, second, mix, visitor, selection,
                                                             search], **quick).then(None, js=SCROLL_JS)
    blocks.queue(max_size=QUEUE_MAX)
    blocks.style_demo = demo
    return blocks


def launch(blocks: gr.Blocks, cfg: ServeConfig, *, prevent_thread_lock: bool = False, quiet: bool = False):
    """Serve ``blocks`` with the safety settings of ``cfg``; returns Gradio's (app, local url, share url)."""
    return blocks.launch(
        server_name=cfg.host, server_port=cfg.port, share=cfg.share, auth=cfg.auth_pair(),
        max_file_size=int(cfg.max_upload_mb * 2**20), allowed_paths=[], show_error=False,
        run_history=False, ssr_mode=False, prevent_thread_lock=prevent_thread_lock, quiet=quiet,
        css=CSS)


def serve(stylizer: Stylizer, cfg: ServeConfig) -> None:
    """``rtstyle serve``'s app (the ``rtstyle.web`` entry point): build the page, serve until Ctrl-C.
    The app's log follows ``rtstyle``'s level (-v: debug, with tracebacks)."""
    logging.getLogger("demos").setLevel(logging.getLogger("realtime").getEffectiveLevel())
    launch(build_app(stylizer, cfg), cfg)


def main(argv: list[str] | None = None) -> int:
    """``python -m demos.app [options]``: the same as ``rtstyle serve``."""
    from realtime import serve

    parser = argparse.ArgumentParser(prog="python -m demos.app", description="Serve the rtstyle demo.")
    serve.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="rtstyle: %(message)s", stream=sys.stderr)
    for name in ("realtime", "engines", "demos"):  # as `rtstyle`: other libraries' INFO stays hidden
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        return serve.run(args)
    except (UserError, ValueError) as e:
        print(f"rtstyle: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
