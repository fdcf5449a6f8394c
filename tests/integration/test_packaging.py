"""The wheel holds what the daemon needs and nothing else, and builds without warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from a clean copy of the tree, and pip's output while building it."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".*cache"
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(base), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(base.glob("edged-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], proc.stdout + proc.stderr


def test_wheel_holds_the_daemon_and_its_data(wheel: tuple[Path, str]) -> None:
    names = set(zipfile.ZipFile(wheel[0]).namelist())
    for needed in (
        "edged/__main__.py",
        "edged/engine.py",
        "edged/commands/run.py",
        "edged/preprocess/image.py",
        "edged/models/efficientnet_lite0_int8.tflite",
        "edged/models/manifest.toml",
        "edged/samples/LICENSES.md",
        "edged/samples/chelsea_cat.jpg",
    ):
        assert needed in names, f"{needed} missing from the wheel"
    samples = {p.name for p in (ROOT / "edged" / "samples").glob("*.jpg")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("edged/samples/")} >= samples


def test_wheel_holds_nothing_else(wheel: tuple[Path, str]) -> None:
    names = zipfile.ZipFile(wheel[0]).namelist()
    outside = [n for n in names if not n.startswith(("edged/", "edged-"))]
    assert outside == []
    # the model build script and the float reference model are for rebuilding, not running
    assert not [n for n in names if n.startswith("edged/models/") and n.endswith(".py")]
    assert "edged/models/efficientnet_lite0_fp32.tflite" not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_builds_without_warnings(wheel: tuple[Path, str]) -> None:
    # pip's own notes about this machine's index configuration are not the package's
    lines = [ln for ln in wheel[1].splitlines() if not ln.startswith("WARNING: Location")]
    warnings = [ln for ln in lines if "warn" in ln.lower() or ln.strip() == "!!"]
    assert warnings == [], "\n".join(lines)
