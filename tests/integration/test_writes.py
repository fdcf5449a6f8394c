"""What the daemon writes to disk with a healthy broker, as its health reports it
(``disk_write_bytes``, the kernel's count for the process): in the default mode nothing per
event, and its log stays quiet at steady state; in ``durability = "always"`` every event is
written (the same measurement sees it, so it is not blind)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import CONFIDENT, Mosquitto, Subscriber, start_edged, stop_process, write_config

FPS = 15


@pytest.fixture
def disk_dir() -> Iterator[Path]:
    """A folder on a disk: the kernel counts no writes to tmpfs, which /tmp often is (in a
    systemd-nspawn container, for one)."""
    with tempfile.TemporaryDirectory(prefix="edged-writes-", dir="/var/tmp") as d:
        fs = subprocess.run(
            ["stat", "-f", "-c", "%T", d], capture_output=True, text=True, check=True
        ).stdout.strip()
        if fs in ("tmpfs", "ramfs"):
            pytest.skip(f"/var/tmp is {fs} here: no disk writes to count")
        yield Path(d)


def steady_state(tmp_path: Path, state: Path, durability: str) -> tuple[int, int, int, bytes]:
    """Bytes written, events acknowledged and log bytes between two health reports at least
    80 events apart, after a warm-up; and the log of that window.  The spool lives in
    ``state``, on a disk."""
    broker = Mosquitto(tmp_path).start()
    sub = Subscriber(broker.port)
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "cam-1"
[capture]
type = "replay"
paths = ["{CONFIDENT}"]
loop = true
fps = {FPS}
[mqtt]
url = "{broker.url}"
durability = "{durability}"
[health]
interval_s = 1
""",
    )
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log, env={"STATE_DIRECTORY": str(state)})
    try:

        def health() -> dict[str, Any]:
            return sub.last_health() or {"events_published": 0}

        assert sub.wait(lambda: health()["events_published"] >= 45, 60), log.read_text()
        first = health()
        log_at_first = log.stat().st_size
        assert sub.wait(
            lambda: health()["events_published"] >= first["events_published"] + 80, 60
        ), log.read_text()
        last = health()
        window_log = log.read_bytes()[log_at_first:]
    finally:
        stop_process(proc)
        sub.close()
        broker.stop()
    assert isinstance(first["disk_write_bytes"], int)
    return (
        last["disk_write_bytes"] - first["disk_write_bytes"],
        last["events_published"] - first["events_published"],
        len(window_log),
        window_log,
    )


@pytest.mark.parametrize("durability", ["spill", "always"])
def test_bytes_written_per_event_with_the_broker_up(
    tmp_path: Path, disk_dir: Path, durability: str
) -> None:
    written, events, log_bytes, window_log = steady_state(tmp_path, disk_dir, durability)
    if durability == "spill":
        assert written <= 100 * events, (written, events)
        assert log_bytes == 0, window_log.decode(errors="replace")  # nothing per frame or event
    else:
        assert written >= 500 * events, (written, events)  # the write-ahead log: each event
