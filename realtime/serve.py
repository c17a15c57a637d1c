"""``rtstyle serve``: the Gradio demo (``demos/app.py``) behind safe defaults.

Listens on 127.0.0.1 unless ``--host`` says otherwise; ``--share`` (a public tunnel) is
refused without ``--auth USER:PASSWORD``. Gradio and the demo are imported only when the
command runs, so ``rtstyle --help`` and the rest of the package work without them
(``pip install 'rtstyle[demo]'``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEMO_HINT = "pip install 'rtstyle[demo]'"


@dataclass(frozen=True)
class ServeConfig:
    """Every option of ``rtstyle serve`` (and of ``demos.app.build_app``), with its default."""

    host: str = LOOPBACK
    port: int = 7860
    share: bool = False  # a public *.gradio.live tunnel: needs auth
    auth: str | None = None  # "USER:PASSWORD"
    styles_dir: Path | None = None  # more styles beside the built-ins (e.g. ../shared/data/styles)
    max_upload_mb: float = 50.0  # per uploaded file, enforced by Gradio before the handler runs
    max_duration_s: float = 30.0  # longest video the file tab converts
    concurrency: int = 2  # GPU events (live streams, conversions, style encodes) at a time
    time_cap_s: float = 300.0  # wall-clock seconds of live stream per visitor session
    max_side: int | None = 512  # longer side the network runs at (live and file tab); 0 or None: full size
    cache_age_s: int = 600  # Gradio deletes its temporary files (frames, uploads, outputs) older than this

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
    if cfg.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {cfg.concurrency}")
    for name in ("max_upload_mb", "max_duration_s", "time_cap_s", "cache_age_s"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    if cfg.max_side is not None and not (cfg.max_side == 0 or cfg.max_side >= 16):
        raise ValueError(f"--max-side must be 0 (full size) or >= 16, got {cfg.max_side}")
    if cfg.styles_dir is not None and not cfg.styles_dir.is_dir():
        raise ValueError(f"--styles-dir {cfg.styles_dir}: not a directory")
    return cfg


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rtstyle serve``; also used by ``python -m demos.app``."""
    from realtime.options import add_model_args

    d = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    p.add_argument("--host", default=d["host"],
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 "
                        "exposes the demo to the network: add --auth)")
    p.add_argument("--port", type=int, default=d["port"], help="port (default: %(default)s)")
    p.add_argument("--share", action="store_true",
                   help="also publish on a temporary public gradio.live URL (needs --auth and "
                        "Gradio's tunnel binary, which needs internet access)")
    p.add_argument("--auth", metavar="USER:PASSWORD", default=d["auth"],
                   help="require this login (required with --share)")
    p.add_argument("--styles-dir", type=Path, metavar="DIR", default=d["styles_dir"],
                   help="add every image in DIR to the style gallery (default: built-in styles only; "
                        "e.g. ../shared/data/styles). Their codes are computed when first used and "
                        "cached on disk")
    p.add_argument("--max-upload-mb", type=float, metavar="MB", default=d["max_upload_mb"],
                   help="largest file a visitor may upload (default: %(default)s)")
    p.add_argument("--max-duration-s", type=float, metavar="S", default=d["max_duration_s"],
                   help="longest video the file tab converts (default: %(default)s)")
    p.add_argument("--concurrency", type=int, metavar="N", default=d["concurrency"],
                   help="live streams, conversions and style encodings run at once on the "
                        "accelerator; more visitors wait in a queue that shows their place "
                        "(default: %(default)s)")
    p.add_argument("--time-cap-s", type=float, metavar="S", default=d["time_cap_s"],
                   help="live-stream seconds per visitor session, wall clock (default: %(default)s)")
    p.add_argument("--max-side", type=int, metavar="N", default=d["max_side"],
                   help="run the network with the longer side at most N pixels, 0 for the full frame "
                        "(default: %(default)s)")
    p.add_argument("--cache-age-s", type=int, metavar="S", default=d["cache_age_s"],
                   help="delete streamed frames, uploads and results older than this many seconds "
                        "(default: %(default)s; results must be downloaded within it)")
    add_model_args(p)


def register_cli(sub) -> None:
    """Add ``rtstyle serve`` to the sub-command parsers ``sub``."""
    p = sub.add_parser("serve", help="serve the live webcam / file / style-map demo in a browser",
                       description="Serve the Gradio demo: stylize your webcam live, convert a "
                       f"video or photo, explore the style map. Needs {DEMO_HINT}.")
    add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)}
    return check_config(ServeConfig(**values))


def run(args: argparse.Namespace) -> int:
    """``rtstyle serve``: check the options, load the weights, serve until Ctrl-C."""
    from realtime import UserError

    cfg = config_from_args(args)  # before anything slow: a refused --share costs nothing
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network; before gradio loads
    try:
        from demos import app
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "gradio":
            raise UserError(f"rtstyle serve needs Gradio: {DEMO_HINT}") from e
        raise
    if cfg.host != LOOPBACK and cfg.auth is None:
        log.warning("serve: listening on %s without --auth: anyone who can reach this machine can use it",
                    cfg.host)
    from realtime.options import stylizer_from_args

    stylizer = stylizer_from_args(args)
    demo = app.build_app(stylizer, cfg)
    app.launch(demo, cfg)
    return 0
