"""Journal fields and the systemd notify protocol, over a real datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import time
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


def test_a_full_notify_socket_drops_messages_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under systemd too (the process environment): a reader that stopped reading costs each
    message at most the send timeout, and one warning, never a blocked thread."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        timeout_s = 0.01
        n = Notifier(send_timeout_s=timeout_s)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
            filler.setblocking(False)
            filler.connect(str(path))
            with pytest.raises(BlockingIOError):
                while True:
                    filler.send(b"STATUS=filler")
        t0 = time.monotonic()
        for _ in range(5):
            n.status("fps=1.0")
        n.stopping()
        elapsed = time.monotonic() - t0
        assert 6 * timeout_s <= elapsed < 6 * timeout_s + 1.0  # each send waited, then gave up
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "sd_notify(STATUS) failed" in warnings[0].getMessage()
        server.setblocking(False)
        while True:  # the reader catches up: messages flow again
            try:
                server.recv(4096)
            except BlockingIOError:
                break
        n.status("fps=2.0")
        assert server.recv(4096) == b"STATUS=fps=2.0"
    finally:
        server.close()


def test_no_socket_no_watchdog_for_other_pid() -> None:
    n = Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert not n.enabled and n.watchdog_s is None
    n.ready("x")  # a no-op
