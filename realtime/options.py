"""Command-line options that several sub-commands share, and what they build.

``opt``/``add_config_args``/``config_from_args``: options generated from config dataclass
fields, their allowed ranges checked (``check_ranges``) before any work. ``add_model_args``
adds the model, weights and engine flags once (convert, live, serve, bench); ``open_stylizer``
checks the device and builds the one ``Stylizer`` they describe; ``thread_budget`` splits the
CPU cores between the stages. The sub-command modules import this one; it imports none of them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from realtime import UserError

# the names of engines.ENGINES, kept here so `--help` needs no torch import
ENGINE_NAMES = ("eager", "compile", "tensorrt", "onnxruntime")
# the names of realtime.models.MODELS, kept here for the same reason (a test keeps them equal)
MODEL_NAMES = ("adain-cd16", "adain-vgg19", "microast", "microast-tc")
DEFAULT_MODEL = "microast-tc"  # realtime.models.DEFAULT_MODEL (a test keeps them equal)


def opt(default=dataclasses.MISSING, help: str = "", **argparse_kw):
    """A config field with its command-line help (and any ``add_argument`` keyword: ``flags``,
    ``type``, ``choices``, ``metavar``, ``nargs``, ``const``, ``action``; ``cli_default`` when the
    parser's default must differ from the field's, as for ``action="append"``) in its metadata.
    ``range=(lo, hi)``: the allowed numbers, inclusive, None for no bound; the help states it
    and ``check_ranges`` enforces it (words such as ``auto`` are not numbers and pass)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kw})


def _range_text(lo, hi) -> str:
    return f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"


def flag_of(field: dataclasses.Field) -> str:
    """The option a config field is given with, as the user types it (its long form)."""
    flags = field.metadata.get("flags", ("--" + field.name.replace("_", "-"),))
    return next((f for f in flags if f.startswith("--")), flags[0])


def check_ranges(cfg) -> None:
    """Raise ``UserError`` naming the option when a field of the config ``cfg`` lies outside
    its ``range``."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if "range" not in f.metadata or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        lo, hi = f.metadata["range"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise UserError(f"{flag_of(f)} must be {_range_text(lo, hi)}, got {value}")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (its sub-command parsers too) whose options with an optional value
    (``nargs="?"`` with ``choices``) take the next word only when it is one of those choices:
    ``--preserve-color in.mp4`` is the bare flag followed by the input, not a bad choice that
    swallowed the input (plain argparse takes any word that does not start with ``-``)."""

    def parse_known_args(self, args=None, namespace=None):
        words = list(sys.argv[1:] if args is None else args)
        optional = {flag: a for a in self._actions if a.nargs == "?" and a.choices and a.option_strings
                    for flag in a.option_strings}
        end = words.index("--") if "--" in words else len(words)
        for i in range(end - 1):
            action = optional.get(words[i])
            if action is not None and not words[i + 1].startswith("-") and words[i + 1] not in action.choices:
                words[i] = f"{words[i]}={action.const}"
        return super().parse_known_args(words, namespace)


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
        if "range" in kw:
            help_text += f" ({_range_text(*kw.pop('range'))})"
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
    """The config dataclass ``cls`` from parsed ``args`` (lists become tuples), its ranges
    checked (``UserError`` naming the option)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    cfg = cls(**{**values, **overrides})
    check_ranges(cfg)
    return cfg


def max_side_arg(text: str) -> int | str:
    """``--max-side``: auto, full, or a whole number of pixels (its range is the field's)."""
    if text in ("auto", "full"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, full or a number of pixels, got {text!r}") from None


def check_frame_size(what: str, width: int, height: int, max_side: int | None) -> None:
    """Refuse, with the fix, a picture the network cannot take: it needs more than 8 pixels on
    each side at the size it runs (its encoder reflection-pads the 1/8-size features), so a
    tiny input, or a --max-side that shrinks a long thin one that far, is a ``UserError``."""
    from realtime.stylizer import MULTIPLE, compute_size

    h, w = compute_size(height, width, max_side)
    if min(h, w) > MULTIPLE:
        return
    if min(width, height) <= MULTIPLE:
        raise UserError(f"{what}: {width}x{height} pixels is too small to stylize: the network needs "
                        f"more than {MULTIPLE} pixels on each side")
    need = -(-(MULTIPLE + 1) * max(width, height) // min(width, height))
    raise UserError(f"{what}: at --max-side {max_side} the network would see {w}x{h} pixels, too few on "
                    f"the short side (more than {MULTIPLE} needed); use --max-side {need} or more")


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


def open_stylizer(args: argparse.Namespace):
    """The one path from arguments to a running ``Stylizer``: the device is checked, then the
    model that ``add_model_args``' flags name is loaded and handed to its engines."""
    from realtime.models import load_model

    check_device(getattr(args, "device", None))
    return load_model(args.model, decoder=args.decoder, vgg=args.vgg, backend=args.backend, device=args.device)


# --------------------------------------------------------------------------- threads
@dataclasses.dataclass(frozen=True)
class ThreadBudget:
    """Threads per stage, so that the stages running at once do not oversubscribe the cores:
    ``compute`` (torch's intra-op pool and OpenCV's: the stylizer and the smoother), ``decode``
    (FFmpeg's decoder) and ``encode`` (the video encoder's own pool, e.g. x264's)."""

    compute: int
    decode: int
    encode: int


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_budget(cores: int, device_type: str, codecs: bool = True) -> ThreadBudget:
    """Split ``cores`` between the stages. On a CPU the network is the work: it gets all but a
    quarter of the cores, rounded down (so every core on 2 or 3), and decode and encode get a
    quarter each (at least one thread each, so they overlap the network's on a small CPU: they
    are light, while one network thread of two made a 2-core conversion 1.5x slower;
    BENCHMARKS.md). Every core goes to the network when nothing is decoded or encoded
    (``codecs=False``: live from a camera to a window). On a GPU the CPU mostly decodes and
    encodes: compute and decode get a quarter each, encode the rest. Torch's default (every
    core) plus FFmpeg's and x264's defaults (about every core each) oversubscribe a small
    machine (BENCHMARKS.md has the measurement)."""
    quarter = max(1, cores // 4)
    if device_type == "cpu" and not codecs:
        return ThreadBudget(compute=cores, decode=1, encode=1)
    if device_type == "cpu":
        return ThreadBudget(compute=max(1, cores - cores // 4), decode=quarter, encode=quarter)
    return ThreadBudget(compute=quarter, decode=quarter, encode=max(1, cores - 2 * quarter))


@contextlib.contextmanager
def threads_applied(budget: ThreadBudget):
    """Lower torch's and OpenCV's thread counts to ``budget.compute`` while inside (never
    raise them: an ``OMP_NUM_THREADS`` the user set stands); restore them after. The codec
    counts are passed to the source and sink that use them."""
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(min(budget.compute, before[0]))
    cv2.setNumThreads(min(budget.compute, before[1]) if before[1] > 0 else budget.compute)
    try:
        yield budget
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
