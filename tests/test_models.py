"""The model registry, the distilled AdaIN's converter against the published reference outputs,
the shipped weight files, and pairing errors."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realtime.adain import mean_std
from realtime.cli import main
from realtime.converters import cd16_decoder, cd16_encoder, sha256
from realtime.model import Widths
from realtime.models import CD16_ENCODER, DEFAULT_MODEL, MODELS, describe, load_network
from realtime.weights import ASSETS, WeightsError, load_decoder, load_encoder_file

REPO = Path(__file__).resolve().parents[1]
CD16_SRC = REPO.parent / "shared" / "models" / "collab-distill-16x"
RECON = ASSETS / "adain-cd16-recon.safetensors"
PUBLISHED_SHA256 = {
    "encoder_relu4_1.pth": "d2f059cbcd6669556a43aadef58d20c8b280462c18b60a9e7424a14dd271cd6b",
    "decoder_relu4_1.pth": "902f65e2c6033d803d02df552eb898e5985190a7ae67d155e384826eec6f04cb",
}


@pytest.fixture(scope="module")
def published():
    if not CD16_SRC.is_dir():
        pytest.skip(f"published weights not found at {CD16_SRC}")
    enc, aux = cd16_encoder(CD16_SRC / "encoder_relu4_1.pth")
    dec = cd16_decoder(CD16_SRC / "decoder_relu4_1.pth")
    ref = torch.load(CD16_SRC / "reference_outputs.pt", map_location="cpu", weights_only=True)
    return enc, aux, dec, ref


def _unbiased_adain(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The reference output's AdaIN (torch's unbiased variance, eps 1e-5), written out here."""
    def stats(f):
        f = f.flatten(2)
        return f.mean(2)[..., None, None], (f.var(2, unbiased=True) + 1e-5).sqrt()[..., None, None]
    (mc, sc), (ms, ss) = stats(c), stats(s)
    return (c - mc) / sc * ss + ms


def test_published_files_are_the_ones_the_model_card_names():
    if not CD16_SRC.is_dir():
        pytest.skip(f"published weights not found at {CD16_SRC}")
    for name, digest in PUBLISHED_SHA256.items():
        assert sha256(CD16_SRC / name) == digest, name


def test_converted_encoder_matches_the_reference_features(published):
    enc, _, _, ref = published
    with torch.no_grad():
        for img, want in ((ref["content"], ref["relu4_1_content"]), (ref["style"], ref["relu4_1_style"])):
            got = enc.features(img)[0]
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_converted_decoder_matches_the_reference_reconstruction_and_adain(published):
    _, _, dec, ref = published
    with torch.no_grad():
        rec = F.relu(dec.decode_float(ref["relu4_1_content"]))  # the published decoder ends in a ReLU
        torch.testing.assert_close(rec, ref["reconstruction"], rtol=1e-5, atol=1e-5)
        t = _unbiased_adain(ref["relu4_1_content"], ref["relu4_1_style"])
        torch.testing.assert_close(F.relu(dec.decode_float(t)), ref["adain_alpha1_unbiased_var"], rtol=1e-5, atol=1e-5)


def test_shipped_fp16_files_are_the_converted_weights(published):
    enc, aux, dec, ref = published
    s_enc, s_aux, meta = load_encoder_file(CD16_ENCODER)
    s_dec, pair = load_decoder(RECON)
    assert pair == meta["name"] == "cd16" and meta["sha256"] == PUBLISHED_SHA256["encoder_relu4_1.pth"]
    for shipped, ours in ((s_enc, enc), (s_aux, aux), (s_dec, dec)):
        for (k, a), b in zip(ours.state_dict().items(), shipped.state_dict().values()):
            assert torch.equal(a.half().float(), b), k
    with torch.no_grad():  # fp16 storage costs little: the reconstruction stays within ~0.5 level
        rec = s_dec.decode_float(s_enc.features(ref["content"])[0]).clamp(0, 1)
        assert (rec - ref["reconstruction"].clamp(0, 1)).abs().mean() < 2e-3


def test_the_default_model_loads_with_no_arguments_and_stylizes_more_than_the_reconstruction_decoder():
    """No weights argument: the shipped distilled pair. Its fine-tuned decoder must carry the
    style's relu4_1 statistics into the picture much better than the published reconstruction
    decoder does (which is why it was fine-tuned)."""
    from realtime.adain import adain
    from realtime.styles import load_style_image

    enc, dec, info = load_network()
    assert info.model == "adain-cd16" and info.pair == "cd16" and enc.widths == dec.widths == Widths.scaled(4)
    assert Path(info.encoder_source) == CD16_ENCODER and len(info.encoder_digest) == 16
    recon, _ = load_decoder(RECON)
    content = torch.from_numpy(load_style_image("waves", 128))[None]  # a picture, used as content here
    style = torch.from_numpy(load_style_image("mosaic", 128))[None]
    dist = lambda a, b: sum((x - y).norm() for x, y in zip(mean_std(a), mean_std(b)))  # noqa: E731
    with torch.no_grad():
        fc, fs = enc(content), enc(style)
        t = adain(fc, *mean_std(fs))
        out, out_recon = dec(t), recon.eval()(t)
        d_ours, d_recon = dist(enc(out), fs), dist(enc(out_recon), fs)
    assert d_ours < dist(fc, fs) and d_ours < 0.8 * d_recon
    assert out.float().std() > 20  # a picture, not a flat field


def test_pairing_errors_name_the_fix(tmp_path, test_decoder_file):
    with pytest.raises(WeightsError, match="--model adain-vgg19"):
        load_network("adain-cd16", test_decoder_file)  # a full-width VGG decoder
    with pytest.raises(WeightsError, match="--model adain-cd16"):
        load_network("adain-vgg19", RECON)
    with pytest.raises(WeightsError, match="drop --vgg"):
        load_network(None, RECON, tmp_path / "vgg_normalised.pth")
    with pytest.raises(WeightsError, match="unknown model"):
        load_network("adain-tiny")
    _, _, info = load_network(None, test_decoder_file)  # the decoder says which model it is
    assert info.model == "adain-vgg19"


def test_style_codes_are_keyed_by_the_encoder_alone(test_decoder_file):
    a = load_network("adain-cd16")[2]
    b = load_network("adain-cd16", RECON)[2]
    assert a.encoder_digest == b.encoder_digest and a.digest != b.digest


def test_models_command_lists_size_cost_files_licence_and_source(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out
    assert f"{DEFAULT_MODEL} (default)" in out and "MIT" in out and "Collaborative Distillation" in out
    cd16, full = describe("adain-cd16"), describe("adain-vgg19")
    ratio = float(full["flops/pixel"].split()[0]) / float(cd16["flops/pixel"].split()[0])
    assert 15 < ratio < 17  # a quarter of the channels: ~16x fewer FLOPs


@pytest.mark.slow
def test_the_wheel_carries_the_weights_the_model_card_and_the_licences(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("rtstyle-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("cd16-encoder.safetensors", "adain-cd16.safetensors", "adain-cd16-recon.safetensors",
              "microast.safetensors", "microast-tc.safetensors", "vgg19-feature-scales.safetensors", "MODEL_CARD.md",
              "LICENSE-collaborative-distillation.txt", "LICENSE-microast.txt"):
        assert f"realtime/assets/{f}" in names, f
    card = zipfile.ZipFile(wheel).read("realtime/assets/MODEL_CARD.md").decode()
    assert "Copyright (c) 2020 Huan Wang" in card and "Copyright (c) 2022 Zhizhong Wang" in card
    assert "@" not in card.replace("@4a269dc", "")  # no placeholder left
    assert np.all([h in card for h in PUBLISHED_SHA256.values()])


def test_opening_the_default_network_imports_nothing_heavy():
    """Start-up is part of every conversion: building the frame modules once imported sympy
    through ``nn.utils.skip_init`` (0.4 s of a 2.3 s start). Checked in a fresh interpreter."""
    code = ("import sys, torch\n"
            "before = 'sympy' in sys.modules\n"
            "from realtime.models import open_network\n"
            "open_network()\n"
            "print(before, 'sympy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[0] == "True":
        pytest.skip("this torch imports sympy by itself")
    assert out[1] == "False", "opening the default network imported sympy (start-up cost)"
