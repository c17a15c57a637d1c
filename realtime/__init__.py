"""rtstyle: real-time video style transfer with AdaIN.

Stages, one module each: ``model`` (the network), ``weights`` (loading the encoder/decoder
pair), ``adain`` (the style step), ``styles`` and ``images`` (style codes and image I/O),
``color`` (colour preservation), ``stylizer`` (engines + style), ``video`` (PyAV source and
sink), ``convert`` (file conversion), ``cli``.
"""
import signal
import sys
import threading

__version__ = "0.1.0"


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
