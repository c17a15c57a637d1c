"""realtime.color: luminance-only keeps the stylized luma and the content's chroma;
match_color gives the style the content's RGB mean and covariance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import missing_shared_data
from realtime.color import color_transfer_matrix, luminance_only, match_color
from realtime.styles import BUILTINS, load_style_image

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
W = np.array([0.299, 0.587, 0.114])


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ W


def _rand(shape, lo, hi, seed):
    return torch.from_numpy(np.random.default_rng(seed).integers(lo, hi, shape, dtype=np.uint8))


@pytest.mark.parametrize("device", DEVICES)
def test_luma_from_stylized_chroma_from_content_uint8(device):
    # Moderate values so no channel is clamped and the decomposition is exact up to rounding.
    stylized = _rand((2, 8, 8, 3), 100, 160, 0).to(device)
    content = _rand((2, 8, 8, 3), 70, 190, 1).to(device)
    out = luminance_only(stylized, content)
    assert out.dtype == torch.uint8 and out.shape == content.shape and out.device == content.device
    o, s, c = (t.cpu().numpy().astype(np.float64) for t in (out, stylized, content))
    np.testing.assert_allclose(_luma(o), _luma(s), atol=0.6)
    for ch in (0, 2):  # R - Y and B - Y carry the chroma
        np.testing.assert_allclose(o[..., ch] - _luma(o), c[..., ch] - _luma(c), atol=1.2)


def test_float_input_keeps_dtype_and_range():
    stylized = _rand((1, 6, 6, 3), 100, 160, 2).float() / 255
    content = _rand((1, 6, 6, 3), 70, 190, 3).float() / 255
    out = luminance_only(stylized, content)
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    o, s, c = (t.numpy().astype(np.float64) for t in (out, stylized, content))
    np.testing.assert_allclose(_luma(o), _luma(s), atol=1e-5)
    np.testing.assert_allclose(o[..., 0] - _luma(o), c[..., 0] - _luma(c), atol=1e-5)
    half = luminance_only(stylized.half(), content.half())
    assert half.dtype == torch.float16


def test_grey_content_gives_exactly_grey_output():
    stylized = _rand((3, 16, 16, 3), 0, 256, 4)
    content = _rand((3, 16, 16, 1), 0, 256, 5).expand(3, 16, 16, 3).contiguous()
    out = luminance_only(stylized, content)
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 1], out[..., 2])
    expected = np.clip(np.floor(_luma(stylized.numpy()) + 0.5), 0, 255)
    np.testing.assert_allclose(out[..., 0].numpy(), expected, atol=1)


def test_red_content_makes_grey_stylized_reddish_and_red_stays_red():
    grey = torch.full((1, 4, 4, 3), 128, dtype=torch.uint8)
    red = torch.zeros_like(grey)
    red[..., 0] = 255
    out = luminance_only(grey, red)[0, 0, 0].tolist()
    assert out[0] > 200 and out[1] == out[2] and out[1] < 80, out
    assert luminance_only(red, red)[0, 0, 0].tolist() == [255, 0, 0]


def test_same_image_is_a_fixed_point():
    x = _rand((2, 9, 7, 3), 0, 256, 6)
    assert (luminance_only(x, x).int() - x.int()).abs().max() <= 1


def test_luminance_only_errors_show_the_values():
    a = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"\(1, 4, 4, 3\).*\(1, 4, 5, 3\)"):
        luminance_only(a, torch.zeros(1, 4, 5, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="torch.uint8.*torch.float32"):
        luminance_only(a, a.float())
    with pytest.raises(ValueError, match=r"\(1, 4, 4, 4\)"):
        luminance_only(torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, 4))


def _mean_cov(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = img.reshape(-1, 3).astype(np.float64)
    return x.mean(0), np.cov(x, rowvar=False, bias=True)


def test_color_transfer_matrix_is_exact_before_clipping():
    rng = np.random.default_rng(7)
    # well-conditioned (the regularization is at 8-bit quantization-noise level, ~1e-6)
    mix_s, mix_c = np.eye(3) + 0.4 * rng.normal(size=(3, 3)), np.eye(3) + 0.4 * rng.normal(size=(3, 3))
    style = torch.from_numpy(rng.normal(size=(5000, 3)) @ mix_s * 0.1 + 0.4)
    content = torch.from_numpy(rng.normal(size=(3000, 3)) @ mix_c * 0.05 + 0.6)
    a, b = color_transfer_matrix(style, content)
    mapped = (style @ a.T + b).numpy()
    np.testing.assert_allclose(mapped.mean(0), content.numpy().mean(0), atol=1e-9)
    np.testing.assert_allclose(np.cov(mapped, rowvar=False, bias=True),
                               np.cov(content.numpy(), rowvar=False, bias=True), atol=1e-5)


@pytest.mark.parametrize("style_name,content_name", [
    ("ember", "mosaic"), ("pointillism", "mosaic"), ("hatching", "ink"),
])
def test_match_color_matches_mean_and_covariance(style_name, content_name):
    style, content = BUILTINS[style_name](128), BUILTINS[content_name](96)
    out = match_color(style, content)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == style.shape
    (mo, co), (mc, cc), (_, cs) = _mean_cov(out), _mean_cov(content), _mean_cov(style)
    assert np.linalg.norm(cs - cc) / np.linalg.norm(cc) > 0.3  # it really had to change
    np.testing.assert_allclose(mo, mc, atol=1.0)
    err = np.linalg.norm(co - cc) / np.linalg.norm(cc)
    assert err < 0.03, f"covariance off by {err:.3f}"


def test_match_color_on_a_real_artwork_and_photo(shared_data):
    style_path = shared_data / "styles" / "adain__la_muse.jpg"
    content_path = shared_data / "content" / "adain__sailboat.jpg"
    if not (style_path.is_file() and content_path.is_file()):
        missing_shared_data(f"{style_path.name} or {content_path.name} in {shared_data}")
    style = load_style_image(style_path, 256)
    content = load_style_image(content_path, 256)
    out = match_color(style, content)
    (mo, co), (mc, cc), (_, cs) = _mean_cov(out), _mean_cov(content), _mean_cov(style)
    # About 5 % of the pixels clip here, so the match is close, not exact.
    np.testing.assert_allclose(mo, mc, atol=3.0)
    err, before = (np.linalg.norm(x - cc) / np.linalg.norm(cc) for x in (co, cs))
    assert err < 0.08 and err < before / 4, (err, before)


@pytest.mark.parametrize("device", DEVICES)
def test_match_color_torch_and_fixed_point(device):
    x = BUILTINS["pointillism"](64)
    t = match_color(torch.from_numpy(x).to(device), torch.from_numpy(x).to(device))
    assert isinstance(t, torch.Tensor) and t.device.type == device and t.dtype == torch.uint8
    assert np.abs(t.cpu().numpy().astype(int) - x).max() <= 1


def test_match_color_flat_style_does_not_blow_up():
    flat = np.full((32, 32, 3), 90, np.uint8)
    content = BUILTINS["mosaic"](64)
    out = match_color(flat, content)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), content.reshape(-1, 3).mean(0), atol=1.0)
    with pytest.raises(ValueError, match=r"float32 \(4, 4, 3\)"):
        match_color(np.zeros((4, 4, 3), np.float32), content)
