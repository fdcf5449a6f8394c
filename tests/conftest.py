from __future__ import annotations

import os

# as the edged command does (edged/__main__.py): one BLAS thread for edged's small matrices
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import FIXTURES, Mosquitto, acl_mosquitto


class _ExceptionRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_log_exception(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test fails if code under test caught an exception and only logged it."""
    recorder = _ExceptionRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield
    finally:
        root.removeHandler(recorder)
    if recorder.records and not request.node.get_closest_marker("allow_logged_exceptions"):
        first = recorder.records[0]
        pytest.fail(f"exception logged during the test: {first.getMessage()}", pytrace=False)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"needs the shared fixtures directory {FIXTURES}")
    return FIXTURES


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


FAKE_PICAMERA2 = Path(__file__).resolve().parent / "fakes" / "picamera2_api"


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The fake picamera2 package (tests/fakes/picamera2_api) in place of the real one, its
    cameras showing a red 640x480 scene; ``.instances`` holds every camera opened."""
    import numpy as np
    from PIL import Image

    img = tmp_path / "scene.png"
    arr = np.zeros((480, 640, 3), np.uint8)
    arr[..., 0] = 200  # red scene
    Image.fromarray(arr).save(img)
    monkeypatch.setenv("FAKE_PICAMERA2_IMAGE", str(img))
    monkeypatch.syspath_prepend(str(FAKE_PICAMERA2))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    picamera2.instances.clear()
    yield picamera2
    sys.modules.pop("picamera2", None)


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto with the fleet's ACL and the users of tests.support.ACL_USERS."""
    broker = acl_mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()
