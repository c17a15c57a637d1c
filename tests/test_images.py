"""realtime.images: every Pillow mode comes back as (H, W, 3) uint8 RGB with the right
values; bombs, bad files and failed writes give an ImageError naming the file."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realtime.images import ImageError, is_image_file, read_image, write_image


def _read_one(path: Path) -> np.ndarray:
    img = read_image(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.flags["C_CONTIGUOUS"]
    return img


def _row(img: np.ndarray) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in px) for px in img[0]]


# ----------------------------------------------------------------------------- modes


def test_rgb_png_round_trips_exactly(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.png")
    np.testing.assert_array_equal(_read_one(tmp_path / "a.png"), rgb)


def test_grey_and_bilevel(tmp_path):
    Image.fromarray(np.array([[0, 77, 255]], np.uint8), "L").save(tmp_path / "l.png")
    assert _row(_read_one(tmp_path / "l.png")) == [(0, 0, 0), (77, 77, 77), (255, 255, 255)]
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    bilevel.save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    assert _row(_read_one(tmp_path / "b.png")) == [(0, 0, 0), (255, 255, 255)]


@pytest.mark.parametrize("name,mode,data", [
    ("a.png", "I;16", np.array([[0, 32768, 65535]], np.uint16)),
    ("b.tif", "I;16B", np.array([[0, 32768, 65535]], ">u2")),
])
def test_16_bit_is_scaled_not_clipped(tmp_path, name, mode, data):
    Image.frombytes(mode, (3, 1), data.tobytes()).save(tmp_path / name)
    assert Image.open(tmp_path / name).mode == mode
    assert _row(_read_one(tmp_path / name)) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_16_bit_pgm(tmp_path):
    path = tmp_path / "a.pgm"
    path.write_bytes(b"P5\n3 1\n65535\n" + np.array([0, 32768, 65535], ">u2").tobytes())
    assert _row(_read_one(path)) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_mode_i_and_float(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert _row(_read_one(tmp_path / "i.tif")) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert _row(_read_one(tmp_path / "f.tif")) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_alpha_is_flattened_onto_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [255, 0, 0, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert _row(_read_one(tmp_path / "a.png")) == [(255, 0, 0), (255, 255, 255), (255, 127, 127)]
    la = np.array([[[100, 255], [100, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert _row(_read_one(tmp_path / "la.png")) == [(100, 100, 100), (255, 255, 255)]


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2])
    im.save(tmp_path / "p.png")
    assert _row(_read_one(tmp_path / "p.png")) == [(255, 0, 0), (0, 0, 255), (10, 200, 30)]
    im.save(tmp_path / "pt.png", transparency=1)
    assert Image.open(tmp_path / "pt.png").mode == "P"
    assert _row(_read_one(tmp_path / "pt.png")) == [(255, 0, 0), (255, 255, 255), (10, 200, 30)]


def test_cmyk_is_converted(tmp_path):
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 255, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)])
    im.save(tmp_path / "c.tif")
    assert _row(_read_one(tmp_path / "c.tif")) == [(255, 0, 0), (0, 0, 0), (255, 255, 255)]
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    r, g, b = _read_one(tmp_path / "c.jpg")[8, 8].astype(int)
    assert r > 230 and g < 30 and b < 30


@pytest.mark.parametrize("ext", ["gif", "webp"])
def test_animated_first_frame_as_rgb(tmp_path, ext):
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / f"anim.{ext}"
    extra = {"lossless": True} if ext == "webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 3
    img = _read_one(path)
    assert img.shape == (6, 8, 3)
    assert (img == np.array([255, 0, 0], np.uint8)).all()


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # H=20, W=40: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=98)
    img = _read_one(tmp_path / "o.jpg")
    assert img.shape == (40, 20, 3)
    top, bottom = img[5, 10].astype(int), img[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


# ----------------------------------------------------------------------------- refusals


def _png_with_declared_size(path: Path, width: int, height: int) -> None:
    """A tiny valid PNG whose IHDR (and its CRC) are patched to claim width x height."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("w,h,max_pixels,why", [
    (100_000, 100_000, 80_000_000, "100000x100000 = 10,000,000,000 pixels"),  # past Pillow's hard limit
    (10_000, 10_000, 80_000_000, "10000x10000 = 100,000,000 pixels"),  # Pillow's warning band
    (9_000, 9_000, 80_000_000, "9000x9000 = 81,000,000 pixels"),  # under Pillow's limit
])
def test_decompression_bomb_refused_quickly(tmp_path, w, h, max_pixels, why):
    path = tmp_path / "bomb.png"
    _png_with_declared_size(path, w, h)
    assert path.stat().st_size < 100
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match="bomb.png") as err:
        read_image(path, max_pixels=max_pixels)
    assert time.perf_counter() - t0 < 1.0
    assert why in str(err.value)


def test_max_pixels_is_checked_from_the_header(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"big\.png.*100x80.*max_pixels"):
        read_image(tmp_path / "big.png", max_pixels=5000)
    assert read_image(tmp_path / "big.png", max_pixels=8000).shape == (80, 100, 3)


def test_max_pixels_replaces_pillows_limit(tmp_path, monkeypatch):
    # Pillow refuses 2x its MAX_IMAGE_PIXELS outright (a 144 MP panorama by default); here a
    # small picture stands in for the panorama with the limit lowered to match
    Image.new("RGB", (400, 300), (200, 30, 30)).save(tmp_path / "pano.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    assert read_image(tmp_path / "pano.jpg").shape == (300, 400, 3)  # under our max_pixels
    assert Image.MAX_IMAGE_PIXELS == 50_000  # Pillow's own limit is back for everyone else


def test_a_jpeg_over_max_pixels_is_decoded_reduced(tmp_path):
    rgb = np.zeros((600, 800, 3), np.uint8)
    rgb[:, :400] = (250, 20, 20)
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    small = read_image(tmp_path / "big.jpg", max_pixels=100_000, reduce=True)
    assert small.shape == (150, 200, 3)  # 1/4: 1/2 would be 120,000 pixels
    assert np.abs(small[75, 50].astype(int) - (250, 20, 20)).max() < 12  # the picture, scaled
    with pytest.raises(ImageError, match=r"big\.jpg.*800x600.*max_pixels"):
        read_image(tmp_path / "big.jpg", max_pixels=100_000)  # reduce only when asked
    Image.fromarray(rgb).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"big\.png.*800x600.*--max-pixels"):
        read_image(tmp_path / "big.png", max_pixels=100_000, reduce=True)  # PNG cannot


def test_arrays_read_are_writable(tmp_path):
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").flags.writeable  # torch.from_numpy warns otherwise


def _truncated(tmp_path: Path, ext: str) -> Path:
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full.{ext}"
    Image.fromarray(rgb).save(full)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "text", "truncated_png", "truncated_jpg"])
def test_bad_inputs_name_the_file(tmp_path, case):
    if case == "missing":
        path = tmp_path / "nothere.png"
    elif case == "directory":
        path = tmp_path / "adir.png"
        path.mkdir()
    elif case == "empty":
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.png"
        path.write_text("this is not an image\n")
    else:
        path = _truncated(tmp_path, case.split("_")[1])
    with pytest.raises(ImageError, match=path.name):
        read_image(path)
    assert not is_image_file(path) or case.startswith("truncated")


# ----------------------------------------------------------------------------- writing


def _smooth_image(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], -1).astype(np.uint8)


@pytest.mark.parametrize("name,tol", [("o.png", 0), ("o.jpg", 3), ("o.JPEG", 3), ("o.webp", 4)])
def test_write_read_round_trip(tmp_path, name, tol):
    rgb = _smooth_image()
    write_image(tmp_path / name, rgb, quality=95)
    back = read_image(tmp_path / name)
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb).mean() <= tol
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_write_rejects_unknown_suffix_and_bad_arrays(tmp_path):
    with pytest.raises(ImageError, match=r"o\.bmp.*\.png"):
        write_image(tmp_path / "o.bmp", _smooth_image())
    with pytest.raises(ImageError, match=r"float32"):
        write_image(tmp_path / "o.png", _smooth_image().astype(np.float32))
    with pytest.raises(ImageError, match=r"\(48, 64\)"):
        write_image(tmp_path / "o.png", _smooth_image()[..., 0])
    with pytest.raises(ImageError, match="does not exist"):
        write_image(tmp_path / "no" / "o.png", _smooth_image())
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temp_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous contents")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageError, match=r"out\.png.*No space left"):
        write_image(target, _smooth_image())
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert target.read_bytes() == b"previous contents"


def test_is_image_file_sniffs_content_not_suffix(tmp_path):
    Image.fromarray(_smooth_image()).save(tmp_path / "really_png.txt", format="PNG")
    (tmp_path / "fake.jpg").write_text("hello")
    assert is_image_file(tmp_path / "really_png.txt")
    assert read_image(tmp_path / "really_png.txt").shape == (48, 64, 3)
    assert not is_image_file(tmp_path / "fake.jpg")
    assert not is_image_file(tmp_path / "missing.png")
    assert not is_image_file(tmp_path)
    _png_with_declared_size(tmp_path / "bomb.png", 100_000, 100_000)
    assert is_image_file(tmp_path / "bomb.png")  # an image; read_image says why it is refused
