"""Command-line options that several sub-commands share, and what they build.

``add_model_args`` adds the model, weights and engine flags once (convert, live, serve, bench);
``stylizer_from_args`` checks the device and builds the one ``Stylizer`` they describe. The
sub-command modules import this one; it imports none of them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from realtime import UserError

# the names of engines.ENGINES, kept here so `--help` needs no torch import
ENGINE_NAMES = ("eager", "compile", "tensorrt", "onnxruntime")
# the names of realtime.models.MODELS, kept here for the same reason (a test keeps them equal)
MODEL_NAMES = ("adain-cd16", "adain-vgg19")
DEFAULT_MODEL = MODEL_NAMES[0]


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


def stylizer_from_args(args: argparse.Namespace):
    """The ``Stylizer`` that ``add_model_args``' flags describe (device checked first)."""
    from realtime.stylizer import Stylizer

    check_device(getattr(args, "device", None))
    encoder, decoder, info = network_from_args(args)
    return Stylizer(encoder, decoder, backend=args.backend, device=args.device, weights_id=info.digest,
                    network=info)
