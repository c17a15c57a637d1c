"""`rtstyle tune-temporal`: fine-tune MicroAST's content encoder and decoder so they do not flicker.

Per-frame stylization flickers because the network is not equivariant: shift a frame by a
pixel or add sensor noise and the painted texture changes, not only moves (the encoder
downsamples by 4, so each shift phase gives other strokes). This trains the network to agree
with itself under exactly that, the *compound regularization* of Wang et al. (2020):

    x, x' = two windows of one picture, x' shifted by (dy, dx) integer pixels (not shifted on a
            share of the steps, ``--static``: a still scene), each with its own Gaussian noise
    temporal = mean over the shared interior of |F(x') - shift(F(x))|^2      (RGB in [0, 1])

Integer shifts make the second view exact (no resampling blur in the target, which would
teach blur); the noise stands for a webcam's grain on a still scene. No optical flow: a
flow-based pair would add the flow's own errors to the target.

So that the network keeps its look while it becomes stable, it is anchored to the *teacher*
(frozen; default: the shipped ``microast``), through statistics that do not care where a
stroke sits:

    content = |phi4(F(x)) - phi4(T(x))|^2       (relu4_1 of the normalised VGG-19)
    style   = sum over relu1_1..relu4_1 of |mean - mean_T|^2 + |std - std_T|^2

``phi`` is the normalised full VGG-19 that also scores every model (``realtime.losses``);
``T`` is the teacher with its own encoder. Started from the teacher, both anchors are 0, so
only the temporal term moves the network, and only as far as the anchors allow.

The decoder and the content encoder train (the encoder's strided convs alias, so a shift
changes its features: the decoder alone cannot undo that; ``--no-train-encoder`` keeps it);
the style encoder and the modulator are frozen, so style codes stay valid.

Held-out evaluation (``eval_every``): the independent scorer's content and style losses
against the held-out *content and style images* (as ``benchmarks.quality``), for the teacher
once and for the decoder at each evaluation, and the shift error on held-out pictures. Each
evaluation writes ``snapshots/step_NNNNNN.safetensors``, a complete MicroAST file for
``--model microast --decoder FILE``. ``checkpoint.pt`` (every ``ckpt_every`` steps and at the
end; Ctrl-C keeps the last one) resumes a run exactly.

Images are (N, 3, H, W) float RGB in [0, 1]; MicroAST runs in fp32, the loss network in bf16
autocast + channels_last where the CPU has bf16 instructions (``engines.cpu_bf16``).

Why one file: the recipe, its checkpoint (what resumes exactly) and its command line change
together; split, a new option would need edits in three places to resume right.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from realtime import dataset, options
from realtime.adain import mean_std
from realtime.losses import Scorer, content_loss, style_loss, vgg_loss_net
from realtime.microast import MicroAST, load_microast_file, save_microast
from realtime.models import MODELS
from realtime.options import opt
from realtime import UserError
from realtime.train import RunLog
from realtime.trainer import channels_last, pick_amp, pick_device, save_atomic

CHECKPOINT = "checkpoint.pt"
TEACHER = str(MODELS["microast"].decoder)


@dataclass(frozen=True)
class TuneConfig:
    init: str = opt("", "MicroAST file to start from (a snapshot, to continue); empty: the teacher")
    teacher: str = opt(TEACHER, "MicroAST file the anchors hold the decoder to (the shipped microast)")
    content_dirs: tuple[str, ...] = opt((), "folders of content photos (searched recursively)", metavar="DIR")
    style_dirs: tuple[str, ...] = opt((), "folders of style images (searched recursively)", metavar="DIR")
    video_dirs: tuple[str, ...] = opt((), "folders of videos: frames_per_video frames each join the content",
                                      metavar="DIR")
    out_dir: str = opt("runs/microast-tc", "checkpoint, log.jsonl and snapshots/ go here")
    steps: int = opt(1500, "train until this many steps in all", range=(1, None))
    batch_size: int = opt(4, "pictures (each with its own style) per step", range=(1, None))
    crop: int = opt(192, "training crop side in px, a multiple of 4", range=(16, None))
    shift: int = opt(8, "largest shift between the two views, px", range=(0, None))
    static: float = opt(0.25, "share of steps whose two views are not shifted (noise only)", range=(0, 1))
    noise: float = opt(0.02, "largest std of the Gaussian noise added to each view (RGB in [0, 1])",
                       range=(0, None))
    train_encoder: bool = opt(True, "also fine-tune the content encoder (its strided convs alias, so "
                              "a shift changes its features); the style encoder and modulator stay "
                              "frozen, so style codes do not change")
    margin: int = opt(12, "px at the border of the shared area left out of the temporal loss", range=(0, None))
    lr: float = opt(2e-5, "Adam learning rate (constant after the warm-up)", range=(0, None))
    warmup: int = opt(50, "linear learning-rate warm-up over this many steps", range=(0, None))
    temporal_weight: float = opt(200.0, "weight of the temporal (shift-agreement) loss", range=(0, None))
    content_weight: float = opt(1.0, "weight of the relu4_1 anchor to the teacher", range=(0, None))
    style_weight: float = opt(10.0, "weight of the feature-statistics anchor to the teacher", range=(0, None))
    heldout_fraction: float = opt(0.1, "share of content and of styles held out, by name hash",
                                  range=(0.01, 0.99))
    eval_images: int = opt(8, "held-out pictures (and styles) scored at each evaluation", range=(1, None))
    eval_every: int = opt(100, "score held-out pairs and write a snapshot every this many steps", range=(1, None))
    ckpt_every: int = opt(50, "write checkpoint.pt every this many steps (also at the end, on Ctrl-C)",
                          range=(1, None))
    log_every: int = opt(10, "one log line and log.jsonl record per this many steps", range=(1, None))
    frames_per_video: int = opt(16, "frames sampled evenly from each video", range=(0, None))
    max_side: int = opt(512, "pictures are decoded once with the shorter side scaled down to this",
                        range=(16, None))
    seed: int = opt(0, "seed for data sampling, shifts and noise")
    device: str = opt("auto", "cuda, cpu, cuda:1, ...; auto: cuda when available")
    amp: str = opt("auto", "mixed precision of the loss network; auto: bf16 where the CPU or GPU has it, "
                   "else off (no fp16: there is no loss scaler here)", choices=("auto", "bf16", "off"))
    resume: bool = opt(True, "continue from out_dir/checkpoint.pt when it exists")

    def __post_init__(self):
        if self.crop % 4:
            raise ValueError(f"crop must be a multiple of 4, got {self.crop}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1): the evaluation needs held-out "
                             f"pictures, got {self.heldout_fraction}")
        if 2 * self.margin + self.shift >= self.crop:
            raise ValueError(f"crop {self.crop} leaves no shared interior for shift {self.shift} "
                             f"and margin {self.margin}")


# ----------------------------------------------------------------------------- pure functions
def shifted_views(big: torch.Tensor, crop: int, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (crop x crop) windows of ``big`` (N, 3, crop + 2m, crop + 2m): the centre one, x,
    and x' moved by (dy, dx), so that ``x'[i, j] == x[i + dy, j + dx]`` where both exist."""
    m = (big.shape[-1] - crop) // 2
    if abs(dy) > m or abs(dx) > m:
        raise ValueError(f"shift ({dy}, {dx}) exceeds the window's margin {m}")
    x = big[..., m:m + crop, m:m + crop]
    return x, big[..., m + dy:m + dy + crop, m + dx:m + dx + crop]


def shared_interior(out: torch.Tensor, out2: torch.Tensor, dy: int, dx: int,
                    margin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts of F(x) and F(x') that show the same pixels (``shifted_views``), less ``margin``
    px at every edge of that shared area (where the padding differs) -> two equal-size tensors."""
    h, w = out.shape[-2:]
    r0, r1 = max(0, -dy) + margin, h - max(0, dy) - margin
    c0, c1 = max(0, -dx) + margin, w - max(0, dx) - margin
    return out[..., r0 + dy:r1 + dy, c0 + dx:c1 + dx], out2[..., r0:r1, c0:c1]


def shift_error(out: torch.Tensor, out2: torch.Tensor, dy: int, dx: int, margin: int) -> torch.Tensor:
    """Mean squared disagreement of two outputs on their shared interior (the temporal loss)."""
    a, b = shared_interior(out, out2, dy, dx, margin)
    return F.mse_loss(b, a)


def noisy(x: torch.Tensor, largest: float, gen: torch.Generator) -> torch.Tensor:
    """x plus Gaussian noise whose std is uniform in [0, largest] per sample, clamped to [0, 1]."""
    if largest <= 0:
        return x
    sd = torch.rand(x.shape[0], 1, 1, 1, generator=gen) * largest
    return (x + (sd * torch.randn(x.shape, generator=gen)).to(x.device)).clamp(0.0, 1.0)


def stack_codes(model: MicroAST, styles: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(N, 3, H, W) styles -> the decoder's code tensors per sample, four (N, 2, 64) tensors."""
    codes = [model.style_code(s[None]) for s in styles]
    return tuple(torch.stack(ts) for ts in zip(*(c.tensors() for c in codes)))


# ----------------------------------------------------------------------------- the tuner
class Tuner:
    """The student (``model``: its decoder trains), the frozen teacher, the loss network, the
    data and the optimizer; ``step()`` runs one training step."""

    def __init__(self, cfg: TuneConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        amp = pick_amp(cfg.amp, self.device)
        self.amp = amp if amp == torch.bfloat16 else None  # fp16 would need a loss scaler
        self.teacher = load_microast_file(Path(cfg.teacher)).to(self.device).requires_grad_(False)
        self.model = load_microast_file(Path(cfg.init or cfg.teacher)).to(self.device)
        frozen = [self.model.style_encoder, self.model.modulator]
        self.trained = [self.model.decoder] + ([self.model.content_encoder] if cfg.train_encoder else [])
        for part in frozen + ([] if cfg.train_encoder else [self.model.content_encoder]):
            part.requires_grad_(False)
        fmt = torch.channels_last if channels_last(self.device, self.amp) else torch.contiguous_format
        self.loss_net = vgg_loss_net().to(self.device, memory_format=fmt)
        self.scorer = Scorer(self.loss_net, self.device)
        self.opt = torch.optim.Adam([p for part in self.trained for p in part.parameters()], lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_no = 0
        self.data = {}
        self.data["content"], self.data["heldout_content"] = dataset.load_split(
            cfg.content_dirs, cfg.video_dirs, cfg.max_side, cfg.frames_per_video, cfg.heldout_fraction,
            self.device, "content")
        self.data["style"], self.data["heldout_style"] = dataset.load_split(
            cfg.style_dirs, (), cfg.max_side, 0, cfg.heldout_fraction, self.device, "styles")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.autocast(self.device.type, self.amp, enabled=self.amp is not None):
            return [f.float() for f in self.loss_net(x)]

    def draw_shift(self) -> tuple[int, int]:
        c = self.cfg
        if c.shift == 0 or torch.rand((), generator=self.gen).item() < c.static:
            return 0, 0
        while True:
            dy, dx = torch.randint(-c.shift, c.shift + 1, (2,), generator=self.gen).tolist()
            if dy or dx:
                return dy, dx

    def lr_at(self, step: int) -> float:
        return self.cfg.lr * min(1.0, (step + 1) / self.cfg.warmup) if self.cfg.warmup else self.cfg.lr

    def losses(self, x: torch.Tensor, x2: torch.Tensor, codes, dy: int, dx: int) -> dict[str, torch.Tensor]:
        c = self.cfg
        with torch.no_grad():
            target = self.teacher.decoder(self.teacher.content_encoder(x)[1], *codes, 1.0).clamp(0, 1)
            t_feats = self.features(target)
        with torch.set_grad_enabled(c.train_encoder):
            f, f2 = self.model.content_encoder(x)[1], self.model.content_encoder(x2)[1]
        out = self.model.decoder(f, *codes, 1.0).clamp(0, 1)
        out2 = self.model.decoder(f2, *codes, 1.0).clamp(0, 1)
        feats = self.features(out)
        parts = {"temporal": shift_error(out, out2, dy, dx, c.margin),
                 "content": content_loss(feats[-1], t_feats[-1]),
                 "style": style_loss(feats, [mean_std(t) for t in t_feats])}
        parts["total"] = (c.temporal_weight * parts["temporal"] + c.content_weight * parts["content"]
                          + c.style_weight * parts["style"])
        return parts

    def step(self) -> dict[str, float]:
        c, g = self.cfg, self.gen
        big = dataset.random_crops(self.data["content"], c.batch_size, c.crop + 2 * c.shift, g)
        styles = dataset.random_crops(self.data["style"], c.batch_size, c.crop, g)
        dy, dx = self.draw_shift()
        x, x2 = shifted_views(big, c.crop, dy, dx)
        x, x2 = noisy(x, c.noise, g), noisy(x2, c.noise, g)
        codes = stack_codes(self.model, styles)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step_no)
        parts = self.losses(x, x2, codes, dy, dx)
        self.opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        self.opt.step()
        self.step_no += 1
        return {k: v.item() for k, v in parts.items()}

    @torch.no_grad()
    def heldout(self) -> dict:
        """Fixed held-out pairs and shifts: centre crops of spread-out pictures and styles."""
        c = self.cfg
        hc, hs = self.data["heldout_content"], self.data["heldout_style"]
        if hc is None or hs is None:
            raise ValueError("no held-out pictures: raise --heldout-fraction or add pictures")
        big = dataset.center_crops(hc, dataset.pick_spread(hc, c.eval_images), c.crop + 2 * c.shift)
        styles = dataset.center_crops(hs, dataset.pick_spread(hs, c.eval_images), c.crop)
        n = min(len(big), len(styles))
        gen = torch.Generator().manual_seed(1234)
        shifts = [(0, 0)] + ([(c.shift // 2 + 1, -(c.shift // 3) - 1)] if c.shift else [])
        views = []
        for dy, dx in shifts:
            x, x2 = shifted_views(big[:n], c.crop, dy, dx)
            views.append((noisy(x, c.noise, gen), noisy(x2, c.noise, gen), dy, dx))
        return {"clean": shifted_views(big[:n], c.crop, 0, 0)[0], "style": styles[:n], "views": views}

    @torch.no_grad()
    def evaluate(self, held: dict, model: MicroAST | None = None) -> dict[str, float]:
        """Held-out scores of ``model`` (default: the student): the scorer's content and style
        losses against the pictures, and the shift error (noise only, and shifted + noise)."""
        model = self.model if model is None else model
        codes = stack_codes(model, held["style"])
        out = model.decoder(model.content_encoder(held["clean"])[1], *codes, 1.0).clamp(0, 1)
        content, style = self.scorer(out, held["clean"], held["style"])
        result = {"vgg_content": content.mean().item(), "vgg_style": style.mean().item()}
        for name, (x, x2, dy, dx) in zip(("static", "shifted"), held["views"]):
            o1 = model.decoder(model.content_encoder(x)[1], *codes, 1.0).clamp(0, 1)
            o2 = model.decoder(model.content_encoder(x2)[1], *codes, 1.0).clamp(0, 1)
            result[f"shift_error_{name}"] = shift_error(o1, o2, dy, dx, self.cfg.margin).item()
        return result

    def snapshot(self, path: Path, scores: dict) -> None:
        out = copy.deepcopy(self.model).cpu().float()
        out.provenance = {**self.teacher.provenance, "fine_tuned": json.dumps({
            "what": ("decoder" + (" and content encoder" if self.cfg.train_encoder else "")
                     + " fine-tuned for temporal stability (rtstyle tune-temporal)"),
            "step": self.step_no, "heldout": scores, "config": asdict(self.cfg),
            "teacher_sha256": _sha256(Path(self.cfg.teacher))})}
        save_microast(out, path)

    def save(self, path: Path, extra: dict) -> None:
        """Atomic checkpoint: a crash mid-write leaves the previous one."""
        state = {"decoder": self.model.decoder.state_dict(),
                 "content_encoder": self.model.content_encoder.state_dict(), "optimizer": self.opt.state_dict(),
                 "step": self.step_no, "rng": {"data": self.gen.get_state(), "torch": torch.get_rng_state()},
                 "config": asdict(self.cfg), **extra}
        save_atomic(state, path)

    def restore(self, path: Path) -> dict:
        state = torch.load(path, map_location="cpu", weights_only=True)
        old, new = _plain(state["config"]), _plain(asdict(self.cfg))
        changed = [k for k in new if k not in _RUN_ONLY and old.get(k) != new[k]]
        if changed:
            raise ValueError(f"{path} belongs to a different run ({', '.join(changed)} changed): "
                             "use another --out-dir or --no-resume")
        self.model.decoder.load_state_dict(state["decoder"])
        self.model.content_encoder.load_state_dict(state["content_encoder"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        self.step_no = state["step"]
        return state


# options that change how a run executes or reports, not what it computes
_RUN_ONLY = {"out_dir", "steps", "eval_every", "ckpt_every", "log_every", "device", "amp", "resume"}


def _plain(config: dict) -> dict:
    """A config as JSON reads it back: tuples and lists compare equal."""
    return json.loads(json.dumps(config))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tune(cfg: TuneConfig) -> dict:
    """Train (or resume) until ``cfg.steps``; -> the last held-out scores (and the teacher's)."""
    out = Path(cfg.out_dir)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    ckpt, log_path = out / CHECKPOINT, out / "log.jsonl"
    if not cfg.resume and (ckpt.exists() or log_path.exists()):
        raise ValueError(f"{out} holds a run already: use another --out-dir, or resume it")
    tu = Tuner(cfg)
    state = tu.restore(ckpt) if cfg.resume and ckpt.exists() else {}
    held = tu.heldout()
    teacher = state.get("teacher_scores") or tu.evaluate(held, tu.teacher)
    log = RunLog(log_path, upto=tu.step_no)  # drops records a cut-off run wrote after its checkpoint
    if tu.step_no == 0:
        log.emit({"kind": "eval", "step": 0, "model": "teacher", **teacher})
    tqdm.write(f"tune-temporal: {({k: len(v) if v else 0 for k, v in tu.data.items()})} on {tu.device}, "
               f"amp {tu.amp}, step {tu.step_no} -> {cfg.steps}; teacher held-out {teacher}", file=sys.stderr)
    scores, acc, n, t0 = state.get("scores"), {}, 0, time.perf_counter()
    try:
        with tqdm(total=cfg.steps, initial=tu.step_no, unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
            while tu.step_no < cfg.steps:
                for k, v in tu.step().items():
                    acc[k] = acc.get(k, 0.0) + v
                n += 1
                bar.update(1)
                last = tu.step_no == cfg.steps
                if tu.step_no % cfg.log_every == 0 or last:
                    rec = {k: v / n for k, v in acc.items()}
                    rec["steps_per_s"] = n / (time.perf_counter() - t0)
                    log.emit({"kind": "train", "step": tu.step_no, **rec})
                    bar.write(f"step {tu.step_no}: " + ", ".join(f"{k} {v:.4g}" for k, v in rec.items()),
                              file=sys.stderr)
                    acc, n, t0 = {}, 0, time.perf_counter()
                if tu.step_no % cfg.eval_every == 0 or last:
                    scores = tu.evaluate(held)
                    log.emit({"kind": "eval", "step": tu.step_no, "model": "student", **scores})
                    tu.snapshot(out / "snapshots" / f"step_{tu.step_no:06d}.safetensors", scores)
                    bar.write(f"step {tu.step_no}: held-out {scores}", file=sys.stderr)
                if tu.step_no % cfg.ckpt_every == 0 or last:
                    tu.save(ckpt, {"teacher_scores": teacher, "scores": scores})
                if n == 0:  # evaluation and checkpoint time does not count as training
                    t0 = time.perf_counter()
    except KeyboardInterrupt:  # mid-step state would not resume exactly: keep the last checkpoint
        tqdm.write(f"tune-temporal: interrupted at step {tu.step_no}; {ckpt} holds the last "
                   f"checkpoint (every {cfg.ckpt_every} steps)", file=sys.stderr)
        raise
    return {"teacher": teacher, "student": scores, "step": tu.step_no}


# ---------------------------------------------------------------------------- command line
def register_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune-temporal", help="fine-tune MicroAST's decoder against flicker",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_config_args(p, TuneConfig)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        cfg = options.config_from_args(TuneConfig, args)
        result = tune(cfg)
    except KeyboardInterrupt:
        return 130
    except (UserError, ValueError, OSError) as e:
        print(f"rtstyle tune-temporal: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m realtime.temporal_tune ...``: the same as ``rtstyle tune-temporal ...``."""
    parser = argparse.ArgumentParser(prog="rtstyle")
    register_cli(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["tune-temporal", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
