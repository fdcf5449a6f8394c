"""Model reloads do not make the daemon larger: ``edged run`` as a process, a real mosquitto,
the bundled model reloaded 20 times by command while frames flow at 15 frames/s.  Its
resident memory after the last reloads stays within 3 MB of what it was after the second.
Before glibc's thresholds were fixed (:func:`edged.infer.runtime.bound_heap_slack`), the
same run grew by about 7 MB, most of it in the first four reloads."""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable
from pathlib import Path

from tests.support import (
    ROOT,
    Mosquitto,
    Operator,
    replay_config,
    scaled,
    start_edged,
    stop_process,
    wait_until,
)

MODEL = ROOT / "models" / "efficientnet_lite0_int8.tflite"
RELOADS = 20
WARM_UP_EVENTS = 150  # 10 s of frames first: what fills up with time is full by then
BOUND_MB = 3.0


def events_from(op: Operator, n: int) -> Callable[[], bool]:
    return lambda: len(op.events()) >= n


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            return int(value.split()[0]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_reloads_do_not_grow_resident_memory(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = replay_config(tmp_path, mosquitto.url, fps=15, mqtt='protocol = "5"')
    log = tmp_path / "edged.log"
    op = Operator(mosquitto.port, protocol="5")
    proc = start_edged("run", "--config", str(cfg), log=log)
    body = {"path": str(MODEL), "sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest()}
    rss: list[float] = []
    try:
        assert wait_until(events_from(op, WARM_UP_EVENTS), scaled(60)), log.read_text()
        for i in range(RELOADS):
            reply = op.request({"id": f"r{i}", "cmd": "reload", "model": body}, scaled(60))
            assert reply["ok"], reply
            # frames flow on the new model (the old one closed) before each reading
            assert wait_until(events_from(op, len(op.events()) + 3), scaled(30)), log.read_text()
            rss.append(rss_mb(proc.pid))
        assert proc.poll() is None, log.read_text()
    finally:
        code = stop_process(proc)
        op.close()
    assert code == 0, log.read_text()
    # after the second reload, against the median of the last five (a reading may catch a
    # frame's buffers; a leak moves the median)
    growth = statistics.median(rss[-5:]) - rss[1]
    figures = ", ".join(f"{x:.1f}" for x in rss)
    assert growth <= BOUND_MB, f"RSS grew {growth:.1f} MB; after each reload (MB): {figures}"
