"""The stylizer: encoder engine -> AdaIN (plain torch, fp32 statistics) -> decoder engine.

It owns the two engines only. A stream's style, strength and colour preservation are a small
``StyleSettings`` value passed with each call: changing them never rebuilds an engine, and
streams that share the engines never share settings.
"""
from __future__ import annotations

import copy
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import engines
from realtime import heap, tuning
from realtime.adain import StyleCode, adain, mean_std
from realtime.color import luminance_only
from realtime.frames import check_rgb
from realtime.model import Decoder, Encoder
from realtime.styles import CodeCache, code_folder, encode_spec, encode_style, parse_style_arg

log = logging.getLogger(__name__)

MULTIPLE = 8  # the encoder downsamples by 8; frames are reflect-padded to a multiple of it


def _reflect_index(n: int, padded: int, device) -> torch.Tensor:
    """Indices that reflect-pad a length-``n`` axis to ``padded`` (no edge repeat)."""
    idx = torch.arange(padded, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx % period
    return torch.where(idx < n, idx, period - idx)


def pad_to_multiple(frames: torch.Tensor, multiple: int = MULTIPLE) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H', W', 3) with H', W' multiples of ``multiple``, reflect-padded
    at the bottom/right (works on integer tensors, unlike F.pad's reflect mode)."""
    _, h, w, _ = frames.shape
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) == (h, w):
        return frames
    frames = frames[:, _reflect_index(h, ph, frames.device)]
    return frames[:, :, _reflect_index(w, pw, frames.device)]


def resize_u8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, h, w, 3) uint8 RGB; antialiased when shrinking. On the CPU
    OpenCV resizes the uint8 pixels directly (area when shrinking, bicubic when enlarging): no
    float copy of a full-size frame, which for a 48-megapixel photo is 0.6 GB."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    if frames.device.type == "cpu":
        h, w = size
        interp = cv2.INTER_AREA if h < frames.shape[1] else cv2.INTER_CUBIC
        return torch.from_numpy(np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames.numpy()]))
    x = frames.permute(0, 3, 1, 2).float()
    shrink = size[0] < frames.shape[1]
    x = F.interpolate(x, size=size, mode="bilinear" if shrink else "bicubic", antialias=shrink, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# The network's longer side when the user does not choose (``--max-side auto``): on a CPU, file
# conversion of videos at 640 (Big Buck Bunny's 720p in about 30 s on 2 cores), photos at 1280,
# live frames at 320 (latency first); on a GPU, full size. Measured in BENCHMARKS.md.
CPU_MAX_SIDE = {"video": 640, "image": 1280, "live": 320}
MIN_SIDE = 16  # below this the encoder's reflection padding has nothing to reflect by relu4_1


def resolve_max_side(max_side: int | str | None, device: torch.device, kind: str = "video") -> int | None:
    """``"auto"`` -> the device's default for ``kind`` ("video", "image", "live"); ``"full"``/None ->
    None (full size); an int >= ``MIN_SIDE`` as is."""
    if max_side == "auto":
        return CPU_MAX_SIDE[kind] if torch.device(device).type == "cpu" else None
    if max_side in ("full", None):
        return None
    if int(max_side) < MIN_SIDE:
        raise ValueError(f"--max-side must be auto, full or at least {MIN_SIDE}, got {max_side}")
    return int(max_side)


def compute_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The size the network runs at: the frame's, or shrunk so its longer side is ``max_side``."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    s = max_side / max(height, width)
    return max(MULTIPLE, round(height * s)), max(MULTIPLE, round(width * s))


@dataclass(frozen=True)
class StyleSettings:
    """What one stream (a file, a camera, a visitor) asks of the shared ``Stylizer``, passed
    with every call: the style ``code``, its strength ``alpha`` in [0, 1], whether to keep the
    content's colours (``preserve_color``: luminance only) and an optional ``stats_filter``,
    (mean, std) (N, C) float32 -> (mean, std), the stream's temporal filter of the content
    statistics at the AdaIN step (``TemporalSmoother.stats_filter``). Cheap to make; change one
    field with ``dataclasses.replace``."""

    code: StyleCode
    alpha: float = 1.0
    preserve_color: bool = False
    stats_filter: Callable | None = None

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class Prepared:
    """A batch on its way through the stages: the original frames on the stylizer's device,
    ``padded`` (the network's input) and ``size``, the (h, w) the network's output is cut to."""

    frames: torch.Tensor
    padded: torch.Tensor
    size: tuple[int, int]


class AdaINStyleEncoder:
    """(H, W, 3) uint8 RGB style image -> its ``StyleCode``: an fp32 copy of the encoder, run
    once per style (``realtime.styles.encode_style``)."""

    code_type = StyleCode

    def __init__(self, encoder: Encoder):
        self.encoder = copy.deepcopy(encoder).float().eval()

    def to(self, device) -> "AdaINStyleEncoder":
        self.encoder.to(device)
        return self

    def __call__(self, rgb: np.ndarray) -> StyleCode:
        return encode_style(self.encoder, rgb)


class AdaINRestyle:
    """The AdaIN style step: the decoder takes AdaIN(features, code), statistics fp32 and
    through the settings' ``stats_filter``; ``alpha`` blends in feature space."""

    alpha_in_image = False

    @staticmethod
    def decoder_inputs(feats: torch.Tensor, settings: StyleSettings) -> tuple[torch.Tensor, ...]:
        f = settings.stats_filter
        stats = f(*mean_std(feats)) if f is not None else None
        code = settings.code.to(feats.device)
        return (adain(feats, code.mean, code.std, settings.alpha, content_stats=stats),)


class Stylizer:
    """The two engines (encoder, decoder), shared by every stream that uses it.

    ``encoder``/``decoder``: fp32 CPU modules (see ``realtime.models.load_network``).
    ``backend``/``device``/``precision`` go to ``engines.build``; ``weights_id`` keys its cache.
    ``network``: the ``NetworkInfo`` they came with (model name, digests), when known.
    ``style_encoder`` (style image -> code) and ``restyle`` (features + settings -> the decoder's
    inputs) make it an AdaIN stylizer by default; ``realtime.models.open_network`` gives the
    right ones for each model family (``Stylizer.from_network``).

    Per-stream settings are a ``StyleSettings`` passed with each call, so switching style
    never rebuilds an engine and two streams never share state. The stages are public and
    ``__call__`` is their composition: ``prepare`` (resize, pad) -> ``encode`` -> ``restyle``
    (AdaIN, fp32 statistics) -> ``decode`` -> ``finish`` (crop, resize back, colour, to the CPU).
    Engines are built on the first ``encode`` (or ``warm_up``), once, thread-safely.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        *,
        backend: str = "auto",
        device: str | torch.device | None = None,
        precision: str | None = None,
        weights_id: str = "",
        network=None,
        style_encoder=None,
        restyle=None,
    ):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            heap.keep_freed_memory()  # no page faults per frame (realtime/heap.py)
        self.backend, self.precision, self.weights_id = backend, precision, weights_id
        self.network = network
        # Style images are encoded once per style, in fp32, by an eager copy.
        self._style_encoder = (style_encoder or AdaINStyleEncoder(encoder)).to(self.device)
        self.code_type = self._style_encoder.code_type
        self._restyle = restyle or AdaINRestyle()
        self._encoder, self._decoder = encoder, decoder
        self.encoder_engine = self.decoder_engine = None
        self._lock = threading.Lock()

    @classmethod
    def from_network(cls, net, **engine_options) -> "Stylizer":
        """A stylizer for a ``realtime.models.Network`` (any model family); ``engine_options``:
        backend, device, precision."""
        info = net.info
        return cls(net.encoder, net.decoder, weights_id=info.digest if info else "", network=info,
                   style_encoder=net.style_encoder, restyle=net.restyle, **engine_options)

    @property
    def engine_name(self) -> str | None:
        return self.encoder_engine.name if self.encoder_engine is not None else None

    @property
    def engine_label(self) -> str | None:
        """What runs, for people: backend and precision, e.g. "eager bf16"."""
        e, d = self.encoder_engine, self.decoder_engine
        if e is None:
            return None
        pe, pd = engines.precision_name(e.dtype), engines.precision_name(d.dtype)
        return f"{e.name} {pe}" if pe == pd else f"{e.name} {pe}/{pd}"

    def encode_style(self, rgb: np.ndarray):
        """(H, W, 3) uint8 RGB style image -> its code (``self.code_type``: a ``StyleCode`` for
        AdaIN; fp32, on the stylizer's device)."""
        return self._style_encoder(rgb).to(self.device)

    def encode_spec(self, arg: str, reference: np.ndarray | None = None):
        """A ``--style`` argument ("name", "path", "a,b:0.3") -> its mixed ``StyleCode`` on the
        stylizer's device; ``reference`` recolours the style images to that content first.
        Each entry's code is kept on disk (``code_cache``) and read from there next time, so a
        start does not draw and encode the same style again (BENCHMARKS.md: 0.11 s of a 1.55 s
        start on 2 cores)."""
        spec = parse_style_arg(arg)
        return encode_spec(self._style_encoder, spec, reference=reference, cache=self.code_cache()).to(self.device)

    def code_cache(self) -> CodeCache | None:
        """The disk cache of this encoder's style codes; None when its weights are unknown."""
        folder = code_folder(self.network.encoder_digest if self.network is not None else None)
        return CodeCache(folder, self.code_type) if folder is not None else None

    def _build_pair(self, padded: torch.Tensor, backend: str, precision: str | None):
        """Both engines of one variant -> (encoder engine, decoder engine, example settings).
        ``precision`` "A,B" gives the encoder A and the decoder B (e.g. "bf16,fp32")."""
        p_enc, _, p_dec = (precision or "").partition(",")
        enc = engines.build(self._encoder, (padded,), backend, device=self.device,
                            precision=p_enc or None, weights_id=self.weights_id + ":enc")
        feats = enc(padded.to(enc.device)).to(self.device)
        settings = StyleSettings(self._example_code())
        dec = engines.build(self._decoder, self._restyle.decoder_inputs(feats, settings), enc.name,
                            device=self.device, precision=(p_dec or p_enc) or None,
                            weights_id=self.weights_id + ":dec")
        return enc, dec, settings

    def _build(self, padded: torch.Tensor) -> None:
        with self._lock:
            if self.decoder_engine is not None:
                return
            backend, precision = self.backend, self.precision
            built = {}
            if backend == "auto" and self.device.type == "cpu" and precision is None:
                @functools.cache  # only when the choice is measured, not when it is remembered
                def calibration() -> tuple[torch.Tensor, StyleSettings]:
                    probe = tuning.calibration_frame(padded.shape[1], padded.shape[2]).to(self.device)
                    return probe, StyleSettings(self._example_code(tuning.calibration_style()))

                def run_with(b: str, p: str):  # the measured CPU choice (realtime.tuning)
                    probe, settings = calibration()
                    enc, dec, _ = built[b, p] = self._build_pair(padded, b, p)
                    return lambda: dec(*(t.to(dec.dtype) for t in self._restyle.decoder_inputs(
                        enc(probe.to(enc.device)).to(self.device), settings)))

                backend, precision = tuning.choose(run_with, self.weights_id, tuple(padded.shape))
            pair = built.get((backend, precision)) or self._build_pair(padded, backend, precision)
            self.encoder_engine, self.decoder_engine = pair[0], pair[1]
            log.debug("stylizer: %s engines on %s", self.engine_label, self.device)

    def _example_code(self, rgb: np.ndarray | None = None):
        """A code to build the decoder engine with (its values do not matter, only its shapes)."""
        grey = np.full((64, 64, 3), 128, np.uint8) if rgb is None else rgb
        return self._style_encoder(grey).to(self.device)

    def warm_up(self, height: int, width: int, max_side: int | None = None) -> None:
        """Build the engines (and their per-shape state) for frames of this size, before anyone waits."""
        settings = StyleSettings(self._example_code())
        with torch.inference_mode():
            batch = self.prepare(torch.zeros((1, height, width, 3), dtype=torch.uint8), max_side)
            self.decode(self.restyle(self.encode(batch.padded), settings))

    # ------------------------------------------------------------------ the stages
    def prepare(self, frames: torch.Tensor, max_side: int | None = None) -> Prepared:
        """(N, H, W, 3) uint8 RGB, any device -> on the device, shrunk to ``max_side``, padded to
        a multiple of 8."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}")
        frames = frames.to(self.device, non_blocking=True)
        small = resize_u8(frames, compute_size(frames.shape[1], frames.shape[2], max_side))
        return Prepared(frames, pad_to_multiple(small), tuple(small.shape[1:3]))

    def encode(self, padded: torch.Tensor) -> torch.Tensor:
        """The network's input -> relu4_1 features on the stylizer's device (engine dtype)."""
        if self.decoder_engine is None:
            self._build(padded)
        return self.encoder_engine(padded.to(self.encoder_engine.device)).to(self.device)

    def restyle(self, feats: torch.Tensor, settings: StyleSettings) -> tuple[torch.Tensor, ...]:
        """Features + the settings' style -> the decoder's inputs (AdaIN: statistics fp32,
        through the settings' ``stats_filter``)."""
        return self._restyle.decoder_inputs(feats, settings)

    def decode(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The decoder's inputs -> (N, H', W', 3) uint8 at the padded size, on the stylizer's device."""
        dec = self.decoder_engine
        return dec(*(t.to(dec.device, dec.dtype) for t in inputs)).to(self.device)

    def finish(self, out: torch.Tensor, batch: Prepared, settings: StyleSettings) -> torch.Tensor:
        """Crop the padding, scale back to the frames' size, keep their colours if asked ->
        (N, H, W, 3) uint8 RGB on the CPU."""
        h, w = batch.frames.shape[1:3]
        out = resize_u8(out[:, : batch.size[0], : batch.size[1]], (h, w))
        if self._restyle.alpha_in_image and settings.alpha < 1.0:
            a = settings.alpha
            out = (a * out.float() + (1.0 - a) * batch.frames.float()).round_().to(torch.uint8)
        if settings.preserve_color:
            out = luminance_only(out, batch.frames)
        return out.cpu()

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, settings: StyleSettings, max_side: int | None = None) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB, any device -> (N, H, W, 3) uint8 RGB on the CPU."""
        batch = self.prepare(frames, max_side)
        return self.finish(self.decode(self.restyle(self.encode(batch.padded), settings)), batch, settings)

    def stylize(self, rgb: np.ndarray, settings: StyleSettings, max_side: int | None = None) -> np.ndarray:
        """One picture: (H, W, 3) uint8 RGB numpy array -> the same, stylized."""
        check_rgb(rgb, "picture")
        return self(torch.from_numpy(np.ascontiguousarray(rgb))[None], settings, max_side)[0].numpy()
