"""The README's Python example runs as written, on the shipped model."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from realtime.images import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]


def test_the_python_example_in_the_readme_runs(tmp_path):
    (code,) = re.findall(r"## From Python\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    yy, xx = np.mgrid[0:120, 0:160]
    photo = np.stack([xx * 255 // 160, yy * 255 // 120, np.full_like(xx, 90)], -1).astype(np.uint8)
    write_image(tmp_path / "photo.jpg", photo)
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=300)
    out = read_image(tmp_path / "styled.png")
    assert out.shape == photo.shape and np.abs(out.astype(int) - photo).mean() > 5  # it did something
