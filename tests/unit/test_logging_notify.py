"""Journal fields and the systemd notify protocol, over a real datagram socket."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from edged.health.notify import Notifier
from edged.logsetup import CONTEXT, set_context


def test_context_fields_are_added_to_records() -> None:
    set_context(device="d1", model="m.tflite", backend="cpu")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    assert CONTEXT.filter(record)
    assert record.EDGED_DEVICE == "d1" and record.EDGED_BACKEND == "cpu"  # type: ignore[attr-defined]


def test_notify_socket_protocol(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    try:
        env = {
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": "4000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        n = Notifier(env)
        assert n.enabled and n.watchdog_s == 4.0
        n.ready("backend=cpu model=m fps=1.0")
        n.ready("again")  # READY is sent once
        n.watchdog()
        got = [server.recv(4096).decode() for _ in range(2)]
        assert got == ["READY=1\nSTATUS=backend=cpu model=m fps=1.0", "WATCHDOG=1"]
    finally:
        server.close()


def test_notify_goes_through_systemd_python_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = pytest.importorskip(
        "systemd.daemon", reason="systemd-python not installed (optional: edged[systemd])"
    )
    calls: list[str] = []
    real = daemon.notify

    def spy(message: str) -> bool:
        calls.append(message)
        return bool(real(message))

    monkeypatch.setattr(daemon, "notify", spy)
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        n = Notifier()  # the process environment, as under systemd
        n.ready("backend=cpu model=m fps=2.0")
        assert server.recv(4096).decode() == "READY=1\nSTATUS=backend=cpu model=m fps=2.0"
        assert calls == ["READY=1\nSTATUS=backend=cpu model=m fps=2.0"]
    finally:
        server.close()


def test_no_socket_no_watchdog_for_other_pid() -> None:
    n = Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert not n.enabled and n.watchdog_s is None
    n.ready("x")  # a no-op
