"""Would int8 make the default network faster on this CPU? ONNX Runtime static int8 against the
product's CPU variants, side by side: speed at one frame size and accuracy against eager fp32.

    python -m benchmarks.int8_onnx [--size 360p] [--rounds 8] [--model NAME] [--out DIR]

The product's onnxruntime engine exports the encoder and the decoder (fp32); each export is
quantized with ``onnxruntime.quantization.quantize_static`` (QDQ, int8 weights per channel,
uint8 activations, only the convolutions), calibrated on 24 photos and 8 artworks from the
*training* side of ``../shared/data`` (min/max, and the 99.99th percentile). Accuracy: PSNR of
each variant's uint8 output against eager fp32's on the 48 *test* pairs of
``benchmarks.quality`` (8 held-out photos, centre-cropped to the frame size, x 6 held-out
artworks); the product's floor is ``realtime.tuning.MIN_PSNR_DB``. Speed: the network alone
(encoder, style step, decoder; uint8 in and out), every variant warmed up, then ``--rounds``
interleaved rounds on one frame; median and fastest round. Prints a Markdown table.

Zen 4 has AVX-512 VNNI (int8 dot products), so int8 convolutions could in principle beat bf16.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.quality import SELECT, SHARED, TEST_CONTENT, TEST_STYLE, heldout
from realtime.bench_setup import SIZES, fit_frames
from realtime.models import open_network
from realtime.stylizer import Stylizer, StyleSettings
from realtime.tuning import MIN_PSNR_DB, psnr


def frame(rgb: np.ndarray, h: int, w: int) -> torch.Tensor:
    return fit_frames(torch.from_numpy(np.ascontiguousarray(rgb))[None], h, w)


def quantize(onnx_path: Path, feeds: list[dict], out: Path, method: str) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(onnx_path), str(pre))
    except Exception:  # the decoder's graph defeats ORT's symbolic shape inference
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    extra = {"CalibPercentile": 99.99} if method == "percentile" else {}
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    calibrate_method=getattr(CalibrationMethod, "MinMax" if method == "minmax" else "Percentile"),
                    extra_options=extra)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.int8_onnx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="360p", choices=sorted(SIZES))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--model", help="default: the product's default model")
    p.add_argument("--out", type=Path, help="where the ONNX files go (default: a temporary folder)")
    args = p.parse_args(argv)
    import onnxruntime as ort

    h, w = SIZES[args.size]
    out = (args.out or Path(tempfile.mkdtemp(prefix="int8_onnx_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["RTSTYLE_CACHE"] = str(out / "cache")  # the fp32 exports, apart from the user's cache
    net = open_network(args.model)
    made = {(b, pr): Stylizer.from_network(net, backend=b, precision=pr, device="cpu")
            for b, pr in (("eager", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32"))}
    ref, ox = made["eager", "fp32"], made["onnxruntime", "fp32"]

    calib_frames = [frame(c, h, w) for _, c in heldout(SHARED / "content", 24, 0, training=True)]
    calib_codes = [StyleSettings(ref.encode_style(s)) for _, s in heldout(SHARED / "styles", 8, 0, training=True)]
    with torch.inference_mode():
        for s in made.values():
            s(calib_frames[0], calib_codes[0])  # builds the engines (the ONNX exports)
        enc_feeds = [{"input0": f.numpy()} for f in calib_frames]
        dec_feeds = [{f"input{j}": t.float().numpy() for j, t in enumerate(ref.restyle(
            ref.encode(ref.prepare(f).padded), calib_codes[i % len(calib_codes)]))}
            for i, f in enumerate(calib_frames)]

    def session(path: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    with contextlib.chdir(out):  # the quantizer leaves 1 MB ``<uuid>.data`` files in the working folder
        int8 = {m: (session(quantize(ox.encoder_engine.path, enc_feeds, out / f"enc_int8_{m}.onnx", m)),
                    session(quantize(ox.decoder_engine.path, dec_feeds, out / f"dec_int8_{m}.onnx", m)))
                for m in ("minmax", "percentile")}

    def by_stylizer(s: Stylizer):
        return lambda f, st: s.decode(s.restyle(s.encode(s.prepare(f).padded), st))

    def by_sessions(enc, dec):
        def run(f, st):
            feats = torch.from_numpy(enc.run(None, {"input0": f.numpy()})[0])
            inputs = ref.restyle(feats, st)
            return torch.from_numpy(dec.run(None, {f"input{j}": t.float().numpy() for j, t in enumerate(inputs)})[0])
        return run

    calls = {f"{b} {pr}": by_stylizer(s) for (b, pr), s in made.items()}
    calls["onnxruntime int8 (min/max)"] = by_sessions(*int8["minmax"])
    calls["onnxruntime int8 (99.99th percentile)"] = by_sessions(*int8["percentile"])
    calls["onnxruntime int8 encoder (percentile), fp32 decoder"] = by_sessions(
        int8["percentile"][0], ox.decoder_engine.session)

    photos = [frame(c, h, w) for _, c in heldout(SHARED / "content", TEST_CONTENT, SELECT)]
    styles = [s for _, s in heldout(SHARED / "styles", TEST_STYLE, SELECT)]
    dbs: dict[str, list[float]] = {k: [] for k in calls}
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        codes = [StyleSettings(ref.encode_style(s)) for s in styles]
        for f in photos:
            for st in codes:
                reference = calls["eager fp32"](f, st)
                for k, run in calls.items():
                    dbs[k].append(psnr(run(f, st), reference))
        f, st = photos[0], codes[0]
        for run in calls.values():
            run(f, st)
        for _ in range(args.rounds):
            for k, run in calls.items():
                t0 = time.perf_counter()
                run(f, st)
                times[k].append((time.perf_counter() - t0) * 1e3)

    print(f"\n{w}x{h}, {torch.get_num_threads()} threads, {len(photos) * len(codes)} test pairs, "
          f"{args.rounds} interleaved rounds (PSNR floor {MIN_PSNR_DB:.0f} dB)\n")
    print("| variant | median ms | fastest ms | PSNR vs fp32, worst | median |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k in calls:
        finite = [d for d in dbs[k] if np.isfinite(d)] or [float("inf")]
        print(f"| {k} | {statistics.median(times[k]):.1f} | {min(times[k]):.1f} | {min(finite):.1f} dB"
              f" | {statistics.median(finite):.1f} dB |")
    print(f"\nONNX files in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
