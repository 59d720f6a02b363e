"""qengine stays framework-agnostic: importing all of it pulls in no web or TUI framework."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import qengine


def test_importing_every_qengine_module_imports_no_framework():
    modules = [m.name for m in pkgutil.walk_packages(qengine.__path__, "qengine.")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'textual', 'flask', 'fastapi'})\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    assert len(modules) > 10
