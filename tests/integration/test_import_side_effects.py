"""Importing edged's hardware discovery loads no hardware library: checked in a fresh
interpreter, the only place where sys.modules shows what an import pulled in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_import_loads_no_hardware_library() -> None:
    code = (
        "import sys, edged.health.devices, edged.capture.cameras; "
        "print(sorted(m for m in ('pycoral', 'picamera2', 'libcamera') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert out.strip() == "[]"
