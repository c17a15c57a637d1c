"""``rtstyle serve``: the Gradio demo (``demos/app.py``) behind safe defaults.

Listens on 127.0.0.1 unless ``--host`` says otherwise; ``--share`` (a public tunnel) is
refused without ``--auth USER:PASSWORD``. The app is found through an entry point
(``web_app``) and Gradio is imported only when the command runs, so ``rtstyle --help`` and
the rest of the package work without them (``pip install 'rtstyle[demo]'``), and ``realtime``
never imports ``demos``.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from realtime import options
from realtime.options import opt

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEMO_HINT = "pip install 'rtstyle[demo]'"
WEB_APP = "rtstyle.web"  # entry-point group of the browser app


@dataclass(frozen=True)
class ServeConfig:
    """Every option of ``rtstyle serve`` (and of ``demos.app.build_app``), with its default and help."""

    host: str = opt(LOOPBACK, "address to listen on (default: %(default)s, this machine only; 0.0.0.0 "
                    "exposes the demo to the network: add --auth)")
    port: int = opt(7860, "port")
    share: bool = opt(False, "also publish on a temporary public gradio.live URL (needs --auth and "
                      "Gradio's tunnel binary, which needs internet access)")
    auth: str | None = opt(None, "require this login (required with --share)", metavar="USER:PASSWORD")
    styles_dir: Path | None = opt(None, "add every image in DIR to the style gallery (default: built-in "
                                  "styles only; e.g. ../shared/data/styles). Their codes and thumbnails come "
                                  "from the cache `rtstyle styles --index DIR` fills; what is missing is "
                                  "computed in the background at start-up", type=Path, metavar="DIR")
    max_upload_mb: float = opt(50.0, "largest file a visitor may upload", metavar="MB")
    max_duration_s: float = opt(30.0, "longest video the file tab converts", metavar="S")
    concurrency: int = opt(2, "visitors whose camera is stylized at once; the others wait in a line "
                           "that tells them their place and their longest wait", metavar="N")
    jobs: int = opt(1, "file conversions, style uploads and model switches run at once, beside (never "
                    "behind) the live cameras; more wait in their own queue", metavar="N")
    time_cap_s: float = opt(300.0, "live seconds per visit, wall clock; a script calling the live "
                            "endpoint gets the same cap per address", metavar="S")
    max_side: int | str | None = opt("auto", "run the network with the longer side at most N pixels; 'full' "
                                     "(or 0) for the full frame; 'auto': on a CPU the live size of `rtstyle "
                                     "live` for the camera and convert's for files, full size on a GPU",
                                     type=options.max_side_arg, metavar="N")
    cache_age_s: int = opt(600, "delete streamed frames, uploads and results older than this many seconds "
                           "(results must be downloaded within it)", metavar="S")

    def auth_pair(self) -> tuple[str, str] | None:
        if self.auth is None:
            return None
        user, sep, password = self.auth.partition(":")
        return (user, password) if sep else None


def check_config(cfg: ServeConfig) -> ServeConfig:
    """Refuse unsafe or impossible settings with a message naming the option (ValueError)."""
    if cfg.auth is not None:
        user, password = cfg.auth_pair() or ("", "")
        if not user or not password:
            raise ValueError("--auth must be USER:PASSWORD with both parts non-empty")
    if cfg.share and cfg.auth is None:
        raise ValueError("--share publishes the demo on a public URL: it needs --auth USER:PASSWORD")
    if not 1 <= cfg.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {cfg.port}")
    for name in ("concurrency", "jobs"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("max_upload_mb", "max_duration_s", "time_cap_s", "cache_age_s"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    if isinstance(cfg.max_side, int) and not (cfg.max_side == 0 or cfg.max_side >= 16):
        raise ValueError(f"--max-side must be auto, full, 0 (full size) or >= 16, got {cfg.max_side}")
    if cfg.styles_dir is not None and not cfg.styles_dir.is_dir():
        raise ValueError(f"--styles-dir {cfg.styles_dir}: not a directory")
    return cfg


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rtstyle serve``; also used by ``python -m demos.app``."""
    from realtime.options import add_config_args, add_model_args

    add_config_args(p, ServeConfig)
    add_model_args(p)


def register_cli(sub) -> None:
    """Add ``rtstyle serve`` to the sub-command parsers ``sub``."""
    p = sub.add_parser("serve", help="serve the live webcam / file / style-map demo in a browser",
                       description="Serve the Gradio demo: stylize your webcam live, convert a "
                       f"video or photo, explore the style map. Needs {DEMO_HINT}.")
    add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return check_config(options.config_from_args(ServeConfig, args))


def run(args: argparse.Namespace) -> int:
    """``rtstyle serve``: check the options, load the weights, serve until Ctrl-C."""
    cfg = config_from_args(args)  # before anything slow: a refused --share costs nothing
    options.check_device(args.device)
    serve_app = web_app()
    if cfg.host != LOOPBACK and cfg.auth is None:
        log.warning("serve: listening on %s without --auth: anyone who can reach this machine can use it",
                    cfg.host)
    serve_app(options.open_stylizer(args), cfg)
    return 0


def web_app():
    """The browser app's ``serve(stylizer, cfg)``, found through the ``rtstyle.web`` entry point
    that ``demos/app.py`` registers (pyproject.toml): the app imports this package, never the
    other way round. Gradio is imported here, when the command runs."""
    from importlib.metadata import entry_points

    from realtime import UserError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network; before gradio loads
    found = list(entry_points(group=WEB_APP, name="serve"))
    if not found:
        raise UserError("rtstyle serve: the browser demo is not installed with this package "
                        "(pip install -e '.[demo]' in a checkout)")
    try:
        return found[0].load()
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "gradio":
            raise UserError(f"rtstyle serve needs Gradio: {DEMO_HINT}") from e
        raise
