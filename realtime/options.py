"""Command-line options that several sub-commands share, and what they build.

``add_model_args`` adds the model, weights and engine flags once (convert, live, serve, bench);
``open_stylizer`` checks the device and builds the one ``Stylizer`` they describe. The
sub-command modules import this one; it imports none of them.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from realtime import UserError

# the names of engines.ENGINES, kept here so `--help` needs no torch import
ENGINE_NAMES = ("eager", "compile", "tensorrt", "onnxruntime")
# the names of realtime.models.MODELS, kept here for the same reason (a test keeps them equal)
MODEL_NAMES = ("adain-cd16", "adain-vgg19")
DEFAULT_MODEL = MODEL_NAMES[0]


def opt(default=dataclasses.MISSING, help: str = "", **argparse_kw):
    """A config field with its command-line help (and any ``add_argument`` keyword: ``flags``,
    ``type``, ``choices``, ``metavar``, ``nargs``, ``const``, ``action``; ``cli_default`` when the
    parser's default must differ from the field's, as for ``action="append"``) in its metadata."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kw})


def add_config_args(p: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the config dataclass ``cls`` that has help metadata (``opt``):
    ``--field-name`` unless ``flags`` says otherwise (a bare name is positional); bools are
    ``--x/--no-x``, tuples take that many values (empty: one or more), other types are parsed
    with the default's type. The help shows the dataclass default, never a retyped one."""
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        kw = dict(f.metadata)
        help_text, flags = kw.pop("help"), kw.pop("flags", ("--" + f.name.replace("_", "-"),))
        positional = not flags[0].startswith("-")
        d = None if f.default is dataclasses.MISSING else f.default
        if not positional:
            kw["dest"] = f.name
            kw["default"] = kw.pop("cli_default", d)
            if "(default" not in help_text:
                help_text += " (default: %(default)s)"
        if isinstance(d, bool) and "action" not in kw:
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(d, tuple) and "nargs" not in kw:
            kw.setdefault("type", type(d[0]) if d else str)
            kw["nargs"] = len(d) or "+"
        elif d is not None and "type" not in kw and "action" not in kw and not isinstance(d, str):
            kw["type"] = type(d)
        p.add_argument(*flags, help=help_text, **kw)


def config_from_args(cls, args: argparse.Namespace, **overrides):
    """The config dataclass ``cls`` from parsed ``args`` (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**{**values, **overrides})


def max_side_arg(text: str) -> int | str:
    """``--max-side``: auto, full, or a whole number of pixels (range checked by the command)."""
    if text in ("auto", "full"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, full or a number of pixels, got {text!r}") from None


def add_model_args(p: argparse.ArgumentParser, *, engines: bool = True) -> None:
    p.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help=f"the network (see `rtstyle models`); default: the one --decoder was trained "
                        f"for, else {DEFAULT_MODEL}")
    p.add_argument("--decoder", type=Path, metavar="FILE",
                   help="decoder weights: an rtstyle .safetensors, or pytorch-AdaIN's decoder.pth "
                        "(then --vgg is required). Default: the model's shipped decoder")
    p.add_argument("--vgg", type=Path, metavar="FILE",
                   help="pytorch-AdaIN's vgg_normalised.pth, the encoder its decoder.pth belongs to "
                        "(implies --model adain-vgg19)")
    if engines:
        p.add_argument("--backend", default="auto", choices=("auto", *ENGINE_NAMES),
                       help="eager, compile, tensorrt, onnxruntime or auto (default: %(default)s, "
                            "which picks the fastest available and says which)")
        p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def check_device(device: str | None) -> None:
    """A CUDA device on a machine without one is a user error, not a traceback."""
    import torch

    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available here (see `rtstyle doctor`)")


def network_from_args(args: argparse.Namespace):
    """-> (encoder, decoder, NetworkInfo) for ``--model/--decoder/--vgg``."""
    from realtime.models import load_network

    return load_network(args.model, args.decoder, args.vgg)


def open_stylizer(args: argparse.Namespace):
    """The one path from arguments to a running ``Stylizer``: the device is checked, then the
    model that ``add_model_args``' flags name is loaded and handed to its engines."""
    from realtime.models import load_model

    check_device(getattr(args, "device", None))
    return load_model(args.model, decoder=args.decoder, vgg=args.vgg, backend=args.backend, device=args.device)
