"""Training data for the decoder: found, split, decoded once, kept on the device, augmented there.

* Content comes from image folders and from frames sampled evenly out of videos (PyAV, only
  imported when there are videos). Styles come from image folders.
* Every picture is decoded ONCE, its shorter side scaled down to at most ``max_side`` (never
  up), and kept as a ``(3, H, W) uint8 RGB`` tensor on the training device. Each batch is cut
  from those tensors on the device (random rescale, crop, flip, content colour jitter), so the
  GPU never waits on JPEG decoding. All randomness comes from one CPU ``torch.Generator``
  (saved in checkpoints): crop geometry must be known in Python anyway, and no GPU sync is
  needed to draw it.
* The held-out split is a hash of the name (video frames: of their video), so it is stable
  across runs, resumes and machines, and never leaks frames of one clip into both sides.
* ``pack_dataset`` writes a compact folder of resized JPEGs to carry to a GPU machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
_FRAME_SUFFIX = re.compile(r"__frame\d+$")
PACK_FORMAT = "rtstyle-pack-v1"


# ---------------------------------------------------------------------------- finding, split
def list_files(dirs, exts: tuple[str, ...]) -> list[Path]:
    """Files under ``dirs`` (recursively) with one of ``exts``, sorted; a missing dir raises."""
    found = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"data folder {d} does not exist")
        found += [p for p in d.rglob("*") if p.suffix.lower() in exts and p.is_file()]
    return sorted(found)


def split_key(name: str) -> str:
    """What the held-out split hashes: the stem, with a ``__frameNNNN`` suffix dropped, so a
    video's frames (sampled here or packed as JPEGs) always fall on the same side."""
    return _FRAME_SUFFIX.sub("", Path(name).stem)


def _unit_hash(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / float(16**12)


def split_names(names: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """-> (train, held-out): held out where the name's hash < ``fraction``. When that leaves
    nothing held out but two or more keys exist, the key with the lowest hash is held out."""
    keys = {n: split_key(n) for n in names}
    held = [n for n in names if _unit_hash(keys[n]) < fraction]
    if not held and fraction > 0 and len(set(keys.values())) >= 2:
        lowest = min(keys.values(), key=_unit_hash)
        held = [n for n in names if keys[n] == lowest]
    held_set = set(held)
    return [n for n in names if n not in held_set], held


# ---------------------------------------------------------------------------- decoding
def shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the same with the shorter side at most ``max_side`` (area filter)."""
    h, w = img.shape[:2]
    k = max_side / min(h, w)
    if k >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def read_image(path: Path, max_side: int) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB, shorter side <= ``max_side``, EXIF-rotated."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR: converted right here, at the boundary
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return shrink(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), max_side)


def read_video_frames(path: Path, count: int, max_side: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over a video -> list of (H, W, 3) uint8 RGB, upright."""
    import av  # only needed when videos are used (the GPU machine trains from a pack)

    with av.open(str(path)) as box:
        total = box.streams.video[0].frames or sum(1 for p in box.demux(video=0) if p.size)
    wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
    frames = []
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(box.decode(stream)):
            if i in wanted:
                img = frame.to_ndarray(format="rgb24")
                img = np.ascontiguousarray(np.rot90(img, k=round(frame.rotation / 90)))
                frames.append(shrink(img, max_side))
            if i >= max(wanted):
                break
    if not frames:
        raise ValueError(f"{path}: no video frames could be decoded")
    return frames


def decode_all(images: list[Path], videos: list[Path], max_side: int, frames_per_video: int,
               desc: str) -> list[tuple[str, np.ndarray]]:
    """Decode images and sampled video frames once -> [(name, (H, W, 3) uint8 RGB)], sorted.
    Frame names are ``<video stem>__frameNNNN`` (see ``split_key``)."""
    def one(item):
        path, is_video = item
        if not is_video:
            return [(path.stem, read_image(path, max_side))]
        frames = read_video_frames(path, frames_per_video, max_side)
        return [(f"{path.stem}__frame{i:04d}", f) for i, f in enumerate(frames)]

    items = [(p, False) for p in images] + [(p, True) for p in videos if frames_per_video > 0]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        done = list(tqdm(pool.map(one, items), total=len(items), desc=desc, unit="file",
                         file=sys.stderr, leave=False))
    out = sorted((pair for group in done for pair in group), key=lambda p: p[0])
    dupes = sorted(n for n, k in Counter(n for n, _ in out).items() if k > 1)
    if dupes:
        raise ValueError(f"two data files share the name(s) {dupes[:5]}: rename one")
    return out


# ---------------------------------------------------------------------------- on-device bank
def _source_tag(name: str) -> str:
    return name.split("__", 1)[0] if "__" in name else ""


@dataclass
class ImageBank:
    """Decoded pictures on the training device: ``images[i]`` is (3, H, W) uint8 RGB."""

    names: list[str]
    images: list[torch.Tensor]
    weights: torch.Tensor  # (n,) float64 on the CPU: sampling weight of each picture

    @classmethod
    def build(cls, named: list[tuple[str, np.ndarray]], device: torch.device) -> "ImageBank":
        """Sampling is balanced by source tag (``<tag>__name``) with weight 1/sqrt(count),
        so a 310-image source does not drown a 20-image one, nor the other way round."""
        if not named:
            raise ValueError("no pictures to train on: check the data folders")
        names = [n for n, _ in named]
        images = [torch.from_numpy(a).permute(2, 0, 1).contiguous().to(device) for _, a in named]
        tags = [_source_tag(n) for n in names]
        count = Counter(tags)
        w = torch.tensor([count[t] ** -0.5 for t in tags], dtype=torch.float64)
        return cls(names, images, w)

    def __len__(self) -> int:
        return len(self.names)


def random_crops(bank: ImageBank, n: int, crop: int, gen: torch.Generator,
                 rescale: tuple[float, float] = (0.5, 1.0)) -> torch.Tensor:
    """n random (crop x crop) pieces -> (n, 3, crop, crop) float32 RGB in [0, 1], on the bank's
    device. A square window of side crop/r (r uniform in ``rescale``, capped by the picture) is
    cut at a random place, resized to ``crop`` (antialiased) and flipped left-right half the time."""
    idx = torch.multinomial(bank.weights, n, replacement=True, generator=gen).tolist()
    r = torch.empty(n, dtype=torch.float64).uniform_(*rescale, generator=gen).tolist()
    u = torch.rand(n, 3, dtype=torch.float64, generator=gen).tolist()
    out = []
    for i, ri, (uy, ux, uf) in zip(idx, r, u):
        img = bank.images[i]
        h, w = img.shape[1:]
        side = min(round(crop / ri), h, w)
        y, x = int(uy * (h - side + 1)), int(ux * (w - side + 1))
        patch = img[:, y:y + side, x:x + side][None].float()
        if side != crop:
            patch = F.interpolate(patch, size=(crop, crop), mode="bilinear", align_corners=False,
                                  antialias=side > crop)
        out.append(patch.flip(-1) if uf < 0.5 else patch)
    return (torch.cat(out) / 255.0).clamp_(0.0, 1.0)


def color_jitter(x: torch.Tensor, gen: torch.Generator, amount: float) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> mildly jittered copy: brightness, contrast and saturation
    each scaled by a factor uniform in [1 - amount, 1 + amount], per sample."""
    if amount <= 0:
        return x
    f = 1 + amount * (2 * torch.rand(x.shape[0], 3, generator=gen) - 1)
    if x.is_cuda:  # a pageable host-to-GPU copy would wait for the GPU queue to drain
        f = f.pin_memory()
    f = f.to(x.device, x.dtype, non_blocking=True)
    b, c, s = (f[:, i, None, None, None] for i in range(3))
    x = x * b
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray.mean((2, 3), keepdim=True)) * c + gray.mean((2, 3), keepdim=True)
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    return ((x - gray) * s + gray).clamp(0.0, 1.0)


def center_crops(bank: ImageBank, indices: list[int], crop: int) -> torch.Tensor:
    """Deterministic views for evaluation: shorter side scaled to ``crop``, centre square ->
    (len(indices), 3, crop, crop) float32 RGB in [0, 1] on the bank's device."""
    out = []
    for i in indices:
        img = bank.images[i][None].float()
        h, w = img.shape[2:]
        k = crop / min(h, w)
        size = (max(crop, round(h * k)), max(crop, round(w * k)))
        img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=k < 1)
        y, x = (size[0] - crop) // 2, (size[1] - crop) // 2
        out.append(img[:, :, y:y + crop, x:x + crop])
    return (torch.cat(out) / 255.0).clamp_(0.0, 1.0)


def load_split(image_dirs, video_dirs, max_side: int, frames_per_video: int, fraction: float,
               device: torch.device, desc: str) -> tuple[ImageBank, ImageBank | None]:
    """Find, decode once and split a pool -> (training bank, held-out bank or None)."""
    named = decode_all(list_files(image_dirs, IMAGE_EXTS), list_files(video_dirs, VIDEO_EXTS),
                       max_side, frames_per_video, f"decode {desc}")
    train, held = split_names([n for n, _ in named], fraction)
    held_set = set(held)
    bank = ImageBank.build([p for p in named if p[0] not in held_set], device)
    held_bank = ImageBank.build([p for p in named if p[0] in held_set], device) if held else None
    return bank, held_bank


def pick_spread(bank: ImageBank, count: int) -> list[int]:
    """Up to ``count`` indices into a bank, one per split key (so not five frames of one
    clip), in name-hash order: a fixed, source-mixed choice for evaluation and statistics."""
    chosen, keys = [], set()
    for i in sorted(range(len(bank)), key=lambda i: _unit_hash(bank.names[i])):
        if split_key(bank.names[i]) not in keys and len(chosen) < count:
            keys.add(split_key(bank.names[i]))
            chosen.append(i)
    return chosen


# ---------------------------------------------------------------------------- the pack step
def _encode(img: np.ndarray, side: int, quality: int) -> bytes:
    bgr = cv2.cvtColor(shrink(img, side), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _settings(max_side: int, quality: int, min_quality: int):
    """Candidate (shorter side, quality), best first: quality steps down to ``min_quality``
    before the side shrinks by 1/16, so JPEG artefacts stay mild."""
    side = max_side
    while side >= min(64, max_side):
        for q in range(quality, min_quality - 1, -5):
            yield side, q
        side = int(side * 15 / 16) // 8 * 8


def _fit_budget(items: list, max_side: int, quality: int, min_quality: int, budget: float):
    """-> (side, quality, JPEG bytes per item): the first setting of ``_settings`` whose
    encoded total fits ``budget`` bytes (tried on a 1-in-N sample first)."""
    sample = items[:: max(1, len(items) // 256)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for side, q in _settings(max_side, quality, min_quality):
            encode = lambda item: _encode(item[2], side, q)  # noqa: E731
            if sum(map(len, pool.map(encode, sample))) * len(items) / len(sample) > 0.98 * budget:
                continue
            blobs = list(pool.map(encode, items))
            if sum(map(len, blobs)) <= budget:
                return side, q, blobs
    raise ValueError(f"{len(items)} pictures do not fit {budget / 1e6} MB even at shorter side "
                     f"{min(64, max_side)} px, quality {min_quality}: raise budget_mb")


def pack_dataset(content_dirs, style_dirs, video_dirs, out_dir, max_side: int = 512,
                 quality: int = 90, budget_mb: float = 40.0, frames_per_video: int = 16,
                 min_quality: int = 75) -> dict:
    """Write ``out_dir/{content,styles}/*.jpg`` + ``manifest.json``: every image with its
    shorter side at most ``max_side``, plus ``frames_per_video`` frames per video as content
    JPEGs named ``<video>__frameNNNN.jpg``, all within ``budget_mb`` (10^6 bytes).

    The highest quality <= ``quality`` (down to ``min_quality``) at the largest side <=
    ``max_side`` that fits the budget is used, and the choice is printed. Train from the pack
    with ``--content-dirs OUT/content --style-dirs OUT/styles``. Returns the manifest.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty: remove it or pick another")
    content = decode_all(list_files(content_dirs, IMAGE_EXTS), list_files(video_dirs, VIDEO_EXTS),
                         max_side, frames_per_video, "pack: decode content")
    styles = decode_all(list_files(style_dirs, IMAGE_EXTS), [], max_side, 0, "pack: decode styles")
    items = [("content", n, a) for n, a in content] + [("styles", n, a) for n, a in styles]
    side, q, blobs = _fit_budget(items, max_side, quality, min_quality, budget_mb * 1e6)
    tmp = out_dir.with_name(out_dir.name + ".partial")  # renamed into place when complete
    shutil.rmtree(tmp, ignore_errors=True)
    files = []
    for (kind, name, arr), blob in zip(items, blobs):
        (tmp / kind).mkdir(parents=True, exist_ok=True)
        (tmp / kind / f"{name}.jpg").write_bytes(blob)
        h, w = shrink(arr, side).shape[:2]
        files.append({"file": f"{kind}/{name}.jpg", "kind": kind, "width": w, "height": h})
    manifest = {"format": PACK_FORMAT, "max_side": side, "quality": q,
                "frames_per_video": frames_per_video, "total_bytes": sum(map(len, blobs)),
                "sources": {"content": [str(d) for d in content_dirs],
                            "styles": [str(d) for d in style_dirs],
                            "videos": [str(d) for d in video_dirs]},
                "files": files}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        out_dir.rmdir()  # empty, checked above
    os.replace(tmp, out_dir)
    frames = sum(1 for n, _ in content if _FRAME_SUFFIX.search(n))
    print(f"packed {len(content)} content ({frames} video frames) + {len(styles)} styles: "
          f"{manifest['total_bytes'] / 1e6:.1f} MB at shorter side <= {side} px, JPEG quality {q} "
          f"(asked {max_side} px, q{quality}) -> {out_dir}", file=sys.stderr)
    return manifest
