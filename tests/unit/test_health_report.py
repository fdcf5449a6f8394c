"""The health report, built in-process as the daemon builds it."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from edged import wire
from edged.health import Stats
from edged.health.report import HealthReporter
from tests.support import FakePublisher


class CountingPublisher(FakePublisher):
    reconnects = 2
    dropped = 1


def test_report_is_a_valid_health_message() -> None:
    stats = Stats()
    stats.frames_captured = 3
    report = HealthReporter("cam-1", stats).report(None, CountingPublisher(), frames_skipped=1)
    data = json.loads(report.to_json())
    assert data["schema"] == wire.HEALTH_SCHEMA and data["device"] == "cam-1"
    assert data["frames_captured"] == 3 and data["frames_skipped"] == 1
    assert data["mqtt_reconnects"] == 2 and data["mqtt_dropped"] == 1
    assert wire.Health.model_validate_json(report.to_json()).backend is None


def test_health_never_asks_libedgetpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Coral's pycoral enumerates TPUs through libedgetpu; loading that into the daemon
    process would defeat the worker's crash isolation, so health must not call it."""
    calls: list[str] = []

    def list_edge_tpus() -> list[dict[str, str]]:
        calls.append("list_edge_tpus")
        return [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}]

    package = types.ModuleType("pycoral")
    utils = types.ModuleType("pycoral.utils")
    edgetpu = types.ModuleType("pycoral.utils.edgetpu")
    edgetpu.list_edge_tpus = list_edge_tpus  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    utils.edgetpu = edgetpu  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycoral", package)
    monkeypatch.setitem(sys.modules, "pycoral.utils", utils)
    monkeypatch.setitem(sys.modules, "pycoral.utils.edgetpu", edgetpu)

    from edged.health.devices import list_edge_tpus as discover

    assert discover() and calls == ["list_edge_tpus"]  # the fake is reachable
    calls.clear()
    report = HealthReporter("cam-1", Stats()).report(None, CountingPublisher())
    assert calls == []
    assert all(t.path != "/sys/bus/usb/devices/2-1" for t in report.tpus)


def test_process_meter_reads_cpu_and_rss(tmp_path: Path) -> None:
    import os
    import time

    from edged.health.system import ProcessMeter

    meter = ProcessMeter()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert meter.cpu_percent() > 5.0
    rss = meter.rss_mb()
    assert rss is not None and 5 < rss < 4096
    statm = tmp_path / "statm"
    statm.write_text(f"100 {2**20 // os.sysconf('SC_PAGE_SIZE') * 3} 0 0 0 0 0\n")
    assert ProcessMeter(statm).rss_mb() == 3.0
    assert ProcessMeter(tmp_path / "absent").rss_mb() is None


def test_process_meter_reads_the_bytes_written_to_disk(tmp_path: Path) -> None:
    from edged.health.system import ProcessMeter

    assert isinstance(ProcessMeter().disk_write_bytes(), int)  # this process's own
    io = tmp_path / "io"
    io.write_text(
        "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 0\nwrite_bytes: 12288\n"
        "cancelled_write_bytes: 0\n"
    )
    assert ProcessMeter(io=io).disk_write_bytes() == 12288
    io.write_text("rchar: 10\n")
    assert ProcessMeter(io=io).disk_write_bytes() is None
    assert ProcessMeter(io=tmp_path / "absent").disk_write_bytes() is None
