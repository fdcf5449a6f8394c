"""A failure at each step of the daemon's start-up closes what the earlier steps opened: no
worker process, shared-memory segment or camera is left behind."""

from __future__ import annotations

import os
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import psutil
import pytest

from edged.app import Daemon
from edged.config import parse_config
from tests.support import scaled, wait_until

SHM = Path("/dev/shm")


def children() -> list[psutil.Process]:
    """Child processes, without multiprocessing's own helpers (its resource tracker and fork
    server live as long as the test process)."""
    helpers = ("resource_tracker", "forkserver")
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue  # gone already
        if not any(h in cmdline for h in helpers):
            out.append(child)
    return out


@pytest.fixture
def before() -> set[int]:
    """The children there before the test: what an earlier test left is not this one's."""
    return {p.pid for p in children()}


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the shared-memory segments the worker creates in this test (other processes
    on the machine may create their own meanwhile, so /dev/shm as a whole is no measure)."""
    import edged.infer.worker as worker

    names: list[str] = []

    class Recording(SharedMemory):
        def __init__(self, name: str | None = None, create: bool = False, size: int = 0) -> None:
            super().__init__(name=name, create=create, size=size)
            if create:
                names.append(self.name)

    monkeypatch.setattr(worker, "SharedMemory", Recording)
    return names


def daemon(tmp_path: Path, capture: dict[str, Any], mqtt: dict[str, Any]) -> Daemon:
    cfg = parse_config(
        {
            "device": {"id": "cleanup"},
            # a worker process with shared memory, even without an Edge TPU
            "model": {"isolate_cpu": True, "num_threads": 1},
            "capture": capture,
            "mqtt": {"url": "mqtt://127.0.0.1:1", **mqtt},
        }
    )
    return Daemon(cfg, max_frames=1)


def assert_nothing_left(created: list[str], before: set[int]) -> None:
    """No process this test started is still running, and no segment it created is left.
    A killed worker may take a moment to be gone on a loaded machine; one that was left
    running is still there at the deadline."""

    def started() -> list[psutil.Process]:
        return [p for p in children() if p.pid not in before]

    assert wait_until(lambda: not started(), scaled(5)), (
        f"a worker process was left running: {started()}"
    )
    leaked = [name for name in created if (SHM / name.lstrip("/")).exists()]
    assert not leaked, f"shared memory left behind: {leaked}"


def test_the_worker_and_its_memory_exist_while_running(
    created: list[str], before: set[int]
) -> None:
    """The check below can see a leak: a started engine has both."""
    from edged.engine import open_engine

    cfg = parse_config({"model": {"isolate_cpu": True, "num_threads": 1}})
    engine = open_engine(cfg.model, cfg.classify)
    try:
        assert [p for p in children() if p.pid not in before], "no worker process"
        assert created and all((SHM / n.lstrip("/")).exists() for n in created)
    finally:
        engine.close()
    assert_nothing_left(created, before)


def test_engine_step_fails(tmp_path: Path, created: list[str], before: set[int]) -> None:
    from edged.infer.model import ModelError

    d = daemon(tmp_path, {"type": "replay"}, {})
    d.cfg = d.cfg.model_copy(
        update={"model": d.cfg.model.model_copy(update={"path": str(tmp_path / "none.tflite")})}
    )
    with pytest.raises((ModelError, FileNotFoundError)):
        d.run()
    assert_nothing_left(created, before)


def test_source_step_fails(tmp_path: Path, created: list[str], before: set[int]) -> None:
    d = daemon(tmp_path, {"type": "replay", "paths": [str(tmp_path / "missing")]}, {})
    with pytest.raises(FileNotFoundError):
        d.run()
    assert created, "the worker never started"
    assert_nothing_left(created, before)


def test_secret_step_fails(
    tmp_path: Path, fake_picamera2: Any, created: list[str], before: set[int]
) -> None:
    d = daemon(
        tmp_path,
        {"type": "picamera2"},
        {"username": "u", "password_file": str(tmp_path / "no-password")},
    )
    with pytest.raises(FileNotFoundError):
        d.run()
    assert created, "the worker never started"
    assert_nothing_left(created, before)
    assert fake_picamera2.instances[0].closed, "the camera was left open"


def test_publisher_step_fails(
    tmp_path: Path, fake_picamera2: Any, created: list[str], before: set[int]
) -> None:
    from edged.publish.mqtt import MqttConfigError

    password = tmp_path / "password"
    password.write_text("s3cret\n")
    os.chmod(password, 0o600)
    # a password without a user name: the publisher's constructor refuses it
    d = daemon(tmp_path, {"type": "picamera2"}, {"password_file": str(password)})
    with pytest.raises(MqttConfigError):
        d.run()
    assert created, "the worker never started"
    assert_nothing_left(created, before)
    assert fake_picamera2.instances[0].closed, "the camera was left open"
