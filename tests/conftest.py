from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

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
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto with the fleet's ACL and the users of tests.support.ACL_USERS."""
    broker = acl_mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()
