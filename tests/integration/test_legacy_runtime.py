"""The legacy runtime: tflite-runtime 2.14 (numpy < 2), in a small venv of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BUNDLED, CONFIDENT, CONFIDENT_LABEL, ROOT, SAMPLES

LEGACY = ROOT / ".venv-legacy"


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    py = LEGACY / "bin" / "python"
    marker = LEGACY / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LEGACY)], check=True)
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
        if r.returncode != 0:
            pytest.fail(f"cannot install tflite-runtime 2.14 with numpy<2:\n{r.stderr[-2000:]}")
        subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, capture_output=True)
        marker.touch()
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
