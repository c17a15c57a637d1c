"""What CI runs: the tests that read ../shared/data must run there, not skip."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_requires_the_shared_data():
    assert "export RTSTYLE_REQUIRE_SHARED_DATA=1" in (ROOT / ".ci" / "run").read_text()


def test_missing_shared_data_fails_where_it_is_required(tmp_path):
    env = {**os.environ, "RTSTYLE_SHARED_DATA": str(tmp_path / "absent")}
    env.pop("RTSTYLE_REQUIRE_SHARED_DATA", None)  # CI sets it for this run
    test = "tests/test_styles.py::test_load_real_artwork"
    skipped = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                             cwd=ROOT, env=env, capture_output=True, text=True)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    env["RTSTYLE_REQUIRE_SHARED_DATA"] = "1"
    failed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert failed.returncode == 1 and "1 error" in failed.stdout  # the fixture fails: an error, not a skip
    assert "RTSTYLE_REQUIRE_SHARED_DATA=1 makes that a failure" in failed.stdout
