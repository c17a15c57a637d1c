"""``rtstyle batch``: many files, or long ones, with one style, here or on a Ray cluster.

Each input (a file, or every video and photo in a folder) gets the options of ``rtstyle
convert`` and its default output name in ``--output-dir``; all are checked before any work,
and one that fails a check is reported while the others go on. Without ``--ray`` the files
run one after another in this process. With ``--ray`` they run on a Ray actor pool
(``workers.RayPool``) and a video longer than ``--segment-s`` is cut at keyframes into parts
that different workers stylize (``segments``), each warming the smoother on ``--overlap``
frames before its cut; the parts are joined here without re-encoding and the audio is copied
once, so every output has the frames, timing and audio that ``rtstyle convert`` gives it.
On Ray the longest tasks start first.

One progress bar counts the frames of all files (files done, frames/s, ETA); a part whose
worker dies is run again (``--retries``); a file that fails is reported and the others
finish; Ctrl-C stops the workers and keeps only the files already complete (nothing
incomplete is ever under a final name). A table of the files ends the run.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from realtime import UserError
from realtime.convert import ConvertConfig, default_output, preflight
from realtime.images import is_image_file
from realtime.options import add_config_args, add_model_args, check_device, config_from_args, opt, usable_cores
from realtime.outputs import partial_name
from realtime.segments import Segment, join_segments, plan_segments
from realtime.workers import Event, InlinePool, RayPool, Task

log = logging.getLogger(__name__)


class RayAddress:
    """The values ``--ray`` takes (``in`` tests a word): ``local``, ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``. Any other word after a bare ``--ray`` is an input, not an address."""

    PATTERN = re.compile(r"local|auto|ray://\S+|[\w.-]+:\d+")

    def __contains__(self, word) -> bool:
        return isinstance(word, str) and self.PATTERN.fullmatch(word) is not None

    def __iter__(self):
        return iter(("local", "auto", "HOST:PORT", "ray://HOST:PORT"))


@dataclass(frozen=True)
class BatchConfig:
    """The options of ``rtstyle batch`` beside those of ``convert``."""

    inputs: tuple[Path, ...] = opt(help="video or photo files, or folders (every video and photo in them)",
                                   flags=("inputs",), nargs="+", type=Path)
    output_dir: Path = opt(Path("."), "folder for the outputs, each named as `rtstyle convert` names it "
                           "(INPUT-STEM_STYLE.mp4, a photo in its own format)", flags=("-o", "--output-dir"),
                           type=Path, metavar="DIR")
    ray: str | None = opt(None, "run on Ray: the bare flag starts a local Ray runtime on this machine; "
                          "an ADDRESS (auto, HOST:PORT, ray://HOST:PORT) joins that cluster (default: none, the "
                          "files run one after another here)", nargs="?", const="local",
                          choices=RayAddress(), metavar="ADDRESS")
    workers: int = opt(0, "Ray workers, each loading the model once; 0: one per GPU of the cluster, "
                       "or one per --cpus-per-worker CPUs when it has none", range=(0, None))
    cpus_per_worker: int = opt(0, "CPU cores each Ray worker reserves and splits between decode, "
                               "network and encode; 0: 1 on a cluster without GPUs, else its CPUs "
                               "shared evenly by its GPU workers", range=(0, None))
    segment_s: float = opt(10.0, "with --ray: cut videos at keyframes into parts of at least this many "
                           "seconds that different workers stylize; 0: never cut", metavar="S",
                           range=(0.0, None))
    overlap: int = opt(8, "frames before each cut that a part stylizes, but does not write, so the "
                       "temporal smoother is warm at the cut", metavar="N", range=(0, None))
    retries: int = opt(2, "times a part runs again on a new worker when its worker dies", range=(0, None))
    progress: bool = opt(True, "show a progress bar")


@dataclass
class FileReport:
    """What became of one input: ``status`` ok, failed or interrupted."""

    input: Path
    output: Path | None = None
    status: str = "queued"
    parts: list[Segment] = field(default_factory=list)
    results: dict = field(default_factory=dict)  # part index (0 for a photo) -> (bytes, SegmentResult)
    frames: int = 0
    retries: int = 0
    error: str = ""
    started: float | None = None
    seconds: float = 0.0


@dataclass
class BatchResult:
    files: list[FileReport]
    seconds: float
    engine: str
    where: str
    join_seconds: float = 0.0
    interrupted: bool = False

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.status != "ok"]


def list_inputs(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given (checked later, one by one); a folder's regular files that are videos or
    photos by their content, sorted by name. A folder without any is a ``UserError``."""
    import av

    found = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        media = []
        for f in sorted(p for p in path.iterdir() if p.is_file()):
            if is_image_file(f):
                media.append(f)
                continue
            try:
                with av.open(str(f)) as c:
                    if c.streams.video and c.format.name != "tty":  # FFmpeg reads any text as "tty" video
                        media.append(f)
            except av.FFmpegError:
                log.debug("%s: not a video or photo, left out", f)
        if not media:
            raise UserError(f"{path}: no videos or photos in this folder")
        found += media
    return found


def _prepare(cfg: BatchConfig, base: ConvertConfig, split: bool) -> tuple[list[FileReport], list[Task]]:
    """Check every input and plan its parts; a file that fails is reported, not raised."""
    reports, tasks, outputs = [], [], {}
    for i, path in enumerate(list_inputs(cfg.inputs)):
        report = FileReport(path)
        reports.append(report)
        try:
            is_image = is_image_file(path)
            out = cfg.output_dir / default_output(dataclasses.replace(base, input=path), is_image).name
            if out in outputs:
                raise UserError(f"{path}: its output {out} is also that of {outputs[out]}; rename one of them")
            file_cfg = dataclasses.replace(base, input=path, output=out)
            preflight(file_cfg)
            outputs[out] = path
            report.output = out
            report.parts = [None] if is_image else plan_segments(path, cfg.segment_s if split else 0, cfg.overlap)
        except UserError as e:
            report.status, report.error = "failed", str(e)
            continue
        tasks += [Task(i, file_cfg, part) for part in report.parts]
    return reports, tasks


def run_batch(cfg: BatchConfig, base: ConvertConfig, model: dict, *,
              on_event: Callable[[Event, object], None] | None = None) -> BatchResult:
    """Convert ``cfg.inputs`` with the options ``base`` (its input and output are ignored) and
    the model ``model`` (``models.load_model``'s keyword arguments). ``on_event(event, pool)``
    sees every pool event (tests use it). Never raises for one file's failure: see the
    reports; a KeyboardInterrupt stops the workers and returns with ``interrupted`` set."""
    t0 = time.perf_counter()
    if not cfg.output_dir.is_dir():
        raise UserError(f"{cfg.output_dir}: no such folder (--output-dir)")
    reports, tasks = _prepare(cfg, base, split=cfg.ray is not None)
    if cfg.ray is not None:  # the longest first: no long file starts last while the other workers idle
        tasks.sort(key=lambda t: -(t.part.frames + t.part.warm) if t.part else 0)
    pool = (RayPool(model, cfg.ray, workers=cfg.workers, cpus_per_worker=cfg.cpus_per_worker, retries=cfg.retries)
            if cfg.ray is not None else InlinePool(model, usable_cores()))
    result = BatchResult(reports, 0.0, "", pool.label)
    total = sum((p.frames + p.warm) if p else 1 for r in reports if r.status != "failed" for p in r.parts)
    bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=not cfg.progress, dynamic_ncols=True,
               desc="batch")
    skip = {i for i, r in enumerate(reports) if r.status == "failed"}
    try:
        for event in pool.run(tasks, skip):
            if on_event is not None:
                on_event(event, pool)
            result.join_seconds += _apply(event, reports[event.task.file], skip, bar)
            done = sum(r.status == "ok" for r in reports)
            bar.set_postfix_str(f"files {done}/{len(reports)}" + (f", {len(skip)} failed" if skip else ""))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        if not result.interrupted:
            result.engine = pool.engine()
        pool.close(interrupted=result.interrupted)
    for r in reports:
        if r.status in ("queued", "running"):
            r.status = "interrupted" if result.interrupted else "failed"
        r.results.clear()
    result.seconds = time.perf_counter() - t0
    return result


def _apply(event: Event, report: FileReport, skip: set[int], bar) -> float:
    """Update ``report`` with ``event``; join the file when its last part is done. -> seconds
    spent joining."""
    task = event.task
    if report.status == "failed":
        return 0.0
    report.started = report.started or time.perf_counter()
    report.status = "running"
    if event.kind == "frames":
        bar.update(event.value)
    elif event.kind == "retry":
        report.retries += 1
        log.warning("%s: part %d: %s; running it again (try %d)", report.input,
                    task.part.index if task.part else 0, event.value, task.attempt + 1)
    elif event.kind == "failed":
        error = event.value
        report.status, report.error = "failed", str(error) if isinstance(error, UserError) else \
            f"{type(error).__name__}: {error}"
        skip.add(task.file)
    elif event.kind == "done":
        data, stats = event.value
        report.results[task.part.index if task.part else 0] = (data, stats)
        if task.part is None:
            bar.update(1)
        if len(report.results) == len(report.parts):
            t = time.perf_counter()
            try:
                _finish(report)
            except (UserError, OSError) as e:
                report.status, report.error = "failed", str(e)
                skip.add(task.file)
            return time.perf_counter() - t
    return 0.0


def _finish(report: FileReport) -> None:
    """Write the file: a photo's bytes, or the video's parts joined with the source's audio."""
    out = report.output
    if report.parts == [None]:
        tmp = partial_name(out)
        try:
            tmp.write_bytes(report.results[0][0])
            tmp.replace(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        report.frames = 1
    else:
        ordered = [report.results[p.index] for p in report.parts]
        join_segments([data for data, _ in ordered], report.input, out)
        report.frames = sum(stats.frames for _, stats in ordered)
    report.status, report.seconds = "ok", time.perf_counter() - report.started
    report.results.clear()


def summary(result: BatchResult) -> str:
    """The table printed at the end: one line a file, then the totals."""
    rows = [("file", "status", "frames", "parts", "retries", "seconds", "output or error")]
    for r in result.files:
        rows.append((r.input.name, r.status, str(r.frames), str(len(r.parts)), str(r.retries),
                     f"{r.seconds:.1f}", str(r.output) if r.status == "ok" else r.error))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    ok = [r for r in result.files if r.status == "ok"]
    frames = sum(r.frames for r in ok)
    warm = sum(p.warm for r in ok for p in r.parts if p)
    where = "; ".join(filter(None, (result.where, result.engine)))
    lines.append(f"{len(ok)} of {len(result.files)} files, {frames} frames in {result.seconds:.1f} s "
                 f"({frames / result.seconds if result.seconds else 0:.1f} frames/s; {where}; "
                 f"joining {result.join_seconds:.2f} s, {warm} overlap frames)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def register_cli(sub) -> None:
    """Add ``rtstyle batch`` to the sub-command parsers ``sub``."""
    p = sub.add_parser("batch", help="stylize many files, or long ones, here or on a Ray cluster",
                       description="Stylize videos and photos (files or folders) with one style, with "
                       "the options of `rtstyle convert`. With --ray, files run in parallel on a Ray "
                       "cluster and long videos are cut at keyframes into parts that run in parallel "
                       "too, then joined without re-encoding: frames, timing and audio as `convert` "
                       "keeps them. Ray is the optional extra: pip install 'rtstyle[dist]'.")
    add_config_args(p, BatchConfig)
    add_config_args(p, ConvertConfig, skip=("input", "output", "progress"))
    add_model_args(p)
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    cfg = config_from_args(BatchConfig, args)
    base = config_from_args(ConvertConfig, args, input=Path("."), output=None, progress=False)
    check_device(args.device)
    model = dict(name=args.model, decoder=args.decoder, vgg=args.vgg, backend=args.backend, device=args.device)
    result = run_batch(cfg, base, model)
    print(summary(result), file=sys.stderr)
    if result.interrupted:
        print("rtstyle: interrupted: the workers were stopped; only the files marked ok were written",
              file=sys.stderr)
        return 130
    return 1 if result.failed else 0
