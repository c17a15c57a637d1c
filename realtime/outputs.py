"""Output files, whatever writes them: the checks before any work and the partial files.

A sink writes ``path`` as ``partial_name(path)`` (``STEM.partial-PID.SUFFIX`` beside it) and
renames it when complete, so nothing incomplete is ever under the final name. The partial
is visible: a run that was killed (SIGKILL, out of memory) leaves it there, playable as far
as it got when the format allows (fragmented MP4), and ``partials`` finds such leftovers.
No PyAV here (live imports this before it opens a window: see ``realtime.sinks``).
"""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from realtime import MediaError


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def partial_name(path: str | os.PathLike, pid: int | None = None) -> Path:
    """Where a sink writes ``path`` until it is complete: ``STEM.partial-PID.SUFFIX`` beside it,
    visible (a killed run's file is there to see), same suffix (so the format is guessed right)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial-{os.getpid() if pid is None else pid}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def partials(path: str | os.PathLike) -> list[Path]:
    """The partial files of ``path`` left by runs that were killed (their process is gone)."""
    path = Path(path)
    found = []
    for p in path.parent.glob(f"{glob.escape(path.stem)}.partial-*{glob.escape(path.suffix)}"):
        pid = p.name[len(path.stem) + len(".partial-"): len(p.name) - len(path.suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            found.append(p)
    return sorted(found)


def check_output(path: str | os.PathLike, need_bytes: int = 0) -> None:
    """Before any work: ``path``'s directory exists, a file can be created in it, and it has
    ``need_bytes`` free. Raises MediaError naming the path and the cause."""
    path = Path(path)
    if not path.parent.is_dir():
        raise MediaError(f"{path}: the directory {path.parent} does not exist")
    probe = partial_name(path)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise MediaError(f"{path}: cannot write in {path.parent} ({_reason(e)})") from e
    try:
        os.unlink(probe)
    except OSError as e:
        raise MediaError(f"{path}: cannot remove a file in {path.parent} ({_reason(e)})") from e
    free = shutil.disk_usage(path.parent).free
    if free < need_bytes:
        raise MediaError(f"{path}: only {free / 2**20:.0f} MiB free in {path.parent}, "
                         f"about {need_bytes / 2**20:.0f} MiB needed")
