"""rtstyle: real-time video style transfer with AdaIN.

Use it from Python (the names below are imported on first use, so ``import realtime`` is cheap)::

    from realtime import StyleSettings, load_model, read_image, write_image

    stylizer = load_model()                               # the default model, shipped with the package
    style = stylizer.encode_spec("mosaic,waves:0.3")      # built-in names or image paths, mixed
    out = stylizer.stylize(read_image("photo.jpg"), StyleSettings(style, alpha=0.8), max_side=640)
    write_image("styled.png", out)

A frame goes one way through the stages, one module each: a source (``video``: files, PyAV;
``capture``: cameras, test pattern) -> the ``stylizer`` (``models``/``weights``/``model``:
the network and its weights; ``engines``: how it runs; ``adain``: the style step; ``styles``,
``catalog``: style codes) -> ``smoothing`` -> a sink (``video``, ``sinks``). ``convert`` and
``live`` run that pipeline for files and cameras; ``train``/``trainer``/``losses`` make decoders;
``bench``/``profiling``/``measure`` time it; ``cli``/``options`` are the command line.
"""
import importlib
import signal
import sys
import threading

__version__ = "0.1.0"

# The public API: name -> the module it lives in, imported when first used.
_API = {
    "load_model": "realtime.models", "load_network": "realtime.models", "MODELS": "realtime.models",
    "Stylizer": "realtime.stylizer", "StyleSettings": "realtime.stylizer",
    "StyleCode": "realtime.adain", "mix": "realtime.adain",
    "convert": "realtime.convert", "ConvertConfig": "realtime.convert",
    "read_image": "realtime.images", "write_image": "realtime.images",
    "TemporalSmoother": "realtime.smoothing", "Frame": "realtime.frames",
}
__all__ = [*_API, "UserError", "MediaError", "SinkError", "ImageError", "WeightsError", "__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")


class UserError(Exception):
    """Bad input, output or environment: the message names the file and the problem and is
    shown to the user as is (exit status 1). It and its kinds below are defined here, at the
    package root, so any stage can raise them and the CLI can catch them without importing
    the media stack."""


class MediaError(UserError):
    """Input cannot be used: message names the file and the problem."""


class SinkError(UserError):
    """Output could not be written (ENOSPC etc.): message names the path and cause."""


class ImageError(UserError, ValueError):
    """An image file is missing, unreadable, too large, or cannot be written."""


class WeightsError(UserError, ValueError):
    """A weights file is missing, unreadable, of the wrong layout or of the wrong pair."""


class Interrupted(KeyboardInterrupt):
    """The user pressed Ctrl-C a second time: stop now."""


class CtrlC:
    """While active (main thread only), the first SIGINT sets ``stop`` so the pipeline ends
    between frames and no sink is cut mid-write; the second raises ``Interrupted``. Shared
    by file conversion and the live loop."""

    def __init__(self, message: str = "stopping after the current frame; Ctrl-C again to abort"):
        self.stop = threading.Event()
        self.message = message
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.stop.is_set():
            raise Interrupted("interrupted twice")
        self.stop.set()
        print(f"\nrtstyle: {self.message}", file=sys.stderr)

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
