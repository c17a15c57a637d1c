"""Small test clips written with PyAV into a caller's folder (usually pytest's tmp_path).

Plain functions, not fixtures, so any test module can import them:
``from tests.media import make_clip, read_back``. Everything is synthetic and tiny
(64x48, a dozen frames): writing a clip costs a few milliseconds of CPU.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_RATE = 44100


def gradient(index: int, width: int, height: int) -> np.ndarray:
    """The picture of frame `index`: (H, W, 3) uint8 RGB, smooth and moving.

    Red ramps left to right and slides with the frame index, green ramps top to bottom,
    blue is a per-frame constant; smooth content so lossy codecs keep it (PSNR well above 30).
    """
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    red = 40 + 170 * ((x + 0.05 * index) % 1.0) * np.ones_like(y)
    green = 30 + 190 * y * np.ones_like(x)
    blue = np.full((height, width), 60 + (7 * index) % 120, np.float32)
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def make_clip(
    path: str | Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 12,
    rate: int = 25,
    vfr_pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    audio: bool = False,
    color: tuple[int, int, int] | None = None,
    codec: str = "libx264",
    metadata: dict[str, str] | None = None,
    audio_language: str | None = None,
    gop: int | None = None,
    preset: str = "ultrafast",
) -> Path:
    """Write a clip of `frames` frames (`gradient`, or solid RGB `color`) and return its path.

    width and height must be even (libx264 yuv420p). vfr_pts: explicit pts per frame in
    `time_base` units (default time_base 1/1000), for variable frame rate; otherwise
    pts = index in 1/rate. rotation: counter-clockwise degrees stored as the stream's display
    matrix, the value `VideoFrame.rotation` reads back (a phone held upright writes -90,
    which `VideoFileSource.rotation` reports as 270). audio: an AAC sine track as long as
    the video, tagged with `audio_language` (e.g. "eng") when given. gop: a keyframe every
    `gop` frames (libx264; default: the encoder's own, one for a short clip); preset: the
    libx264 preset (ultrafast has no B-frames, the others have).
    """
    path = Path(path)
    if vfr_pts is not None:
        frames = len(vfr_pts)
        time_base = time_base or Fraction(1, 1000)
    tb = time_base or Fraction(1, rate)
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        fast = {"preset": preset} if codec == "libx264" else {}
        if gop and codec == "libx264":
            fast.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
        video = out.add_stream(codec, rate=rate, options=fast)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = tb
        if rotation:
            video.set_display_rotation(rotation)
        sound = _add_audio(out) if audio else None
        if sound is not None and audio_language:
            sound.metadata["language"] = audio_language
        for i in range(frames):
            rgb = gradient(i, width, height) if color is None else _solid(color, width, height)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = vfr_pts[i] if vfr_pts is not None else round(Fraction(i, rate) / tb)
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            end = (vfr_pts[-1] * tb + Fraction(1, rate)) if vfr_pts else Fraction(frames, rate)
            _write_sine(out, sound, seconds=end)
    return path


def _solid(color: tuple[int, int, int], width: int, height: int) -> np.ndarray:
    return np.broadcast_to(np.array(color, np.uint8), (height, width, 3)).copy()


def _add_audio(out: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    sound = out.add_stream("aac", rate=AUDIO_RATE)
    sound.layout = "mono"
    return sound


def _write_sine(out, sound, *, seconds: Fraction) -> None:
    total = int(seconds * AUDIO_RATE)
    t = np.arange(total, dtype=np.float32) / AUDIO_RATE
    wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    for start in range(0, total, 1024):
        chunk = wave[None, start:start + 1024]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
        out.mux(sound.encode(frame))
    out.mux(sound.encode(None))


def make_audio_only(path: str | Path, seconds: float = 0.5) -> Path:
    """An .mp4 with one AAC track and no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_sine(out, _add_audio(out), seconds=Fraction(seconds))
    return path


def make_not_video(path: str | Path, size: int = 4096) -> Path:
    """Random bytes under a media-looking name (e.g. clip.mp4)."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def make_truncated(path_in: str | Path, path_out: str | Path, keep: float = 0.5) -> Path:
    """A copy of `path_in` cut off after `keep` of its bytes, like a download that stopped.

    The packets are first remuxed (no re-encode) into an mp4 with its index at the front
    (`movflags=faststart`), so the cut file still opens and its first frames decode; a cut
    plain mp4 has lost its index and does not open at all.
    """
    path_out = Path(path_out)
    with av.open(os.fspath(path_in)) as inp, av.open(str(path_out), "w", format="mp4",
                                                    options={"movflags": "faststart"}) as out:
        video = inp.streams.video[0]
        copy = out.add_stream_from_template(video)
        for packet in inp.demux(video):
            if packet.size:
                packet.stream = copy
                out.mux(packet)
    data = path_out.read_bytes()
    path_out.write_bytes(data[: int(len(data) * keep)])
    return path_out


def read_back(path: str | Path, *, pixels: bool = True) -> dict:
    """Decode a file fully; return what tests assert on.

    Keys: frames, pts (list), time_base, times (pts * time_base as Fractions), duration
    (seconds, float or None), width, height, rotation (of the first frame), pixels (list of
    (H, W, 3) uint8 RGB as stored, not rotated; empty unless `pixels`), audio_packets
    (payload bytes, in order), audio_times (packet pts * time_base), metadata (tags).
    """
    with av.open(os.fspath(path)) as inp:
        info: dict = {"metadata": dict(inp.metadata), "audio_packets": [], "audio_times": []}
        info["duration"] = inp.duration / av.time_base if inp.duration else None
        video = inp.streams.video[0] if inp.streams.video else None
        info.update(pts=[], times=[], pixels=[], rotation=0, time_base=None, width=None,
                    height=None)
        if video is not None:
            info.update(time_base=video.time_base, width=video.codec_context.width,
                        height=video.codec_context.height)
            for i, frame in enumerate(inp.decode(video)):
                if i == 0:
                    info["rotation"] = frame.rotation
                info["pts"].append(frame.pts)
                info["times"].append(frame.pts * frame.time_base)
                if pixels:
                    info["pixels"].append(frame.to_ndarray(format="rgb24"))
        info["frames"] = len(info["pts"])
    with av.open(os.fspath(path)) as inp:
        for packet in inp.demux(audio=0) if inp.streams.audio else ():
            if packet.size:
                info["audio_packets"].append(bytes(packet))
                info["audio_times"].append(packet.pts * packet.time_base)
    return info


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images of the same shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def kill_when_written(code: str, *args: str, cwd: Path) -> None:
    """Run ``python -c code args`` until it prints "written", then SIGKILL it, as a crash or
    the OOM killer would (nothing of its own cleanup runs)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.kill()
        proc.wait(10)
