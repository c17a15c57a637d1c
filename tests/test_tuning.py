"""--backend auto on the CPU: candidates measured on the stylizer's own network, the fastest
accurate one chosen and remembered on disk; inaccurate ones never chosen."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import engines
from realtime import tuning
from realtime.stylizer import StyleSettings, Stylizer
from tests.conftest import REAL_CANDIDATES


def test_the_choice_is_measured_once_and_remembered(tiny_encoder, tiny_decoder, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="realtime.tuning")
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "candidates", REAL_CANDIDATES)
    monkeypatch.setattr(tuning, "other_cores", lambda before, after: 0.0)  # a quiet machine (the busy case: below)
    calls = []
    real_measure = tuning.measure
    monkeypatch.setattr(tuning, "measure", lambda run_with: calls.append(1) or real_measure(run_with))
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8))
    st = Stylizer(tiny_encoder, tiny_decoder, device="cpu", weights_id="tiny")
    code = st.encode_style(np.full((64, 64, 3), 90, np.uint8))
    out = st(frames, StyleSettings(code))
    (saved,) = (tmp_path / "choices").glob("*.json")
    record = json.loads(saved.read_text())
    tried = [(r["backend"], r["precision"]) for r in record["rows"]]
    assert tried == REAL_CANDIDATES() and tried[0] == ("eager", "fp32")
    enc_p, _, dec_p = record["precision"].partition(",")
    assert record["backend"] == st.engine_name
    engine_dtypes = (st.encoder_engine.dtype, st.decoder_engine.dtype)
    assert (enc_p, dec_p or enc_p) == tuple(engines.precision_name(d) for d in engine_dtypes)
    picked = (record["backend"], record["precision"])
    chosen = next(r for r in record["rows"] if (r["backend"], r["precision"]) == picked)
    assert chosen["eligible"] and chosen["ms"] == min(r["ms"] for r in record["rows"] if r["eligible"])
    # the wait is explained where it happens: what is measured, then what was chosen and where it is kept
    said = [r.getMessage() for r in caplog.records if r.name == "realtime.tuning"]
    assert len(said) == 2 and "measuring the CPU engines on 64x48 frames" in said[0]
    assert f"{record['backend']} {record['precision']}" in said[1] and str(tmp_path / "choices") in said[1]
    again = Stylizer(tiny_encoder, tiny_decoder, device="cpu", weights_id="tiny")
    assert torch.equal(again(frames, StyleSettings(code)), out) and calls == [1]  # read back, not measured
    assert len([r for r in caplog.records if r.name == "realtime.tuning"]) == 2  # nothing new to say


def test_an_inaccurate_variant_is_never_chosen_however_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "candidates", lambda: [("eager", "fp32"), ("eager", "bf16")])
    ref = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    noisy = torch.full_like(ref, 40)  # 16 dB against the reference
    rows = tuning.measure(lambda backend, precision: (lambda: ref) if precision == "fp32" else (lambda: noisy), reps=2)
    assert [r["eligible"] for r in rows] == [True, False] and rows[1]["psnr_db"] < tuning.MIN_PSNR_DB
    rows[1]["ms"] = rows[0]["ms"] / 10  # far faster, still wrong
    monkeypatch.setattr(tuning, "measure", lambda run_with: rows)
    assert tuning.choose(lambda b, p: None, "w", (1, 8, 8, 3)) == ("eager", "fp32")


def test_variants_are_timed_in_interleaved_rounds_and_a_passing_load_does_not_decide(monkeypatch):
    """The choice is remembered, so one disturbed measurement must not pick it: bf16 is the
    faster variant here, but a load slows two of its three rounds to 10x (on a fake clock)."""
    monkeypatch.setattr(tuning, "candidates", lambda: [("eager", "fp32"), ("eager", "bf16")])
    clock, calls = [0.0], []
    cost = {"fp32": [0.010] * 4, "bf16": [0.006, 0.060, 0.060, 0.006]}  # warm-up, then 3 rounds
    monkeypatch.setattr(tuning.time, "perf_counter", lambda: clock[0])
    frame = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)

    def run_with(backend, precision):
        def run():
            calls.append(precision)
            clock[0] += cost[precision][sum(c == precision for c in calls) - 1]
            return frame
        return run

    rows = tuning.measure(run_with, reps=3)
    assert calls == ["fp32", "bf16"] + ["fp32", "bf16"] * 3  # built and warmed up, then A B A B A B
    assert [round(r["ms"], 6) for r in rows] == [10.0, 6.0] and all(r["eligible"] for r in rows)


def test_a_variant_that_fails_while_timed_is_a_row_with_its_error(monkeypatch):
    monkeypatch.setattr(tuning, "candidates", lambda: [("eager", "fp32"), ("eager", "bf16")])
    frame, runs = torch.zeros(1, 8, 8, 3, dtype=torch.uint8), []

    def run_with(backend, precision):
        def run():
            runs.append(precision)
            if precision == "bf16" and runs.count("bf16") == 2:
                raise RuntimeError("out of memory")
            return frame
        return run

    rows = tuning.measure(run_with, reps=3)
    assert rows[0]["eligible"] and "ms" in rows[0]
    assert rows[1] == {"backend": "eager", "precision": "bf16", "error": "RuntimeError: out of memory",
                       "eligible": False}
    assert runs.count("bf16") == 2  # not run again once it failed


def test_a_choice_measured_while_other_programs_kept_the_cpu_busy_is_not_remembered(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="realtime.tuning")
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "candidates", lambda: [("eager", "fp32"), ("eager", "bf16")])
    frame, measured = torch.zeros(1, 8, 8, 3, dtype=torch.uint8), []
    monkeypatch.setattr(tuning, "measure", lambda run_with: measured.append(1) or [
        {"backend": "eager", "precision": "fp32", "ms": 9.0, "psnr_db": float("inf"), "eligible": True},
        {"backend": "eager", "precision": "bf16", "ms": 5.0, "psnr_db": 40.0, "eligible": True}])
    cores = tuning.machine_key("w", frame.shape)["cores"]
    monkeypatch.setattr(tuning, "other_cores", lambda before, after: cores * 0.9)  # a busy machine
    monkeypatch.setattr(tuning, "_BUSY_CHOICES", {})  # a fresh process
    assert tuning.choose(lambda b, p: None, "w", tuple(frame.shape)) == ("eager", "bf16")  # used for this run
    assert not (tmp_path / "choices").exists() and "not remembered" in caplog.text
    # the same process keeps it (a second stylizer, a Ray worker's next segment) ...
    assert tuning.choose(lambda b, p: None, "w", tuple(frame.shape)) == ("eager", "bf16") and measured == [1]
    monkeypatch.setattr(tuning, "_BUSY_CHOICES", {})  # ... the next process measures again, quiet this time
    monkeypatch.setattr(tuning, "other_cores", lambda before, after: 0.0)
    tuning.choose(lambda b, p: None, "w", tuple(frame.shape))
    monkeypatch.setattr(tuning, "_BUSY_CHOICES", {})
    tuning.choose(lambda b, p: None, "w", tuple(frame.shape))  # read back from the file
    assert measured == [1, 1] and len(list((tmp_path / "choices").glob("*.json"))) == 1


def test_other_programs_cpu_use_is_read_from_proc():
    """What the busy check reads: nothing of ours counts as other programs' use."""
    before = tuning.cpu_use()
    if before is None:
        pytest.skip("no /proc here")
    t0 = tuning.time.monotonic()
    while tuning.time.monotonic() - t0 < 0.3:  # our own work: not "other programs"
        pass
    after = tuning.cpu_use()
    assert after[2] > before[2]  # our process's CPU time grew
    assert after[1] - before[1] >= 0.5 * (after[2] - before[2])  # and the CPUs' busy time with them
    assert tuning.other_cores(before, after) is not None and tuning.other_cores(before, before) is None


def test_accuracy_is_judged_against_fp32_even_when_fp32_fails_a_timed_round(monkeypatch):
    monkeypatch.setattr(tuning, "candidates", lambda: [("eager", "fp32"), ("eager", "bf16")])
    ref, noisy, runs = torch.zeros(1, 8, 8, 3, dtype=torch.uint8), torch.full((1, 8, 8, 3), 40, dtype=torch.uint8), []

    def run_with(backend, precision):
        def run():
            runs.append(precision)
            if precision == "fp32" and runs.count("fp32") == 2:
                raise RuntimeError("out of memory")
            return ref if precision == "fp32" else noisy
        return run

    rows = tuning.measure(run_with, reps=2)
    assert "error" in rows[0] and rows[1]["psnr_db"] < tuning.MIN_PSNR_DB and not rows[1]["eligible"]


def test_when_nothing_runs_accurately_auto_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "candidates", lambda: [("eager", "fp32"), ("eager", "bf16")])
    monkeypatch.setattr(tuning, "measure", lambda run_with: [
        {"backend": "eager", "precision": "fp32", "error": "RuntimeError: broken", "eligible": False},
        {"backend": "eager", "precision": "bf16", "error": "RuntimeError: no eager fp32 reference", "eligible": False}])
    with pytest.raises(engines.EngineUnavailable, match="eager fp32: RuntimeError: broken"):
        tuning.choose(lambda b, p: None, "w", (1, 8, 8, 3))


def test_a_remembered_choice_needs_no_calibration_picture(tiny_encoder, tiny_decoder, monkeypatch, tmp_path):
    monkeypatch.setenv("RTSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "candidates", REAL_CANDIDATES)
    monkeypatch.setattr(tuning, "other_cores", lambda before, after: 0.0)
    frames = torch.zeros((1, 48, 64, 3), dtype=torch.uint8)
    first = Stylizer(tiny_encoder, tiny_decoder, device="cpu", weights_id="tiny")
    code = first.encode_style(np.full((64, 64, 3), 90, np.uint8))
    first(frames, StyleSettings(code))  # measured and remembered

    def refuse(*args):
        raise AssertionError("calibration made for a remembered choice")

    monkeypatch.setattr(tuning, "calibration_frame", refuse)
    monkeypatch.setattr(tuning, "calibration_style", refuse)
    again = Stylizer(tiny_encoder, tiny_decoder, device="cpu", weights_id="tiny")
    assert again(frames, StyleSettings(code)).shape == frames.shape


def test_code_digest_without_sources(monkeypatch):
    """An install without .py files still keys its choices (on the compiled files), rather
    than failing every CPU ``--backend auto`` run and ``rtstyle doctor``."""
    import inspect

    with_sources = tuning.code_digest()
    tuning.code_digest.cache_clear()

    def no_source(_):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    try:
        assert tuning.code_digest() == with_sources  # here the module files are the .py files themselves
        tuning.code_digest.cache_clear()
        monkeypatch.setattr(tuning, "source_bytes", lambda module: f"{module.__name__} compiled".encode())
        assert tuning.machine_key("w", (1, 8, 8, 3))["code"] != with_sources
    finally:
        tuning.code_digest.cache_clear()
