"""Where batch tasks run: a ``Worker`` holds the model once and runs tasks (a part of a video,
or a photo); ``InlinePool`` runs them here, one at a time; ``RayPool`` runs them on an actor
pool on a Ray cluster (one worker per GPU, or per ``cpus_per_worker`` cores).

A pool's ``run(tasks)`` yields ``Event``s in the order things happen: ``frames`` (a task
stylized ``value`` more frames), ``done`` (``value``: the output file's bytes and the
``SegmentResult``, None for a photo), ``failed`` (``value``: the exception, the task's own
error, e.g. a damaged file) and ``retry`` (its worker died, killed or out of memory, and the
task runs again on a fresh one, at most ``retries`` times). Ray is imported only by
``RayPool``, so everything else works without it. PyAV is never used in a forked process:
Ray's workers are processes of their own that open their containers themselves.
"""
from __future__ import annotations

import collections
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from realtime import UserError
from realtime.convert import ConvertConfig, convert_image
from realtime.segments import Segment, convert_segment

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.25  # a worker reports frames at most this often
_PARTS_PREFIX = "rtstyle-parts-"


@dataclass(frozen=True)
class Task:
    """``cfg.input``'s part ``part`` (None: the whole photo) for file number ``file``;
    ``attempt`` counts the runs after a worker died."""

    file: int
    cfg: ConvertConfig
    part: Segment | None
    attempt: int = 0


@dataclass(frozen=True)
class Event:
    kind: str  # "frames", "done", "failed", "retry"
    task: Task
    value: object = None


def _sweep_parts(tmp_root: Path) -> None:
    """Remove the part folders that workers killed on this machine left behind."""
    for folder in tmp_root.glob(f"{_PARTS_PREFIX}*"):
        pid = folder.name[len(_PARTS_PREFIX):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # someone else's process, alive
            pass


class Worker:
    """Holds one ``Stylizer`` (``model``: the keyword arguments of ``models.load_model``) and
    runs tasks with ``cores`` cores. Outputs are made in a private temporary folder and handed
    back as bytes, so a worker on another machine needs no shared output folder (the inputs
    must be readable by every worker under the same path)."""

    def __init__(self, model: dict, cores: int):
        from realtime.models import load_model

        self.cores = cores
        self.stylizer = load_model(**model)
        root = Path(tempfile.gettempdir())
        _sweep_parts(root)
        self.tmp = root / f"{_PARTS_PREFIX}{os.getpid()}"
        self.tmp.mkdir(exist_ok=True)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        """Remove this worker's temporary folder (a killed worker's is swept by the next one)."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    def describe(self) -> str | None:
        """The model and the engine that ran it, None before the first task built the engine."""
        s = self.stylizer
        return f"{s.network.model}, {s.engine_label} on {s.device}" if s.engine_label else None

    def run(self, task: Task) -> Iterator[tuple[str, object]]:
        """("frames", n) as batches finish (at most every ``PROGRESS_EVERY_S``), then
        ("done", (bytes, SegmentResult | None))."""
        suffix = task.cfg.output.suffix if task.part is None else ".mp4"
        out = self.tmp / f"{uuid.uuid4().hex}{suffix}"
        try:
            if task.part is None:
                convert_image(task.cfg, self.stylizer, out)
                result = None
            else:
                frames, pending, last = convert_segment(task.cfg, self.stylizer, task.part, out, cores=self.cores), 0, 0.0
                while True:
                    try:
                        pending += next(frames)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    if time.monotonic() - last >= PROGRESS_EVERY_S:
                        yield "frames", pending
                        pending, last = 0, time.monotonic()
                if pending:
                    yield "frames", pending
            yield "done", (out.read_bytes(), result)
        finally:
            out.unlink(missing_ok=True)


class InlinePool:
    """Runs the tasks in this process, one after another, on one ``Worker``."""

    label = "here, one file at a time"

    def __init__(self, model: dict, cores: int):
        self.worker = Worker(model, cores)

    def engine(self) -> str:
        return self.worker.describe() or ""

    def run(self, tasks: Iterable[Task], skip: set[int]) -> Iterator[Event]:
        for task in tasks:
            if task.file in skip:
                continue
            try:
                for kind, value in self.worker.run(task):
                    yield Event(kind, task, value)
            except Exception as e:  # reported as this file's failure; the other files go on
                yield Event("failed", task, e)

    def close(self, *, interrupted: bool = False) -> None:
        self.worker.close()


class RayPool:
    """An actor pool on a Ray cluster: ``address`` "local" starts a Ray runtime on this machine
    (stopped by ``close``), anything else joins that cluster (``ray.init(address)``). ``workers``
    actors (0: one per GPU of the cluster when ``model['device']`` allows CUDA and there are
    GPUs, else one per ``cpus_per_worker`` of its CPUs), each reserving ``cpus_per_worker``
    cores (0: 1 without GPUs, else the CPUs shared evenly by the GPU workers) and one GPU if
    there are any, load the model once. A task whose worker dies is run again on a new
    worker, at most ``retries`` times; tasks of files in ``skip`` are not started."""

    def __init__(self, model: dict, address: str, *, workers: int = 0, cpus_per_worker: int = 0,
                 retries: int = 2):
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray: pip install 'rtstyle[dist]'") from None
        from realtime.options import usable_cores

        self._ray, self.retries = ray, retries
        self._started = not ray.is_initialized()
        if self._started:
            kw = dict(num_cpus=usable_cores()) if address == "local" else {}
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(f"--ray {address}: cannot start or join a Ray cluster ({e})") from None
        try:
            res = ray.cluster_resources()
            gpus = int(res.get("GPU", 0)) if (model.get("device") or "cuda").startswith("cuda") else 0
            cpus = int(res.get("CPU", 1))
            cpus_per_worker = cpus_per_worker or (max(1, cpus // gpus) if gpus else 1)
            count = workers or (gpus or max(1, cpus // cpus_per_worker))
            if count * cpus_per_worker > cpus or (gpus and count > gpus):
                raise UserError(f"{count} workers with {cpus_per_worker} CPUs{' and a GPU' if gpus else ''} "
                                f"each do not fit this Ray cluster ({cpus} CPUs, {gpus} GPUs); "
                                "lower --workers or --cpus-per-worker")
            self._options = dict(num_cpus=cpus_per_worker, num_gpus=1 if gpus else 0, max_restarts=0)
            self._remote = ray.remote(Worker).options(**self._options)
            self._model, self._cores = model, cpus_per_worker
            self.actors = [self._new() for _ in range(count)]
            ray.get([a.pid.remote() for a in self.actors])  # each has loaded the model
        except ray.exceptions.RayActorError as e:
            self.close()
            lines = str(e).strip().splitlines()  # Ray's account, ending with the worker's error
            raise UserError(f"the Ray workers could not load the model: {lines[-1] if lines else e}") from None
        except BaseException:
            self.close()
            raise
        self.label = f"Ray, {count} workers ({cpus_per_worker} CPU{'s' * (cpus_per_worker > 1)}" \
                     f"{' + 1 GPU' if gpus else ''} each)"

    def _new(self):
        return self._remote.remote(self._model, self._cores)

    def engine(self) -> str:
        labels = self._ray.get([a.describe.remote() for a in self.actors])
        return next((label for label in labels if label), "")

    def pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self.actors])

    def run(self, tasks: Iterable[Task], skip: set[int]) -> Iterator[Event]:
        ray = self._ray
        died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        todo = collections.deque(tasks)
        idle, running = list(self.actors), {}
        while todo or running:
            while idle and todo:
                task = todo.popleft()
                if task.file in skip:
                    continue
                actor = idle.pop()
                running[actor.run.options(num_returns="streaming").remote(task)] = (actor, task)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for stream in ready:
                actor, task = running[stream]
                try:
                    kind, value = ray.get(next(stream))
                except StopIteration:  # ended without a result: only after "done", never here
                    kind, value = "failed", RuntimeError(f"worker ended {task.cfg.input} part without a result")
                except ray.exceptions.RayTaskError as e:  # the task's own error, e.g. damaged input
                    kind, value = "failed", e.as_instanceof_cause()
                except died as e:
                    del running[stream]
                    fresh = self._new()
                    self.actors[self.actors.index(actor)] = fresh
                    idle.append(fresh)
                    if task.attempt < self.retries:
                        again = Task(task.file, task.cfg, task.part, task.attempt + 1)
                        todo.appendleft(again)
                        yield Event("retry", again, f"{type(e).__name__}: worker died")
                    else:
                        yield Event("failed", task, RuntimeError(f"its worker died {task.attempt + 1} times"))
                    continue
                if kind != "frames":
                    del running[stream]
                    idle.append(actor)
                yield Event(kind, task, value)

    def close(self, *, interrupted: bool = False) -> None:
        """Stop the workers (``interrupted``: at once, killing what they run; else after they
        removed their temporary folders), and the local runtime if it was started here."""
        ray = self._ray
        actors, self.actors = getattr(self, "actors", []), []
        if not interrupted:
            try:
                ray.get([a.close.remote() for a in actors], timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass  # a dead worker's folder is swept by the next worker on its machine
        for actor in actors:
            ray.kill(actor)
        for actor in actors:  # returns once Ray knows each one is dead
            try:
                ray.get(actor.pid.remote())
            except ray.exceptions.RayActorError:
                pass
        if self._started and ray.is_initialized():
            ray.shutdown()
