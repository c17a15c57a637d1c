"""Converters from published checkpoints to this package's weight files (the project's own code).

``cd16``: the Collaborative Distillation 16x encoder/decoder pair (Wang et al., CVPR 2020; MIT,
github.com/MingSun-Tse/Collaborative-Distillation). Each checkpoint is ``{'model': state_dict,
'epoch': 20}`` with keys ``conv0`` (a 1x1 conv from [0, 1] RGB to what the distilled VGG
expects), ``conv11 .. conv41`` (3x3 convs, reflection padding, ReLU, 2x2 max pooling after
conv12, conv22 and conv34) and ``convXX_aux`` (1x1 projections to VGG widths, ReLU after);
the decoder's ``conv41 .. conv11`` run in that order, mirrored, every conv followed by a ReLU.
That is exactly ``Encoder``/``Decoder`` at ``Widths.scaled(4)``: ``conv0`` folds into
conv1_1 (``fold_affine_into_conv1_1``, exact with reflection padding) and the decoder's final
ReLU is a no-op before the [0, 1] clamp every caller applies.

    python -m realtime.converters cd16 ../shared/models/collab-distill-16x [--out realtime/assets]

writes ``cd16-encoder.safetensors`` and ``adain-cd16-recon.safetensors`` (the reconstruction
decoder, the starting point of ``rtstyle train --model adain-cd16``), fp16, with the sha256 of
each source file in the metadata.

``microast``: MicroAST (Wang et al., AAAI 2023; MIT, github.com/EndyWon/MicroAST), its four
state dicts converted by ``realtime.microast.load_microast``:

    python -m realtime.converters microast ../shared/models/microast   # -> microast.safetensors
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from realtime.model import ENCODER_CONVS, TAPS, Decoder, Encoder, Widths, aux_projections, fold_affine_into_conv1_1
from realtime.weights import CD16, WeightsError, _assign, _torch_load, save_decoder, save_encoder, sha256

CD16_WIDTHS = Widths.scaled(4)
CD16_ENCODER_FILE = "encoder_relu4_1.pth"
CD16_DECODER_FILE = "decoder_relu4_1.pth"
CD16_SOURCE = ("github.com/MingSun-Tse/Collaborative-Distillation@4a269dc90020721ef9b279b2926c62f5bcd6d209: "
               "trained_models/wct_se_16x_new/20191110-132643_E20.pth (encoder), "
               "trained_models/wct_se_16x_new_sd/20191111-092553_E20.pth (decoder)")
# pytorch-AdaIN-style decoder body: indices of the 3x3 convs in ``Decoder.body``, in order.
_DECODER_CONVS = ("conv41", "conv34", "conv33", "conv32", "conv31", "conv22", "conv21", "conv12", "conv11")


def _cd16_state(path: Path) -> dict:
    raw = _torch_load(Path(path))
    state = raw.get("model", raw)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected {{'model': state_dict}}")
    return {k: v.float() for k, v in state.items()}


def _key(name: str) -> str:
    """``conv1_1`` -> ``conv11`` (the published key names)."""
    return "conv" + name[4] + name[6]


def cd16_encoder(path: Path) -> tuple[Encoder, torch.nn.ModuleDict]:
    """The published distilled encoder -> (``Encoder`` at ``Widths.scaled(4)`` taking [0, 1] RGB
    with conv0 folded into conv1_1, its ``aux`` projections), fp32."""
    raw = _cd16_state(path)
    try:
        state = {f"convs.{n}.1.{p}": raw[f"{_key(n)}.{p}"] for n, _, _ in ENCODER_CONVS for p in ("weight", "bias")}
        a, c = raw["conv0.weight"][:, :, 0, 0], raw["conv0.bias"]
        aux_state = {f"{t}.{p}": raw[f"{_key(t)}_aux.{p}"] for t in TAPS for p in ("weight", "bias")}
    except KeyError as e:
        raise WeightsError(f"{path}: not the Collaborative Distillation 16x encoder (no {e.args[0]!r})") from e
    w, b = state["convs.conv1_1.1.weight"], state["convs.conv1_1.1.bias"]
    state["convs.conv1_1.1.weight"], state["convs.conv1_1.1.bias"] = fold_affine_into_conv1_1(w, b, a, c)
    enc, aux = Encoder(CD16_WIDTHS), aux_projections(CD16_WIDTHS)
    _assign(enc, state, Path(path))
    _assign(aux, aux_state, Path(path))
    return enc.eval(), aux.eval()


def cd16_decoder(path: Path) -> Decoder:
    """The published reconstruction decoder -> ``Decoder`` at ``Widths.scaled(4)``, fp32."""
    raw = _cd16_state(path)
    dec = Decoder(CD16_WIDTHS)
    convs = [i for i, m in enumerate(dec.body) if isinstance(m, torch.nn.Conv2d)]
    try:
        state = {f"{i}.{p}": raw[f"{k}.{p}"] for i, k in zip(convs, _DECODER_CONVS) for p in ("weight", "bias")}
    except KeyError as e:
        raise WeightsError(f"{path}: not the Collaborative Distillation 16x decoder (no {e.args[0]!r})") from e
    _assign(dec.body, state, Path(path))
    return dec.eval()


def write_cd16(src: Path, out: Path) -> tuple[Path, Path]:
    """Convert the published pair in ``src`` into ``out`` -> (encoder file, decoder file)."""
    enc_src, dec_src = Path(src) / CD16_ENCODER_FILE, Path(src) / CD16_DECODER_FILE
    enc, aux = cd16_encoder(enc_src)
    dec = cd16_decoder(dec_src)
    out = Path(out)
    enc_path, dec_path = out / "cd16-encoder.safetensors", out / "adain-cd16-recon.safetensors"
    prov = {"source": CD16_SOURCE, "licence": "MIT, Copyright (c) 2020 Huan Wang"}
    save_encoder(enc, enc_path, name=CD16, aux=aux, extra={**prov, "sha256": sha256(enc_src)})
    save_decoder(dec, dec_path, encoder=CD16,
                 extra={**prov, "sha256": sha256(dec_src), "trained": "image reconstruction (WCT), COCO 2014"})
    return enc_path, dec_path


def write_microast(src: Path, out: Path) -> tuple[Path]:
    """Convert the four published MicroAST state dicts in ``src`` -> (``microast.safetensors``,)."""
    from realtime.microast import load_microast, save_microast

    path = Path(out) / "microast.safetensors"
    save_microast(load_microast(Path(src)), path)
    return (path,)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m realtime.converters", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", choices=("cd16", "microast"), help="which published model")
    p.add_argument("src", type=Path, help="folder holding the published checkpoint files")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "assets",
                   help="where to write the fp16 safetensors (default: the package's assets)")
    args = p.parse_args(argv)
    try:
        for path in (write_cd16(args.src, args.out) if args.family == "cd16" else write_microast(args.src, args.out)):
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
