"""The on-disk cache for built engines: where it lives, how entries are keyed, and how an
entry is written and read so that a crash, a full disk or a stale file never poisons it.

Layout: ``cache_dir()/<backend>/<key><suffix>`` holds the artifact (a TensorRT ``.ep``, an
``.onnx``) and ``<key>.json`` beside it holds the parts the key was made from. The artifact
is written first and the JSON last, both atomically (temp name + ``os.replace``), so the
JSON is the commit marker: an entry without it, with other parts in it, or whose artifact
fails to load is a miss. A miss logs a warning naming the file, deletes the entry and
rebuilds; a cached file is never trusted beyond what loading and the metadata prove.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


def cache_dir() -> Path:
    """``$RTSTYLE_CACHE``, else ``$XDG_CACHE_HOME/rtstyle``, else ``~/.cache/rtstyle``."""
    if os.environ.get("RTSTYLE_CACHE"):
        return Path(os.environ["RTSTYLE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rtstyle"


def cache_key(**parts) -> str:
    """sha256 (hex) of the parts as canonical JSON; values must be JSON-able (str, int, lists)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """What the module computes, independent of any caller-supplied id: a hash of its class's
    name, the source of ``code_modules(module)`` (a code change invalidates entries) and its
    state dict (names, shapes, dtypes, values). Costs ~30 ms for the full network; done once
    per engine."""
    h = hashlib.sha256()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for mod in code_modules(module):
        h.update(mod.__name__.encode())
        h.update(source_bytes(mod))
    for name, t in module.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def code_modules(module: torch.nn.Module) -> list[ModuleType]:
    """The Python modules whose code decides what ``module`` computes, sorted by name: those
    that define the classes of it and its submodules, and the modules of the functions and
    classes that those import from their own package (one level: ``realtime.microast``
    brings ``realtime.adain`` and ``realtime.model``). torch's own are left to the library
    versions in the keys.

    Why more than the top class: the MicroAST frame decoder's ``UpConv`` changed (edge lines
    written in place -> ``torch.cat``) while ``FrameDecoder``'s source and its state dict
    stayed the same, so the cached ONNX graph of the old code kept loading."""
    found: dict[str, ModuleType] = {}
    for m in module.modules():
        mod = sys.modules.get(type(m).__module__)
        if mod is not None and not mod.__name__.startswith("torch"):
            found[mod.__name__] = mod
    for mod in list(found.values()):
        package = mod.__name__.split(".")[0]
        for obj in vars(mod).values():
            name = getattr(obj, "__module__", None) if callable(obj) else None
            if isinstance(name, str) and name.split(".")[0] == package and name in sys.modules:
                found.setdefault(name, sys.modules[name])
    return [found[name] for name in sorted(found)]


def source_bytes(mod: ModuleType) -> bytes:
    """A module's source; its compiled file where an install has no sources; else its
    package's version (empty if none)."""
    try:
        return inspect.getsource(mod).encode()
    except (OSError, TypeError):  # installed without .py files, or defined in a REPL
        try:
            return Path(mod.__file__).read_bytes()
        except (OSError, TypeError):
            package = sys.modules.get(mod.__name__.split(".")[0])
            return str(getattr(package, "__version__", "")).encode()


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` with a temp name in the same folder, then rename it to ``path``.

    The temp name keeps ``path``'s suffix (some savers check it) and is unique to the call, so
    two threads writing the same entry do not share one. On any error the temp file is removed
    and the error propagates; ``path`` is either absent or complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _remove(*paths: Path) -> None:
    for p in paths:
        Path(p).unlink(missing_ok=True)


def try_load(path: Path, parts: dict, load: Callable[[Path], T]) -> T | None:
    """The cached artifact at ``path`` loaded with ``load``, or None on a miss.

    A missing entry is a quiet miss. A present but bad entry (no metadata, metadata that
    does not match ``parts``, or a ``load`` that raises anything) logs a warning naming the
    file and is deleted, so the caller rebuilds it.
    """
    path = Path(path)
    meta = path.with_suffix(".json")
    if not path.exists() and not meta.exists():
        return None
    try:
        stored = json.loads(meta.read_text())
        if stored != json.loads(json.dumps(parts, default=str)):
            raise ValueError(f"metadata {meta.name} does not match this build (stale entry)")
        return load(path)
    except Exception as e:  # any failure to read a cache entry is a miss, by design
        log.warning("engine cache: ignoring and deleting bad entry %s (%s: %s)", path, type(e).__name__, e)
        _remove(path, meta)
        return None


def load_or_build(path: Path, parts: dict, build: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """Load the entry at ``path`` if it is good; else ``build(tmp)`` writes the artifact,
    which is committed atomically with its metadata and then loaded (so what runs is
    always what the next process will load)."""
    found = try_load(path, parts, load)
    if found is not None:
        log.info("engine cache: loaded %s", path)
        return found
    log.info("engine cache: building %s", path)
    _remove(path.with_suffix(".json"))
    atomic_write(path, build)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(parts, sort_keys=True, indent=1, default=str).encode())
    return load(path)
