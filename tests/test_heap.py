"""Keeping freed memory (realtime/heap.py): a freed block is reused without page faults."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from realtime import heap

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# A frame's worth of work done 30 times (a conv, a ReLU, a 2x upsampling of an 8 MB map):
# prints the page faults of frames 3..30.
LOOP = """
import resource, torch
import torch.nn.functional as F
from realtime import heap
print(heap.keep_freed_memory())
torch.set_num_threads(1)
x, w = torch.rand(1, 8, 512, 512), torch.rand(8, 8, 3, 3)
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    F.interpolate(F.conv2d(x, w, padding=1).relu(), scale_factor=2.0, mode="bilinear")
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[2:]))
"""


def _faults(env_value: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env["RTSTYLE_KEEP_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, check=True)
    state, faults = out.stdout.strip().splitlines()
    return state, int(faults)


def test_freed_memory_is_reused_without_page_faults():
    """Without the setting each frame touches its 32 MB of output anew (~8 000 pages); with
    it, freed blocks are reused (glibc's aligned allocations still split a block now and then:
    a few frames fault)."""
    off, faults_off = _faults("off")
    assert off == "off: RTSTYLE_KEEP_MEMORY=off"
    assert faults_off > 28 * 6000
    state, faults = _faults("1")
    assert state.startswith("freed memory is kept")
    assert faults < 0.3 * faults_off


def test_status_says_what_happened():
    # this pytest process may already run networks on the CPU: either answer names the setting
    # (this process keeps freed memory anyway as soon as a test builds a Stylizer on the CPU)
    done = heap.keep_freed_memory()
    assert heap.status() == done
    assert done.startswith(("freed memory is kept", "off: RTSTYLE_KEEP_MEMORY="))
