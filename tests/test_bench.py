"""``rtstyle bench`` and benchmarks/reference_adain.py: the arithmetic behind every figure
(FLOPs, roofline, percentiles, PSNR), both modes on tiny networks and real frames, the JSON
report, and the weight converter that gives the reference the same weights as ours."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import reference_adain as ref
from realtime import bench
from realtime.measure import percentiles
from realtime.model import Decoder, Encoder, Widths, flops_per_frame
from tests.media import make_clip

TINY = Widths.scaled(16)


# ------------------------------------------------------------------------------ arithmetic
def test_flops_match_facts_and_scale_with_pixels():
    g = lambda h, w: flops_per_frame(h, w) / 1e9  # noqa: E731
    assert g(256, 256) == pytest.approx(63.3, abs=0.05)
    assert g(1080, 1920) == pytest.approx(2001.8, abs=0.05)
    for (h, w), facts in (((512, 512), 253), ((720, 1280), 890), ((2160, 3840), 8008)):
        assert g(h, w) == pytest.approx(facts, rel=2e-3)
    per_pixel = g(256, 256) / (256 * 256)
    for h, w in bench.SIZES.values():
        assert g(h, w) == pytest.approx(per_pixel * h * w, rel=1e-12)
    assert per_pixel * 1e3 == pytest.approx(0.966, abs=0.001)  # MFLOP per pixel


def test_roofline_percent_and_known_gpus():
    assert bench.roofline_pct(400.0, 800.0) == pytest.approx(50.0)
    assert bench.roofline_pct(2001.8e9 / 5e-3 / 1e12, 989.4) == pytest.approx(40.46, abs=0.01)
    assert bench.roofline_pct(None, 800.0) is None and bench.roofline_pct(100.0, None) is None
    assert bench.gpu_peak("NVIDIA H100 80GB HBM3") == (989.4, 798.0)
    assert bench.gpu_peak("NVIDIA H100 PCIe") == (756.0, None)
    assert bench.gpu_peak("NVIDIA H200") == (989.4, 788.0)
    assert bench.gpu_peak("Some Other GPU") == (None, None)
    assert bench.resolve_peak("auto", torch.device("cpu"))[:2] == (None, None)


def test_percentiles_match_numpy():
    assert percentiles(range(1, 102)) == [51.0, 91.0, 100.0]
    assert percentiles([7.0]) == [7.0, 7.0, 7.0]
    data = np.random.default_rng(0).exponential(3.0, 537)
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentiles(data, (q,))[0] == pytest.approx(np.percentile(data, q), rel=1e-12)
    with pytest.raises(ValueError):
        percentiles([])


def test_compare_u8():
    a = torch.randint(0, 255, (2, 8, 8, 3), dtype=torch.uint8)
    same = bench.compare_u8(a, a.clone())
    assert same["identical"] and same["psnr_db"] is None and same["mad_levels"] == 0 and same["accuracy_ok"]
    one = bench.compare_u8(a + 1, a)  # every value one level off: MSE 1
    assert one["psnr_db"] == pytest.approx(20 * np.log10(255), abs=1e-9) and one["mad_levels"] == 1
    assert one["accuracy_ok"] and not one["identical"] and one["max_diff_levels"] == 1
    far = bench.compare_u8(a // 2, a)
    assert far["psnr_db"] < 40 and far["mad_levels"] > 1 and not far["accuracy_ok"]


def test_backend_variants_parse():
    v = bench.parse_variant("compile-cudagraphs")
    assert (v.engine, v.precision, v.graphs) == ("compile", None, True)
    assert bench.parse_variant("eager-fp16").precision == "fp16"
    assert bench.parse_variant("eager-bf16enc").precision == "bf16,fp32"
    assert "onnxruntime" in bench.unavailable(bench.parse_variant("onnxruntime-bf16enc"), torch.device("cpu"))
    assert bench.parse_variant("eager") == bench.Variant("eager", "eager", None, False)
    with pytest.raises(ValueError, match="unknown backend"):
        bench.parse_variant("eager-fp8")
    assert "CUDA" in bench.unavailable(bench.parse_variant("eager-cudagraphs"), torch.device("cpu"))


# ------------------------------------------------------------------------------ both modes, tiny nets
@pytest.fixture
def tiny_net():
    torch.manual_seed(1)
    enc = Encoder(TINY).eval()
    for conv in enc.convs.values():  # He init: PyTorch's default leaves a deep relu net nearly dead
        torch.nn.init.kaiming_normal_(conv[1].weight, nonlinearity="relu")
    code = bench.style_of(bench.adain_network(enc, None), torch.device("cpu"))
    frames = bench.real_frames(1, 64, 64)
    return enc, bench.random_decoder(TINY, enc, frames, code), code


def test_real_frames_are_real_and_sized():
    f = bench.real_frames(3, 72, 128)
    assert f.shape == (3, 72, 128, 3) and f.dtype == torch.uint8
    assert f.float().std() > 20  # a picture, not a flat test pattern
    assert not torch.equal(f[0], f[1])  # different moments of the clip


def test_network_mode_rows_accuracy_and_json(tiny_net, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path / "cache"))
    enc, dec, code = tiny_net
    cfg = bench.BenchConfig(backends=("eager-fp32", "onnxruntime", "compile-cudagraphs"), sizes=("256",),
                            batches=(1, 2), warmup=1, iters=3, device="cpu", json_out=tmp_path / "b.json")
    report = bench.run_network(cfg, enc, dec, code)
    rows = report["rows"]
    assert [(r["backend"], r["batch"]) for r in rows] == [
        ("eager-fp32", 1), ("onnxruntime", 1), ("eager-fp32", 2), ("onnxruntime", 2)]
    for r in rows:
        assert 0 < r["ms_p50"] <= r["ms_p90"] <= r["ms_p99"]
        assert r["fps"] == pytest.approx(1e3 / r["ms_p50"])
        assert r["gflop_per_frame"] == pytest.approx(flops_per_frame(256, 256, TINY) / 1e9)
        assert r["tflops"] is None and r["pct_roofline"] is None  # CPU: no roofline
        assert r["ref_clipped_pct"] < 10  # the random decoder's output is not saturated
        assert r["accuracy_ok"]
    eager, onnx = rows[0], rows[1]
    assert eager["identical"] and eager["psnr_db"] is None  # eager fp32 is the reference
    assert onnx["identical"] or onnx["psnr_db"] > 40
    skipped = [(s["backend"], s["batch"]) for s in report["skipped"]]
    assert skipped == [("compile-cudagraphs", 1), ("compile-cudagraphs", 2)]
    assert "CUDA" in report["skipped"][0]["reason"]
    saved = json.loads((tmp_path / "b.json").read_text())
    for key in ("date", "cpu", "cores", "loadavg", "torch", "python"):
        assert key in saved["machine"], key
    assert saved["config"]["iters"] == 3 and saved["rows"] == rows
    assert "onnxruntime / eager-fp32" in capsys.readouterr().out


def test_pipeline_mode_stages_convert_live(tiny_net, tmp_path, capsys):
    enc, dec, code = tiny_net
    clip = make_clip(tmp_path / "clip.mp4", width=96, height=64, frames=10)
    cfg = bench.BenchConfig(mode="pipeline", backends=("eager",), sizes=("360p",), batches=(1, 2), warmup=2,
                            iters=7, device="cpu", max_side=96, clip=clip, live_size="256", live_frames=4,
                            preset="ultrafast", json_out=tmp_path / "p.json")
    from realtime.profiling import STAGES, run_pipeline

    report = run_pipeline(cfg, enc, dec, code)
    assert [s["batch"] for s in report["stages"]] == [1, 2]
    for r in report["stages"]:
        assert list(r["stages"]) == list(STAGES)
        for name, s in r["stages"].items():
            assert s["ms_p50"] >= 0 and s["ms_p90"] >= s["ms_p50"] and s["cpu_ms_mean"] >= 0, name
        assert r["total_ms_p50"] == pytest.approx(sum(s["ms_p50"] for s in r["stages"].values()))
        assert r["stages"]["encode"]["ms_p50"] > 0 and r["stages"]["write"]["ms_p50"] > 0
        assert r["network_size"] == "96x54" and r["size"] == "640x360"
        # the stages the stylizer runs add up to about one Stylizer call (loose: a loaded CPU)
        assert 0.3 < r["stylizer_sum_ms_p50"] / r["stylizer_call_ms_p50"] < 3
    conv = report["convert"]
    assert conv["frames"] == 10 and conv["fps"] > 0 and conv["size"] == "96x64"
    assert conv["thread_cpu_s"]["main"] > 0
    from realtime.smoothing import DEFAULT_SMOOTH

    assert conv["smooth"] == DEFAULT_SMOOTH == report["live"]["smooth"]  # the product's default
    live = report["live"]
    assert live["frames"] == 4 and 0 < live["latency_ms_p50"] <= live["latency_ms_p95"]
    assert live["captured"] >= live["frames"]
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["machine"]["cores"] >= 1 and saved["live"] == live
    assert "stylizer stages" in capsys.readouterr().out


def test_prepare_clip_trims_and_resizes(tmp_path):
    from realtime.profiling import prepare_clip
    from realtime.video import VideoFileSource

    src = make_clip(tmp_path / "src.mp4", width=96, height=64, frames=12)
    out = prepare_clip(src, tmp_path / "out.mp4", 5, "256")
    with VideoFileSource(out) as s:
        frames = list(s)
    assert len(frames) == 5 and frames[0].pixels.shape == (256, 256, 3)


def test_cli_parses_lists_and_rejects_bad_values():
    from realtime.cli import build_parser

    args = build_parser().parse_args(["bench", "--batch", "1,4", "--backends", "eager-fp16,compile-cudagraphs",
                                      "--sizes", "1080p,4k", "--peak-tflops", "800"])
    cfg = bench.config_from_args(args)
    assert cfg.batches == (1, 4) and cfg.sizes == ("1080p", "4k") and cfg.peak_tflops == "800"
    assert cfg.backends == ("eager-fp16", "compile-cudagraphs") and cfg.mode == "network"
    from realtime.convert import ConvertConfig

    assert cfg.preset == ConvertConfig.preset  # the encode stage times what convert writes
    for bad in (["--batch", "1,x"], ["--backends", "eager-int8"], ["--peak-tflops", "lots"], ["--batch", "0"],
                ["--parts", "stages,decode"]):
        with pytest.raises(ValueError):
            bench.config_from_args(build_parser().parse_args(["bench", *bad]))


# ------------------------------------------------------------------------------ reference weights
def test_vgg_index_agrees_with_the_loader():
    from realtime.weights import _ADAIN_VGG_INDEX

    assert {k: ref.VGG_INDEX[k] for k in _ADAIN_VGG_INDEX} == _ADAIN_VGG_INDEX
    assert ref.VGG_INDEX["conv5_4"] == 51 and len(ref.adain_vgg()) == 53
    assert isinstance(ref.adain_vgg()[ref.RELU4_1_END - 1], torch.nn.ReLU)


def test_weight_converter_round_trip(tmp_path):
    """Ours -> pytorch-AdaIN state dicts -> their Sequential layout: same features and the
    same picture; and back through the project's own pytorch-AdaIN loaders: same weights."""
    from realtime.adain import adain, mean_std
    from realtime.weights import load_adain_encoder, load_decoder

    torch.manual_seed(0)
    enc, dec = Encoder(Widths()).eval(), Decoder(Widths()).eval()
    dec.input_scale.uniform_(0.5, 2.0)
    vgg_state, dec_state = ref.to_adain_state(enc, dec)
    vgg, their_dec = ref.adain_vgg(), ref.adain_decoder()
    vgg.load_state_dict(vgg_state)  # strict: every key, every shape
    their_dec.load_state_dict(dec_state)
    vgg = torch.nn.Sequential(*list(vgg.children())[:ref.RELU4_1_END]).eval()
    frames = torch.randint(0, 256, (1, 40, 48, 3), dtype=torch.uint8)
    x = frames.permute(0, 3, 1, 2).float() / 255  # what ToTensor gives
    with torch.inference_mode():
        ours_f, theirs_f = enc(frames), vgg(x)
        assert torch.allclose(theirs_f, ours_f, rtol=1e-4, atol=1e-4 * ours_f.abs().max().item())
        style = torch.rand(1, 512, 6, 5)
        t_ours = adain(ours_f, *(s[0] for s in mean_std(style)))
        t_theirs = ref._adain(theirs_f, style)
        assert torch.allclose(t_ours, t_theirs, atol=0.05 * t_ours.abs().max().item())  # biased vs unbiased var
        pic_ours, pic_theirs = dec.decode_float(t_theirs), their_dec(t_theirs)
        assert pic_theirs.shape == (1, 3, 40, 48)
        assert torch.allclose(pic_theirs, pic_ours, rtol=1e-4, atol=1e-4 * pic_ours.abs().max().item())
    vgg_path, dec_path = ref.save_adain_pair(enc, dec, tmp_path)
    back = load_adain_encoder(vgg_path)
    for name, conv in enc.convs.items():
        assert torch.allclose(back.convs[name][1].weight, conv[1].weight, atol=1e-6), name
        assert torch.allclose(back.convs[name][1].bias, conv[1].bias, atol=1e-5), name
    back_dec, pair = load_decoder(dec_path)
    assert pair == "pytorch-adain"
    with torch.inference_mode():
        t = torch.rand(1, 512, 5, 6)
        assert torch.allclose(back_dec.decode_float(t), dec.decode_float(t), rtol=1e-4, atol=1e-5)


def test_reference_loop_on_a_local_checkout(tmp_path):
    """The reference loop runs against a checkout-shaped folder (a tiny net.py/function.py
    written here in pytorch-AdaIN's layout), on a real clip, and times every frame."""
    pytest.importorskip("torchvision", reason="the reference loop uses torchvision transforms ")
    repo = tmp_path / "pytorch-AdaIN"
    repo.mkdir()
    (repo / "net.py").write_text(
        "from benchmarks.reference_adain import adain_vgg, adain_decoder\nfrom realtime.model import Widths\n"
        "vgg = adain_vgg(Widths.scaled(16))\ndecoder = adain_decoder(Widths.scaled(16))\n")
    (repo / "function.py").write_text(
        "from benchmarks.reference_adain import _adain as adaptive_instance_normalization\n")
    torch.manual_seed(0)
    enc, dec = Encoder(TINY).eval(), Decoder(TINY).eval()
    vgg_path, dec_path = ref.save_adain_pair(enc, dec, tmp_path / "w")
    clip = make_clip(tmp_path / "c.mp4", width=64, height=48, frames=6)
    style = tmp_path / "s.png"
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(style)
    r = ref.Reference(repo, vgg_path, dec_path, torch.device("cpu"))
    out = r.run_loop(clip, style, tmp_path / "o.mp4", 0, 32, None)
    assert out["frames"] == 6 and out["fps"] > 0 and out["size"] == "64x48"


def test_soak_part_watches_memory_and_latency(tiny_net):
    """The soak runs live from the synthetic source for --soak-s and reports resident memory
    and the latency of the first and last tenth (the 10-minute run is a benchmark, not a test)."""
    enc, dec, code = tiny_net
    cfg = bench.BenchConfig(mode="pipeline", backends=("eager",), device="cpu", parts=("soak",), soak_s=3.0,
                            live_size="256", max_side=64)
    from realtime.profiling import run_pipeline

    r = run_pipeline(cfg, enc, dec, code)["soak"]
    # a tiny net at 64 px makes dozens of frames a second; 3 is what a loaded 2-core CI still gives
    assert r["frames"] >= 3 and r["network_side"] == 64 and r["threads"]["compute"] >= 1
    assert 0 < r["rss_mib_start"] <= r["rss_mib_max"] and r["rss_mib_end"] > 0
    assert r["first_tenth_ms_p95"] > 0 and r["last_tenth_ms_p95"] > 0
