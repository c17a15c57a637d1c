"""``rtstyle`` command line. Options and defaults live in the config dataclasses; the help
text reads them from there."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from realtime import UserError, __version__
from realtime.options import add_model_args, stylizer_from_args

log = logging.getLogger("realtime")

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def _default(cls, name):
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def max_side_arg(text: str) -> int | str:
    """``--max-side``: auto, full, or a whole number of pixels (range checked by the command)."""
    if text in ("auto", "full"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, full or a number of pixels, got {text!r}") from None


def _add_convert(sub) -> None:
    from realtime.convert import ConvertConfig
    from realtime.smoothing import SMOOTH_MODES
    from realtime.stylizer import CPU_MAX_SIDE

    d = lambda name: _default(ConvertConfig, name)  # noqa: E731
    p = sub.add_parser("convert", help="stylize a video or a photo file",
                       description="Stylize a video (frames, timing and audio kept) or a photo.")
    p.add_argument("input", type=Path, help="video or image file (detected by content)")
    p.add_argument("-o", "--output", type=Path,
                   help="output file: .mp4/.mkv/.mov for videos, .jpg/.png/.webp for images "
                        "(default: INPUT-STEM_STYLE.mp4, or the image's own format, in the current directory)")
    p.add_argument("-s", "--style", default=d("style"),
                   help="built-in style name or image path; several mixed as A,B:0.3 (weights "
                        f"default 1). Default: {d('style')}. See `rtstyle styles`")
    p.add_argument("--alpha", type=float, default=d("alpha"),
                   help="style strength in [0, 1] (default: %(default)s)")
    p.add_argument("--preserve-color", nargs="?", const="luminance", default=d("preserve_color"),
                   choices=("none", "luminance", "transfer"),
                   help="keep the content's colours: 'luminance' (default when the flag is given) "
                        "stylizes brightness only; 'transfer' recolours the style image to the "
                        "content's colour statistics before encoding it (for videos: the first frame's)")
    p.add_argument("--max-side", type=max_side_arg, default=d("max_side"), metavar="N",
                   help="run the network with the longer side at most N pixels (>= 16), then scale "
                        "back to the input size; 'full' for the input's own size; 'auto': "
                        f"{CPU_MAX_SIDE['video']} for videos and {CPU_MAX_SIDE['image']} for photos on a "
                        "CPU, full size on a GPU (default: %(default)s)")
    p.add_argument("--batch", type=int, default=d("batch"),
                   help="frames per batch (default: 4 on CUDA, 1 on CPU)")
    p.add_argument("--smooth", default=d("smooth"), choices=SMOOTH_MODES,
                   help="temporal smoothing for videos: 'stats' smooths the content statistics at "
                        "the style step, 'flow' blends with the motion-compensated previous output, "
                        "'all' does both (default: %(default)s; see benchmarks/TEMPORAL.md)")
    p.add_argument("--smooth-strength", type=float, default=d("smooth_strength"), metavar="S",
                   help="0 = off .. 1 = strongest (default: %(default)s)")
    p.add_argument("--crf", type=int, default=d("crf"),
                   help="quality, lower is better: crf for libx264/libx265, cq for NVENC (default: %(default)s)")
    p.add_argument("--preset", default=d("preset"), help="x264 speed preset (default: %(default)s)")
    p.add_argument("--codec", default=d("codec"),
                   help="video encoder, e.g. libx264, h264_nvenc when an NVIDIA encoder is present "
                        "(default: %(default)s)")
    p.add_argument("--tolerate-errors", action="store_true",
                   help="skip undecodable packets of a damaged video instead of stopping")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_model_args(p)
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    from realtime.convert import ConvertConfig, convert, preflight

    cfg = ConvertConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ConvertConfig)})
    preflight(cfg)  # bad paths and options are reported before the weights load
    stylizer = stylizer_from_args(args)
    res = convert(cfg, stylizer)
    rate = res.frames / res.seconds if res.seconds > 0 else float("nan")
    what = f"{res.frames} frame{'s' * (res.frames != 1)}"
    if res.interrupted:
        print(f"rtstyle: interrupted: {res.output} holds the first {what}"
              f"{f' of {res.total}' if res.total else ''} and is playable", file=sys.stderr)
        return EXIT_INTERRUPTED
    extra = ", audio copied" if res.audio else ""
    print(f"rtstyle: wrote {res.output} ({what}{extra}; {res.seconds:.1f} s, {rate:.1f} frames/s, "
          f"{stylizer.network.model}, {stylizer.engine_name} on {stylizer.device})", file=sys.stderr)
    return 0


def _add_styles(sub) -> None:
    p = sub.add_parser("styles", help="list the built-in styles or inspect a style image")
    p.add_argument("--inspect", metavar="IMAGE", help="describe an image (or built-in) used as a style")
    p.add_argument("--render", type=Path, metavar="DIR", help="write every built-in style as a PNG into DIR")
    p.add_argument("--size", type=int, default=512, help="size of rendered styles (default: %(default)s)")
    p.set_defaults(func=_run_styles)


def _run_styles(args) -> int:
    from realtime.images import read_image, write_image
    from realtime.styles import BUILTINS, DEFAULT_STYLE, describe_style, load_style_image

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
    p = sub.add_parser("doctor", help="report torch, CUDA, GPU, engines, encoders and weights")
    p.set_defaults(func=lambda args: __import__("realtime.doctor", fromlist=["main"]).main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    from realtime import bench, live, serve, train

    live.register_cli(sub)
    serve.register_cli(sub)
    train.register_cli(sub)
    bench.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:

    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="rtstyle: %(message)s", stream=sys.stderr)
    for name in ("realtime", "engines"):  # other libraries' INFO chatter stays hidden
        logging.getLogger(name).setLevel(level)
    from engines import EngineUnavailable

    try:
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
