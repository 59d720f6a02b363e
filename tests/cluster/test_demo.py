"""The README's demo command runs real tasks on a real cluster and stops it cleanly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cluster.conftest import ROOT

pytestmark = pytest.mark.cluster


def test_demo_runs_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env["DEMO_WORKDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "examples/demo.py"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "result=-2.0 success=True" in out
    assert "result 42" in out
    assert "[(0.5, 0.0), (0.5, 1.0), (0.5, 2.0), (0.5, 3.0)]" in out
    assert "[1, 2, 3]" in out
    assert "[-1.0, 1] (2 of 2 done)" in out
    assert "No module named 'my'" in out
    assert "qcluster exited with status 0" in out
    assert "hook: task" in (tmp_path / "cluster.log").read_text()
