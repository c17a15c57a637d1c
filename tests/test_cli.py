"""The command line: true help, exit codes, the sub-commands that need no weights."""
from __future__ import annotations

import subprocess
import sys

import pytest

from realtime.cli import build_parser, main
from realtime.convert import ConvertConfig
from realtime.styles import BUILTINS, DEFAULT_STYLE


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "realtime", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("rtstyle ")


@pytest.mark.parametrize("command", ["convert", "styles", "doctor", "train", "bench", "live", "serve"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert command in capsys.readouterr().out


def test_convert_help_states_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    cfg = ConvertConfig(input=None)
    assert f"(default: {cfg.style})" in text and cfg.style == DEFAULT_STYLE
    assert f"(default: {cfg.crf})" in text and f"(default: {cfg.preset})" in text
    assert f"(default: {cfg.alpha})" in text


def test_parser_defaults_equal_the_config_defaults():
    args = build_parser().parse_args(["convert", "x.mp4"])
    cfg = ConvertConfig(input=None)
    for name in ("style", "alpha", "preserve_color", "max_side", "batch", "crf", "preset", "codec",
                 "smooth", "smooth_strength", "tolerate_errors", "overwrite", "progress"):
        assert getattr(args, name) == getattr(cfg, name), name


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["convert", "a.mp4", "--preserve-color", "sepia"])
    assert e.value.code == 2


def test_bad_alpha_is_an_error(tmp_path, capsys, test_decoder_file):
    rc = main(["convert", str(tmp_path / "x.mp4"), "--alpha", "1.5", "--decoder", str(test_decoder_file)])
    assert rc == 1 and "--alpha" in capsys.readouterr().err


def test_styles_lists_builtins_and_renders(tmp_path, capsys):
    assert main(["styles", "--render", str(tmp_path), "--size", "64"]) == 0
    out = capsys.readouterr().out
    for name in BUILTINS:
        assert name in out and (tmp_path / f"{name}.png").is_file()
    assert f"{DEFAULT_STYLE} (default)" in out


def test_styles_inspect_an_image(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    assert main(["styles", "--inspect", str(tmp_path / "red.png")]) == 0
    out = capsys.readouterr().out
    assert "width: 40" in out and "height: 30" in out


def test_styles_inspect_missing_file_fails_clearly(tmp_path, capsys):
    assert main(["styles", "--inspect", str(tmp_path / "absent.jpg")]) == 1
    assert "absent.jpg" in capsys.readouterr().err


def test_doctor_reports_engines_and_encoders(capfd):
    assert main(["doctor"]) == 0
    out, err = capfd.readouterr()
    assert "engine eager" in out and "ok" in out
    assert "encoder libx264" in out and "vgg19 weights" in out
    assert err == ""  # x265 and SVT-AV1 print their banners on stderr when opened: not here


@pytest.mark.parametrize("command, words", [("styles", "describe an image used as a style"),
                                            ("doctor", "what this machine can run")])
def test_styles_and_doctor_help_describe_the_command(command, words, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert words in " ".join(capsys.readouterr().out.split())


def test_ranges_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(in [0, 51]) (default: 18)" in text and "--max-pixels" in text


def test_bench_times_backends_side_by_side(tmp_path, capsys):
    import json

    out = tmp_path / "bench.json"
    rc = main(["bench", "--backends", "eager,onnxruntime", "--sizes", "256", "--iters", "2", "--warmup", "1",
               "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {r["backend"]: r for r in report["rows"]}
    assert set(rows) == {"eager", "onnxruntime"}
    from realtime.models import DEFAULT_MODEL, describe

    # the default model's FLOPs at 256x256, as `rtstyle models` states them per pixel (~16x
    # fewer than the full-width AdaIN's 63.3 GFLOP)
    per_pixel = float(describe(DEFAULT_MODEL)["flops/pixel"].split()[0])
    for r in rows.values():
        assert r["ms_p50"] > 0 and r["gflop_per_frame"] == pytest.approx(per_pixel * 256**2 / 1e3, rel=0.02)
    assert "onnxruntime / eager" in capsys.readouterr().out
    assert report["weights"].startswith(f"{DEFAULT_MODEL} (")


def test_bench_rejects_unknown_size(capsys):
    assert main(["bench", "--sizes", "999"]) == 1
    assert "unknown size" in capsys.readouterr().err


def test_cli_engine_and_model_names_match_their_registries():
    import engines
    from realtime.models import MODELS
    from realtime.options import ENGINE_NAMES, MODEL_NAMES

    assert ENGINE_NAMES == tuple(engines.ENGINES)
    assert MODEL_NAMES == tuple(MODELS)
    from realtime import models, options
    assert options.DEFAULT_MODEL == models.DEFAULT_MODEL


def test_bad_input_is_reported_before_missing_weights(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope.mp4"), "--model", "adain-vgg19"]) == 1
    err = capsys.readouterr().err
    assert "nope.mp4: no such file" in err and "decoder" not in err


def test_unavailable_backend_and_device_are_one_line_errors(tmp_path, capsys, test_decoder_file):
    from media import make_clip

    src = make_clip(tmp_path / "in.mp4", frames=2)
    assert main(["convert", str(src), "-o", str(tmp_path / "o.mp4"), "--backend", "tensorrt",
                 "--decoder", str(test_decoder_file), "--no-progress"]) == 1
    assert "rtstyle[trt]" in capsys.readouterr().err
    if not __import__("torch").cuda.is_available():
        assert main(["convert", str(src), "-o", str(tmp_path / "o.mp4"), "--device", "cuda"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_negative_batch_is_refused(tmp_path, capsys):
    from media import make_clip

    src = make_clip(tmp_path / "in.mp4", frames=2)
    assert main(["convert", str(src), "-o", str(tmp_path / "o.mp4"), "--batch", "-1"]) == 1
    assert "--batch" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("command", [["live", "--input", "synth:", "--no-window", "--frames", "1"], ["serve"]])
def test_live_and_serve_on_cuda_without_a_gpu_are_one_line_errors(command, capsys):
    assert main([*command, "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA GPU" in err[0] and "Traceback" not in err[0]


def test_doctor_says_what_auto_does_on_this_cpu(monkeypatch, tmp_path):
    """The bf16 instructions found, the candidates measured, and the choices remembered for
    this machine and code (stale ones are not counted: they are measured again when used)."""
    import json

    import engines
    from realtime import doctor, tuning
    from tests.conftest import REAL_CANDIDATES

    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "candidates", REAL_CANDIDATES)
    monkeypatch.setattr(engines, "cpu_bf16", lambda: "avx512_bf16")
    folder = tmp_path / "choices"
    folder.mkdir()
    parts = {**tuning.machine_key("w", (1, 64, 64, 3)), "threads": 99}  # convert's own thread count
    for i, (backend, precision, code) in enumerate([("eager", "bf16", parts["code"]), ("eager", "bf16", parts["code"]),
                                                    ("onnxruntime", "fp32", "an older version")]):
        (folder / f"{i}.json").write_text(json.dumps({"parts": {**parts, "code": code}, "backend": backend,
                                                      "precision": precision}))
    (folder / "bad.json").write_text("{")
    rows = dict(doctor.cpu_rows())
    assert rows["cpu bf16"].startswith("avx512_bf16")
    assert "eager bf16" in rows["auto on the cpu"] and rows["auto on the cpu"].endswith(": eager bf16 x2")
    monkeypatch.setattr(engines, "cpu_bf16", lambda: None)
    rows = dict(doctor.cpu_rows())
    assert "fp32 only" in rows["cpu bf16"] and "eager bf16" not in rows["auto on the cpu"].split(";")[0]
