"""The soak with faults, short: ``bench/soak.py`` for 3 minutes with its faults closer
together (broker restarts, an outage, camera flaps, model reloads, a kill -9 and a restart).
Nothing is lost outside the declared window, and file descriptors and threads do not grow
between the baseline and the end.  (RSS is judged on the 60-minute run, not here: 3 minutes
with reloads say nothing about a slow leak.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_three_minute_soak_loses_nothing_and_leaks_no_fds_or_threads(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "3",
        "--restart-every", "45", "--outage-at", "95", "--outage-s", "15",
        "--flap-every", "55", "--reload-at", "30", "--reload-every", "60",
        "--kill-at", "20", "--baseline-at", "50", "--print-every", "30",
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=420, check=False)
    report = done.stdout[-4000:] + done.stderr[-4000:]
    assert out.exists(), report
    s = json.loads(out.read_text())
    assert s["exit_code"] == 0, report
    assert s["runs"] == 2, report  # the kill -9 and its restart happened
    assert s["lost_outside_window"] == 0, report
    assert s["lost_in_window"] <= s["window_events"], report
    assert s["created"] >= 15 * 30, report  # frames kept flowing through the faults
    assert s["received"] >= s["created"] - s["lost_in_window"], report
    assert s["reloads_ok"] == s["reloads_sent"] >= 2, report
    assert s["end"]["fds"] <= s["baseline"]["fds"], report
    assert s["end"]["Threads"] <= s["baseline"]["Threads"], report
    assert done.returncode == 0, report
