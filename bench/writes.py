#!/usr/bin/env python3
"""Every byte ``edged`` writes to disk, per event and per day, counted by the kernel
(``write_bytes`` of ``/proc/PID/io``: what reaches the block layer, page-cache flushes
included, summed over the daemon and any child process), per source of writes.

``edged run`` replays a sample photo in a loop at 2 and at 15 frames/s (every frame is an
event), publishing at QoS 1 to a real mosquitto that acknowledges, with the spool under
``$STATE_DIRECTORY`` on this machine's disk; after a warm-up (``--warmup``, start-up writes
excluded) the bytes written during ``--seconds`` are divided by the events a plain paho
subscriber received in that window.  Each source of writes is isolated by a configuration
that adds it alone to the baseline (no spool at all):

- spool, ``mqtt.durability = "spill"`` (the default) and ``"always"`` (the write-ahead log);
  for ``always``, a second run under ``strace -y`` splits the bytes handed to SQLite's files
  (``events.db-wal``: commits; ``events.db``: WAL checkpoints);
- the collect folder (``[collect] every_s = 1``): per frame kept;
- the status page (``[web]``, fetched once a second as the page does);
- the training dataset (``edged capture``, 20 photos): per photo;
- logs: what the daemon prints at the default level is what journald stores; its bytes and
  lines are counted from the daemon's output (a pipe here, so they are not in the daemon's
  own disk bytes), and a day's worth is projected from the steady-state window.  journald's
  own bytes per line (its entry headers and indexes) are not measured here (no journald on
  this machine); ``--journald-entry-bytes`` sets the figure used for the total (default
  600, a conservative allowance for a short line with journald's fields and indexes).

    python bench/writes.py [--seconds 30] [--warmup 5] [--only spill-15,always-15]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import Mosquitto, free_port  # noqa: E402

PHOTO = ROOT / "edged" / "samples" / "coffee.jpg"
DAY = 86400


def tree_write_bytes(pid: int) -> int:
    """write_bytes of ``pid`` and its live descendants."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo += [int(k) for k in kids]
        except (OSError, ValueError):
            continue
    return total


class Counter:
    """A plain paho subscriber counting the events it receives."""

    def __init__(self, port: int, device: str) -> None:
        self.n = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(f"edged/{device}/events", 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        self.n += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Result:
    name: str
    fps: float
    events: int
    written: int
    seconds: float
    log_bytes: int
    log_lines: int
    extra: str = ""
    run_bytes: int = 0  # the whole run, start and stop included (rusage of the child)
    run_log_lines: int = 0
    run_log_bytes: int = 0

    @property
    def per_event(self) -> float:
        return self.written / self.events if self.events else float("nan")

    @property
    def per_day(self) -> float:
        return self.written / self.seconds * DAY


fetched = [0]  # status page requests answered


def run_daemon(
    name: str,
    fps: float,
    args: argparse.Namespace,
    broker: Mosquitto,
    tmp: Path,
    *,
    mqtt_extra: str = "",
    extra: str = "",
    spool: bool = True,
    during: Callable[[], None] | None = None,
    strace: Path | None = None,
) -> Result:
    work = tmp / name
    (work / "state").mkdir(parents=True)
    device = name.replace(".", "-")
    config = work / "edged.toml"
    config.write_text(
        f'[device]\nid = "{device}"\n'
        f'[capture]\ntype = "replay"\npaths = ["{PHOTO}"]\nloop = true\nfps = {fps}\n'
        f'[mqtt]\nurl = "{broker.url}"\n{mqtt_extra}\n{extra}\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    if spool:
        env["STATE_DIRECTORY"] = str(work / "state")
    cmd = [sys.executable, "-m", "edged", "run", "-c", str(config)]
    if strace is not None:
        cmd = ["strace", "-f", "-y", "-e", "trace=pwrite64,write", "-o", str(strace), *cmd]
    counter = Counter(broker.port, device)
    lines: list[tuple[float, int]] = []  # (monotonic time, bytes) of each line of output
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=work
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), len(line)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stop = threading.Event()
    toucher = None
    if during is not None:

        def touch() -> None:
            while not stop.wait(1.0):
                during()

        toucher = threading.Thread(target=touch, daemon=True)
        toucher.start()
    pid = proc.pid
    try:
        deadline = time.monotonic() + 60
        while counter.n == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if counter.n == 0:
            raise SystemExit(f"{name}: no event arrived in 60 s")
        time.sleep(args.warmup)
        if strace is not None:  # the daemon is strace's child
            pid = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        t0, w0, n0 = time.monotonic(), tree_write_bytes(pid), counter.n
        time.sleep(args.seconds)
        t1, w1, n1 = time.monotonic(), tree_write_bytes(pid), counter.n
    finally:
        stop.set()
        os.kill(pid, signal.SIGTERM)  # the daemon (strace's child under strace)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join(5)
        counter.close()
    window = [b for t, b in lines if t0 <= t <= t1]
    r = Result(name, fps, n1 - n0, w1 - w0, t1 - t0, sum(window), len(window))
    r.run_bytes = usage.ru_oublock * 512
    r.run_log_lines, r.run_log_bytes = len(lines), sum(b for _, b in lines)
    if during is not None:
        r.extra = f"({fetched[0]} page fetches answered in the run)"
    return r


def wal_split(trace: Path) -> str:
    """Bytes handed to each of SQLite's files, from ``strace -y``."""
    sizes: dict[str, int] = {}
    for m in re.finditer(r"(?:pwrite64|write)\(\d+<([^>]+)>,.*= (\d+)$", trace.read_text(), re.M):
        path, n = m.group(1), int(m.group(2))
        if "events.db" in path:
            key = Path(path).name
            sizes[key] = sizes.get(key, 0) + n
    return ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sorted(sizes.items()))


def capture_photos(tmp: Path, n: int) -> Result:
    """``edged capture``: n training photos; the child's blocks written (rusage)."""
    work = tmp / "capture"
    work.mkdir()
    config = work / "edged.toml"
    config.write_text(f'[capture]\ntype = "replay"\npaths = ["{PHOTO}"]\nloop = true\nfps = 5\n')
    cmd = [sys.executable, "-m", "edged", "capture", str(work / "data"), "--label", "cup"]
    cmd += ["--count", str(n), "--interval", "0.2", "-c", str(config)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"edged capture exited with {proc.returncode}")
    photos = list((work / "data").rglob("*.jpg"))
    size = sum(p.stat().st_size for p in photos)
    return Result(
        "training dataset (edged capture)", 5, len(photos), usage.ru_oublock * 512,
        time.monotonic() - t0, 0, 0, f"files {size / len(photos) / 1024:.1f} KiB per photo",
    )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--only", default="", help="comma-separated names of the runs to make")
    ap.add_argument("--journald-entry-bytes", type=int, default=600)
    ap.add_argument("--dir", default="/var/tmp", help="a folder on a real disk")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; window "
        f"{args.seconds:g} s after {args.warmup:g} s; bytes = /proc/PID/io write_bytes",
        flush=True,
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp).start()
        web_port = free_port()

        def fetch_page() -> None:
            for path in ("/", "/frame.jpg"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=2):
                        fetched[0] += 1
                except OSError:
                    pass

        runs: list[tuple[str, Callable[[], Result]]] = []
        for fps in (2, 15):
            runs.append(
                (
                    f"spill-{fps}",
                    functools.partial(run_daemon, f"spill-{fps}", fps, args, broker, tmp),
                )
            )
            always = functools.partial(
                run_daemon, f"always-{fps}", fps, args, broker, tmp,
                mqtt_extra='durability = "always"',
            )  # fmt: skip
            runs.append((f"always-{fps}", always))
        runs += [
            ("nospool-15", lambda: run_daemon("nospool-15", 15, args, broker, tmp, spool=False)),
            (
                "wal-15",
                lambda: run_daemon(
                    "wal-15", 15, args, broker, tmp, mqtt_extra='durability = "always"',
                    strace=tmp / "wal.strace",
                ),
            ),
            (
                "collect-15",
                lambda: run_daemon(
                    "collect-15", 15, args, broker, tmp, spool=False,
                    extra=f'[collect]\ndir = "{tmp / "collect"}"\nevery_s = 1',
                ),
            ),
            (
                "web-15",
                lambda: run_daemon(
                    "web-15", 15, args, broker, tmp, spool=False,
                    extra=f'[web]\nlisten = "127.0.0.1:{web_port}"', during=fetch_page,
                ),
            ),
            ("capture", lambda: capture_photos(tmp, 20)),
        ]  # fmt: skip
        try:
            for name, make in runs:
                if only and name not in only:
                    continue
                r = make()
                if name == "wal-15":
                    r.name = "always-15 under strace"
                    r.extra = "handed to SQLite's files, whole run: " + wal_split(
                        tmp / "wal.strace"
                    )
                if name == "collect-15":
                    kept = len(list((tmp / "collect").rglob("*.jpg")))
                    r.extra = f"({kept} frames kept in the run, one a second)"
                results.append(r)
                print(
                    f"  {r.name}: {r.events} events, {r.written} bytes in {r.seconds:.1f} s; "
                    f"{r.log_lines} log lines ({r.log_bytes} bytes); whole run {r.run_bytes} "
                    f"bytes, {r.run_log_lines} log lines ({r.run_log_bytes} bytes) {r.extra}",
                    flush=True,
                )
        finally:
            broker.stop()
    print()
    print("| run | fps | events | bytes written | per event | per day | log lines/day |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.name} | {r.fps:g} | {r.events} | {r.written} | {r.per_event:.1f} B | "
            f"{r.per_day / 1e6:.2f} MB | {r.log_lines / r.seconds * DAY:.0f} |"
        )
    by = {r.name: r for r in results}
    for fps in (2, 15):
        s, a = by.get(f"spill-{fps}"), by.get(f"always-{fps}")
        if s is None:
            continue
        journald = s.log_lines / s.seconds * DAY * args.journald_entry_bytes
        total = s.written + journald / DAY * s.seconds
        line = (
            f"{fps} fps, broker up: spill {s.per_event:.1f} B/event ({s.per_day / 1e6:.2f} MB/day) "
            f"+ journald {journald / 1e6:.2f} MB/day ({s.log_lines} lines in the window) = "
            f"{total / s.events:.1f} B/event"
        )
        if a is not None:
            line += f"; always {a.per_event:.0f} B/event ({a.per_day / 1e9:.2f} GB/day)"
            if s.written:
                line += f", {a.written / s.written:.0f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
