"""A failure at each step of the daemon's start-up closes what the earlier steps opened: no
worker process, shared-memory segment or camera is left behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from edged.app import Daemon
from edged.config import parse_config

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


def segments() -> set[str]:
    return {p.name for p in SHM.iterdir()} if SHM.is_dir() else set()


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


def assert_nothing_left(before: set[str]) -> None:
    assert children() == [], "a worker process was left running"
    leaked = {s for s in segments() - before if s.startswith("psm_")}
    assert not leaked, f"shared memory left behind: {leaked}"


def test_the_worker_and_its_memory_exist_while_running(tmp_path: Path) -> None:
    """The check below can see a leak: a started engine has both."""
    from edged.engine import open_engine

    cfg = parse_config({"model": {"isolate_cpu": True, "num_threads": 1}})
    before = segments()
    engine = open_engine(cfg.model, cfg.classify)
    try:
        assert children(), "no worker process"
        assert segments() - before, "no shared-memory segment"
    finally:
        engine.close()
    assert_nothing_left(before)


def test_engine_step_fails(tmp_path: Path) -> None:
    from edged.infer.model import ModelError

    before = segments()
    d = daemon(tmp_path, {"type": "replay"}, {})
    d.cfg = d.cfg.model_copy(
        update={"model": d.cfg.model.model_copy(update={"path": str(tmp_path / "none.tflite")})}
    )
    with pytest.raises((ModelError, FileNotFoundError)):
        d.run()
    assert_nothing_left(before)


def test_source_step_fails(tmp_path: Path) -> None:
    before = segments()
    d = daemon(tmp_path, {"type": "replay", "paths": [str(tmp_path / "missing")]}, {})
    with pytest.raises(FileNotFoundError):
        d.run()
    assert_nothing_left(before)


def test_secret_step_fails(tmp_path: Path, fake_picamera2: Any) -> None:
    before = segments()
    d = daemon(
        tmp_path,
        {"type": "picamera2"},
        {"username": "u", "password_file": str(tmp_path / "no-password")},
    )
    with pytest.raises(FileNotFoundError):
        d.run()
    assert_nothing_left(before)
    assert fake_picamera2.instances[0].closed, "the camera was left open"


def test_publisher_step_fails(tmp_path: Path, fake_picamera2: Any) -> None:
    from edged.publish.mqtt import MqttConfigError

    password = tmp_path / "password"
    password.write_text("s3cret\n")
    os.chmod(password, 0o600)
    before = segments()
    # a password without a user name: the publisher's constructor refuses it
    d = daemon(tmp_path, {"type": "picamera2"}, {"password_file": str(password)})
    with pytest.raises(MqttConfigError):
        d.run()
    assert_nothing_left(before)
    assert fake_picamera2.instances[0].closed, "the camera was left open"
