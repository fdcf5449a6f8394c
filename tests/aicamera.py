"""The Raspberry Pi AI Camera for tests and bench: the real picamera2 package (0.3.38 from
PyPI) over the simulated sensor of tests/fakes/imx500_api (libcamera, the sensor's kernel
interfaces, the camera's frames).  The sensor's tensors are the bundled model's own int8
scores on the sample photos, so the labels the daemon publishes are real."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakes" / "imx500_api"
SAMPLES = ROOT / "edged" / "samples"
PHOTOS = sorted(SAMPLES.glob("*.jpg"))


def _load_sim() -> ModuleType:
    """tests/fakes/imx500_api/imx500_sim.py, as the fake libcamera imports it (one module, so
    that a test and an in-process camera share the sensor), without putting the fakes on
    ``sys.path`` (that is for the processes and tests that ask for the camera)."""
    if "imx500_sim" in sys.modules:
        return sys.modules["imx500_sim"]
    spec = importlib.util.spec_from_file_location("imx500_sim", FAKE / "imx500_sim.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["imx500_sim"] = module
    spec.loader.exec_module(module)
    return module


imx500_sim: Any = _load_sim()

PICAMERA2_VERSION = "0.3.38"


def picamera2_missing() -> str | None:
    """Why the real picamera2 cannot be used here (None: it can)."""
    spec = importlib.util.find_spec("picamera2")
    if spec is None or spec.origin is None or "site-packages" not in spec.origin:
        return (
            f"needs picamera2 {PICAMERA2_VERSION} from PyPI in the venv (make venv installs it "
            "where libcap-dev is present)"
        )
    from importlib.metadata import version

    if version("picamera2") != PICAMERA2_VERSION:
        return f"needs picamera2 {PICAMERA2_VERSION}, found {version('picamera2')}"
    try:  # picamera2's IMX500 class reads the network package with libarchive (C)
        importlib.import_module("libarchive")
    except (ImportError, OSError, AttributeError) as exc:
        return (
            "picamera2's IMX500 class needs the libarchive C library (make system-deps, or "
            f"apt install libarchive-tools): {exc}"
        )
    return None


@dataclass
class AiCamera:
    """One simulated AI camera: its files and the environment a daemon runs it with."""

    root: Path
    network: Path
    scores: Path
    photos: list[Path]

    def env(self, **knobs: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(FAKE), os.environ.get("PYTHONPATH", "")) if p)
        return {
            "PYTHONPATH": path,
            "FAKE_IMX500_ROOT": str(self.root),
            "FAKE_IMX500_IMAGES": os.pathsep.join(str(p) for p in self.photos),
            "FAKE_IMX500_SCORES": str(self.scores),
            **{f"FAKE_IMX500_{k.upper()}": v for k, v in knobs.items()},
        }

    @property
    def loads(self) -> int:
        f = self.root / "loads"
        return int(f.read_text()) if f.exists() else 0

    @property
    def roi(self) -> tuple[int, ...] | None:
        f = self.root / "roi"
        return tuple(int(v) for v in f.read_text().split()) if f.exists() else None


def bundled_labels() -> list[str]:
    from edged.config import ModelConfig
    from edged.engine import resolve_model_config
    from edged.infer.model import inspect_model

    model = inspect_model(resolve_model_config(ModelConfig()).path)
    assert model.embedded_labels is not None
    return list(model.embedded_labels)


def make_aicamera(
    workdir: Path,
    scores: Path,
    photos: list[Path] | None = None,
    *,
    name: str = "imx500_network_efficientnet_lite0.rpk",
    labels: bool = True,
) -> AiCamera:
    root = workdir / "imx500"
    root.mkdir(parents=True, exist_ok=True)
    network = imx500_sim.write_rpk(
        workdir / name, labels=bundled_labels() if labels else None, softmax=False
    )
    return AiCamera(root, network, scores, photos or PHOTOS)


@pytest.fixture(scope="session", name="sensor_scores")
def sensor_scores_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model's int8 output on each sample photo (computed once)."""
    path = tmp_path_factory.mktemp("imx500") / "scores.npz"
    imx500_sim.write_scores(path, PHOTOS)
    return path


@pytest.fixture(name="aicamera")
def aicamera_fixture(tmp_path: Path, sensor_scores: Path) -> AiCamera:
    why = picamera2_missing()
    if why:
        pytest.skip(why)
    return make_aicamera(tmp_path, sensor_scores)


@pytest.fixture(name="imx500_here")
def imx500_here_fixture(aicamera: AiCamera, monkeypatch: pytest.MonkeyPatch) -> Iterator[AiCamera]:
    """The simulated AI camera in this process: the real picamera2 imported afresh over the
    fake libcamera, the sensor's state new."""
    for key, value in aicamera.env().items():
        if key != "PYTHONPATH":
            monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(FAKE))
    _forget_camera_modules()
    imx500_sim.SENSOR = imx500_sim.Sensor()
    imx500_sim._subdev_fds.clear()
    try:
        yield aicamera
    finally:
        _forget_camera_modules()


def _forget_camera_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("picamera2", "libcamera", "pykms"):
            del sys.modules[name]
