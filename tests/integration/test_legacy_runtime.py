"""The legacy runtime: tflite-runtime 2.14 (numpy < 2), in a small venv of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BUNDLED, CONFIDENT, CONFIDENT_LABEL, ROOT, SAMPLES

LEGACY = ROOT / ".venv-legacy"
# tflite-runtime 2.14 has wheels for CPython 3.8 to 3.11 only, and edged needs 3.11 or newer
LEGACY_PYTHON = (3, 11)
WHY = "tflite-runtime 2.14 has wheels for CPython <= 3.11 only, and edged needs >= 3.11"


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (int(out[0]), int(out[1])) if len(out) == 2 else None


def _interpreter() -> str | None:
    """This interpreter if it is a 3.11, else a ``python3.11`` on PATH (Debian 12's python3,
    or one from pyenv), else None: Debian 13 and newer ship no 3.11."""
    if sys.version_info[:2] == LEGACY_PYTHON:
        return sys.executable
    other = shutil.which("python{}.{}".format(*LEGACY_PYTHON))
    return other if other and _version(other) == LEGACY_PYTHON else None


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    """A venv with tflite-runtime 2.14 and numpy < 2, made with a Python 3.11; skipped, saying
    why, where the machine has none."""
    base = _interpreter()
    if base is None:
        pytest.skip(f"no Python 3.11 on this machine (this one is {sys.version.split()[0]}): {WHY}")
    py = LEGACY / "bin" / "python"
    marker = LEGACY / ".installed"
    if not marker.exists() or marker.read_text().strip() != base:
        marker.unlink(missing_ok=True)
        venv = subprocess.run(
            [base, "-m", "venv", "--clear", str(LEGACY)], capture_output=True, text=True
        )
        if venv.returncode != 0:
            pytest.skip(f"{base} cannot make a venv (python3-venv missing?): {venv.stderr[-500:]}")
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        r = subprocess.run(
            [
                *pip,
                "tflite-runtime==2.14.0",
                "numpy<2",
                "pillow",
                "paho-mqtt>=2",
                "pydantic>=2",
                "rich",
                "psutil",
            ],
            capture_output=True,
            text=True,
        )
        if "No matching distribution found for tflite-runtime" in r.stderr:
            pytest.skip(f"PyPI offers no tflite-runtime 2.14 wheel for {base} on this machine")
        assert r.returncode == 0, (
            f"cannot install tflite-runtime 2.14 with numpy<2:\n{r.stderr[-2000:]}"
        )
        subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, capture_output=True)
        marker.write_text(f"{base}\n")
    return py


def test_tflite_runtime_with_numpy1(legacy_python: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    v = subprocess.run(
        [str(legacy_python), "-m", "edged", "version"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "runtime: tflite_runtime 2.14.0" in v.stdout and "numpy 1." in v.stdout
    r = subprocess.run(
        [
            str(legacy_python),
            "-m",
            "edged",
            "classify",
            "--json",
            "--model",
            str(BUNDLED),
            str(CONFIDENT),
            str(SAMPLES / "rocket.jpg"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["label"] for row in rows] == [CONFIDENT_LABEL, "missile"]


def test_bundled_model_on_the_legacy_runtime(legacy_python: Path) -> None:
    r = subprocess.run(
        [str(legacy_python), "-m", "edged", "classify", "--json", str(CONFIDENT)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[0]
    assert row["model"] == "efficientnet_lite0_int8.tflite" and row["label"] == CONFIDENT_LABEL
