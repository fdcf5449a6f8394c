#!/usr/bin/env python3
"""How long ``SIGTERM`` takes to end the daemon with the broker up, down (stopped) and frozen
(``SIGSTOP`` on mosquitto: the TCP connection stays open, nothing is acknowledged), and how
the daemon's memory behaves during a broker outage.

The daemon replays one photo in a loop at 20 fps (the bundled model, CPU), publishing every
frame to a real mosquitto, with its spool in a temporary ``$STATE_DIRECTORY``.  Stop times
are wall time from the signal to the process's exit, ``--runs`` per case; the baseline is the
same daemon's exit at ``--frames`` with the broker up (nothing left to wait for).  The memory
case prints the RSS (from /proc) every 10 s through a ``--outage`` seconds outage, with the
default limits, then after the broker is back.

    python bench/stop.py [--runs 5] [--outage 60] [--no-memory]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import Mosquitto, Subscriber, edged_cmd  # noqa: E402

PHOTO = ROOT / "edged" / "samples" / "coffee.jpg"


def config(tmp: Path, url: str, fps: float = 20.0) -> Path:
    path = tmp / "edged.toml"
    path.write_text(
        f"""
[device]
id = "bench"
[capture]
type = "replay"
paths = ["{PHOTO}"]
loop = true
fps = {fps}
[mqtt]
url = "{url}"
reconnect_min_s = 1
reconnect_max_s = 2
[health]
interval_s = 5
"""
    )
    return path


def start(tmp: Path, cfg: Path, state: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        edged_cmd("run", "-c", str(cfg)),
        stdout=(tmp / "edged.log").open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "STATE_DIRECTORY": str(state)},
    )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def running(tmp: Path, events: int) -> tuple[Mosquitto, subprocess.Popen[bytes]]:
    """A persistent broker and the daemon on it, once ``events`` events have arrived."""
    broker = Mosquitto(tmp, persistent=True).start()
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    sub = Subscriber(broker.port)
    proc = start(tmp, config(tmp, broker.url), state)
    arrived = sub.wait(lambda: len(sub.events()) >= events, 60)
    sub.close()
    if not arrived:
        proc.kill()
        broker.stop()
        raise RuntimeError((tmp / "edged.log").read_text()[-2000:])
    return broker, proc


def one_stop(tmp: Path, case: str) -> float:
    broker, proc = running(tmp, 20)
    try:
        if case == "down":
            broker.stop()
            time.sleep(2.0)
        elif case == "frozen":
            assert broker.proc is not None
            os.kill(broker.proc.pid, signal.SIGSTOP)
            time.sleep(2.0)
        else:
            time.sleep(2.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        return time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        if broker.proc is not None and broker.proc.poll() is None:
            os.kill(broker.proc.pid, signal.SIGCONT)
        broker.stop()


def memory(tmp: Path, outage: float) -> None:
    broker, proc = running(tmp, 40)
    try:
        time.sleep(10)
        before = rss_mb(proc.pid)
        print(f"RSS before the outage: {before:.1f} MB")
        broker.stop()
        t0 = time.monotonic()
        peak = before
        while time.monotonic() - t0 < outage:
            time.sleep(min(10.0, outage - (time.monotonic() - t0)))
            now = rss_mb(proc.pid)
            peak = max(peak, now)
            print(f"  {time.monotonic() - t0:5.0f} s into the outage: {now:.1f} MB")
        broker.start()
        time.sleep(15)
        after = rss_mb(proc.pid)
        print(
            f"RSS after the broker is back: {after:.1f} MB; peak during the outage "
            f"{peak:.1f} MB ({peak / before:.2f}x before)"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    print(f"SIGTERM to exit, {args.runs} runs per case (seconds):")
    for case in ("up", "down", "frozen"):
        times = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="edged-stop-") as tmp:
                times.append(one_stop(Path(tmp), case))
        print(
            f"  broker {case:<7} median {statistics.median(times):.2f}  max {max(times):.2f}  "
            f"({', '.join(f'{t:.2f}' for t in times)})"
        )
    if not args.no_memory:
        with tempfile.TemporaryDirectory(prefix="edged-rss-") as tmp:
            memory(Path(tmp), args.outage)


if __name__ == "__main__":
    main()
