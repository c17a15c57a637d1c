"""``rtstyle`` command line. Options and defaults live in the config dataclasses; the help
text reads them from there."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from pathlib import Path

from realtime import UserError, __version__
from realtime.options import Parser, add_config_args, add_model_args, config_from_args, open_stylizer

log = logging.getLogger("realtime")

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def _default(cls, name):
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def _add_convert(sub) -> None:
    from realtime.convert import ConvertConfig

    p = sub.add_parser("convert", help="stylize a video or a photo file",
                       description="Stylize a video (frames, timing and audio kept) or a photo.")
    add_config_args(p, ConvertConfig)
    add_model_args(p)
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    from realtime.convert import ConvertConfig, convert, preflight

    cfg = config_from_args(ConvertConfig, args)
    preflight(cfg)  # bad paths and options are reported before the weights load
    stylizer = open_stylizer(args)
    res = convert(cfg, stylizer)
    rate = res.frames / res.seconds if res.seconds > 0 else float("nan")
    what = f"{res.frames} frame{'s' * (res.frames != 1)}"
    if res.interrupted:
        print(f"rtstyle: interrupted: {res.output} holds the first {what}"
              f"{f' of {res.total}' if res.total else ''} and is playable", file=sys.stderr)
        return EXIT_INTERRUPTED
    engine = f"{stylizer.network.model}, {stylizer.engine_label} on {stylizer.device}"
    if res.image:
        scaled = f", decoded at 1/{res.scale} scale to stay within --max-pixels" if res.scale > 1 else ""
        print(f"rtstyle: wrote {res.output} ({res.size[0]}x{res.size[1]}{scaled}; {res.seconds:.1f} s, "
              f"{engine})", file=sys.stderr)
        return 0
    extra = ", audio copied" if res.audio else ""
    extra += f", {res.skipped} damaged packets or frames skipped" if res.skipped else ""
    print(f"rtstyle: wrote {res.output} ({what}{extra}; {res.seconds:.1f} s, {rate:.1f} frames/s, "
          f"{engine})", file=sys.stderr)
    return 0


def _add_styles(sub) -> None:
    p = sub.add_parser("styles", help="list the built-in styles or inspect a style image",
                       description="List the built-in styles (and render them as PNGs), or describe "
                       "an image used as a style: its size, mean colour and palette.")
    p.add_argument("--inspect", metavar="IMAGE", help="describe an image (or built-in) used as a style")
    p.add_argument("--render", type=Path, metavar="DIR", help="write every built-in style as a PNG into DIR")
    p.add_argument("--size", type=int, default=512, help="size of rendered styles (default: %(default)s)")
    p.add_argument("--index", type=Path, metavar="DIR",
                   help="compute ahead the codes (for --model's encoder) and thumbnails of every image in DIR, "
                        "into the cache that `rtstyle serve --styles-dir DIR` reads")
    add_model_args(p)
    p.set_defaults(func=_run_styles)


def _run_styles(args) -> int:
    from realtime.images import read_image, write_image
    from realtime.styles import BUILTINS, DEFAULT_STYLE, describe_style, load_style_image

    if args.index:
        from realtime.catalog import index_command

        report = index_command(args.index, open_stylizer(args))
        print(f"rtstyle: {report.styles} styles indexed in {report.seconds:.1f} s ({report.encoded} encoded, "
              f"{report.failed} failed)", file=sys.stderr)
        return EXIT_ERROR if report.failed else 0
    if args.inspect:
        image = BUILTINS[args.inspect](args.size) if args.inspect in BUILTINS else read_image(args.inspect)
        for key, value in describe_style(image).items():
            print(f"{key}: {value}")
        used = load_style_image(args.inspect, args.size)
        print(f"encoded at: {used.shape[1]}x{used.shape[0]} (shorter side {args.size}, longer side capped)")
        return 0
    if args.render:
        args.render.mkdir(parents=True, exist_ok=True)
    for name, make in BUILTINS.items():
        mark = " (default)" if name == DEFAULT_STYLE else ""
        line = f"{name}{mark}"
        if args.render:
            path = args.render / f"{name}.png"
            write_image(path, make(args.size))
            line += f"  -> {path}"
        print(line)
    print("Any image file is a style too: rtstyle convert IN -s path/to/painting.jpg", file=sys.stderr)
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models: size, cost, weight files, licence, source",
                       description="The named models (--model NAME): parameters, FLOPs per pixel, "
                       "the files they load, their licence and where they come from.")
    p.set_defaults(func=_run_models)


def _run_models(args) -> int:
    from realtime.models import DEFAULT_MODEL, MODELS, describe

    for name in MODELS:
        print(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}")
        for key, value in describe(name).items():
            print(f"  {key + ':':<12} {value}")
    return 0


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="report torch, CUDA, GPU, engines, encoders and weights",
                       description="Report what this machine can run: torch, CUDA and the GPUs, "
                       "which engines and video encoders work, and where the weights are.")
    p.set_defaults(func=lambda args: __import__("realtime.doctor", fromlist=["main"]).main())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rtstyle", description="Real-time video style transfer (AdaIN): convert files, "
        "stylize a camera live, serve the browser demo, list styles and models, check the machine, "
        "benchmark, train a decoder.")
    parser.add_argument("--version", action="version", version=f"rtstyle {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_convert(sub)
    _add_styles(sub)
    _add_models(sub)
    _add_doctor(sub)
    from realtime import batch, bench, live, serve, temporal_tune, train

    batch.register_cli(sub)
    live.register_cli(sub)
    serve.register_cli(sub)
    train.register_cli(sub)
    temporal_tune.register_cli(sub)
    bench.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:

    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    ours = not logging.getLogger().handlers  # else a host program (or pytest) set up logging
    logging.basicConfig(level=logging.WARNING, format="rtstyle: %(message)s", stream=sys.stderr)
    for name in ("realtime", "engines"):  # other libraries' INFO chatter stays hidden
        logging.getLogger(name).setLevel(level)
    if not args.verbose:  # which engines were built is in the summary line; -v says why
        for name in ("engines", "realtime.stylizer"):
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
    from tqdm.contrib.logging import logging_redirect_tqdm

    from engines import EngineUnavailable

    try:
        # our log lines print above a progress bar, not into it
        with logging_redirect_tqdm() if ours else contextlib.nullcontext():
            return args.func(args)
    except (UserError, ValueError, EngineUnavailable) as e:
        if args.verbose:  # a ValueError may be a bug, not bad input: show where it came from
            raise
        print(f"rtstyle: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("rtstyle: interrupted; nothing was kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
