"""The fake camera for browser tests: a Y4M clip that Chromium plays as its webcam.

Chromium reads it with ``--use-fake-device-for-media-stream
--use-file-for-fake-video-capture=PATH`` and loops it. Y4M is raw I420 (its ``C420``
variants), so the picture reaches the page without a codec in between. Written with PyAV.

Run it alone to make a clip by hand: ``python -m tests.fake_camera out.y4m``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np

from tests.media import gradient

WIDTH, HEIGHT, RATE, FRAMES = 320, 240, 10, 30


def camera_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Frame ``index`` of the clip: (H, W, 3) uint8 RGB, the tests' moving gradient with a
    white square sliding across it (something with edges and motion for the stylizer)."""
    rgb = gradient(index, width, height)
    side = height // 4
    x = (index * 7) % (width - side)
    y = height // 2 - side // 2
    rgb[y:y + side, x:x + side] = 245
    return rgb


def make_camera_clip(path: str | Path, *, width: int = WIDTH, height: int = HEIGHT,
                     frames: int = FRAMES, rate: int = RATE) -> Path:
    """Write ``frames`` frames of ``camera_frame`` as a Y4M (yuv420p) file and return its path.

    ``width`` and ``height`` must be even (4:2:0). 320x240 x 30 frames is about 3.5 MB.
    """
    if width % 2 or height % 2:
        raise ValueError(f"a 4:2:0 clip needs an even size, got {width}x{height}")
    path = Path(path)
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(camera_frame(i, width, height), format="rgb24")
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


if __name__ == "__main__":
    print(make_camera_clip(sys.argv[1] if len(sys.argv) > 1 else "fake_camera.y4m"))
