"""The daemon on a machine without a camera (the Debian package's default configuration on
a Pi with none connected), through the real notify protocol: it reports ready, names what is
missing in STATUS=, keeps the watchdog fed past health.stall_s (restarting cannot bring a
camera) and says so once in its log, not on every attempt.  The camera library is the
stand-in for picamera2 (tests/fakes), set to see no camera."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.conftest import FAKE_PICAMERA2
from tests.support import Mosquitto, start_edged, stop_process, write_config

STALL_S = 1.0


def test_no_camera_ready_status_and_watchdog_fed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[capture]
type = "picamera2"
[mqtt]
url = "{mosquitto.url}"
[health]
stall_s = {STALL_S}
interval_s = 1
""",
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
        "FAKE_PICAMERA2_CAMERAS": "0",
        "PYTHONPATH": os.pathsep.join([str(FAKE_PICAMERA2), os.environ.get("PYTHONPATH", "")]),
    }
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log, env=env)
    messages: list[tuple[float, str]] = []
    try:
        deadline = time.monotonic() + 120
        ready_at = None
        # until ready, then for the stall time and a few watchdog periods more
        while ready_at is None or time.monotonic() < ready_at + STALL_S + 4.0:
            assert time.monotonic() < deadline, f"not ready: {messages}\n{log.read_text()}"
            assert proc.poll() is None, log.read_text()
            try:
                data = sock.recv(4096).decode()
            except TimeoutError:
                continue
            messages.append((time.monotonic(), data))
            if "READY=1" in data and ready_at is None:
                ready_at = time.monotonic()
                assert "waiting: camera 0 cannot be opened" in data, data
        pings = [t for t, m in messages if "WATCHDOG=1" in m and t > ready_at + STALL_S + 1.0]
        assert len(pings) >= 3, f"watchdog not fed without a camera: {messages}"
        statuses = [m for _, m in messages if "STATUS=" in m]
        assert all("waiting: camera 0" in m for m in statuses), statuses
        assert proc.poll() is None
    finally:
        assert stop_process(proc) == 0, log.read_text()
        sock.close()
    text = log.read_text()
    assert text.count("cannot be opened") == 1, text
