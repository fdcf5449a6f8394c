#!/usr/bin/env python3
"""A long soak with faults: ``edged run`` at 15 frames/s from an MJPEG camera, publishing
every event to a real mosquitto, through broker restarts, one long broker outage, camera
flaps, model reloads and one ``kill -9`` plus restart.  It shows that nothing leaks (RSS,
file descriptors, threads) and nothing is lost.

Losses are counted by an observer that shares no code with edged: a plain paho subscriber
with a persistent session (the broker queues for it while it is away) that reads ``run_id``
and ``seq`` of each event.  What the daemon created is read from its own log (DEBUG, through
a pipe: nothing of it reaches the disk), one line per event.  At the end every run's events
1..n must have arrived, except, for the run killed with ``kill -9``, its last events inside
the declared window (``mqtt.spill_after_s``, plus the write in progress: 0.2 s); a gap is a
loss wherever it is.

Each minute, and at the end, it prints the daemon's RSS, open file descriptors, threads, the
bytes it wrote to disk (``write_bytes`` of ``/proc/PID/io``, summed over its runs), events
created, acknowledged by the broker (the daemon's health), received by the observer, and lost
so far (gaps).  The baseline for leaks and the end figures are the largest readings over
10 s from ``--baseline-at`` and over the last 10 s.  ``--json`` writes the summary for a test
to check.

    python bench/soak.py --minutes 60
    python bench/soak.py --minutes 3 --restart-every 45 --outage-at 95 --outage-s 15 \\
        --flap-every 55 --reload-at 30 --reload-every 60 --kill-at 20 --baseline-at 40

Defaults (60 minutes): a broker restart every 5 min; a 60 s outage at 20:30; the camera
down for 10 s every 7 min; a model reload (the bundled model again, by MQTT command) every
10 min from 2:30; ``kill -9`` and a restart at 2:00; the baseline for leaks at 4:30 (after
the kill, so the process measured at the end is the one measured at the baseline, and away
from the broker restart at 5:00, when the MQTT socket is briefly closed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.mjpeg import MjpegServer, jpeg_frames  # noqa: E402

DEVICE = "soak"
FPS = 15
MODEL = ROOT / "models" / "efficientnet_lite0_int8.tflite"
SAMPLES = sorted((ROOT / "edged" / "samples").glob("*.jpg"))
SPILL_AFTER_S = 1.0
CAMERA_DOWN_S = 10.0
SETTLE_S = 10.0  # the baseline and the end are the largest readings over this long
EVENT_LINE = re.compile(rb"event seq (\d+) \(frame")
RUN_LINE = re.compile(rb"run ([0-9a-f-]{36})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto with persistence (sessions and queued messages survive a restart) and a
    deep per-client queue (the observer may be away while a backlog is re-sent)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"user root\npersistence true\npersistence_location {workdir}/\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 200000\n"
        )
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Observer:
    """Plain paho: every event's (run_id, seq), the daemon's latest health per run, and the
    replies to commands."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, set[int]] = {}
        self.received = 0  # messages, duplicates included
        self.health: dict[str, dict[str, Any]] = {}
        self.replies: list[dict[str, Any]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-observer", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        c.subscribe(f"edged/{DEVICE}/#", qos=1)

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        suffix = msg.topic.rsplit("/", 1)[-1]
        if suffix not in ("events", "health", "result"):
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            if suffix == "events":
                self.received += 1
                self.got.setdefault(str(body["run_id"]), set()).add(int(body["seq"]))
            elif suffix == "health" and body.get("run_id"):
                self.health[str(body["run_id"])] = body
            elif suffix == "result":
                self.replies.append(body)

    def command(self, body: dict[str, Any]) -> None:
        self.client.publish(f"edged/{DEVICE}/cmd", json.dumps(body), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    run_id: str = ""
    created: int = 0  # the highest seq the daemon logged
    written: int = 0  # write_bytes, last read
    killed: bool = False
    reader: threading.Thread | None = None
    tail: deque[bytes] = field(default_factory=lambda: deque(maxlen=40))

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if b" DEBUG " not in line:
                self.tail.append(line)
            found = EVENT_LINE.search(line)
            if found:
                self.created = max(self.created, int(found.group(1)))
            elif not self.run_id:
                started = RUN_LINE.search(line)
                if started:
                    self.run_id = started.group(1).decode()


def proc_status(pid: int) -> dict[str, int]:
    """RSS (kB), threads, open fds and write_bytes of a live process."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "write_bytes":
            out["write_bytes"] = int(value)
    return out


@dataclass
class Soak:
    args: argparse.Namespace
    workdir: Path
    broker: Broker
    camera: MjpegServer
    observer: Observer | None = None
    runs: list[Run] = field(default_factory=list)
    reloads: int = 0
    config: Path = Path()

    def start_daemon(self) -> Run:
        env = {**os.environ, "STATE_DIRECTORY": str(self.workdir / "state")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edged", "--log-level", "DEBUG", "run", "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        run = Run(proc)
        run.reader = threading.Thread(target=run.read, daemon=True)
        run.reader.start()
        self.runs.append(run)
        return run

    @property
    def daemon(self) -> Run:
        return self.runs[-1]

    def sample(self) -> dict[str, int]:
        run = self.daemon
        try:
            st = proc_status(run.proc.pid)
        except (OSError, ValueError):
            return {}
        run.written = st.get("write_bytes", run.written)
        return st

    def totals(self) -> dict[str, int]:
        assert self.observer is not None
        obs = self.observer
        with obs.lock:
            received = sum(len(s) for s in obs.got.values())
            acked = sum(
                int(obs.health[r.run_id].get("events_published", 0))
                for r in self.runs
                if r.run_id in obs.health
            )
            gaps = 0
            for seqs in obs.got.values():
                gaps += max(seqs) - len(seqs) if seqs else 0
        return {
            "created": sum(r.created for r in self.runs),
            "acked": acked,
            "received": received,
            "gaps": gaps,
            "written": sum(r.written for r in self.runs),
        }


def write_config(path: Path, broker_url: str, camera_url: str) -> None:
    path.write_text(
        f"""
[device]
id = "{DEVICE}"
[capture]
type = "stream"
url = "{camera_url}/stream"
[mqtt]
url = "{broker_url}"
spill_after_s = {SPILL_AFTER_S}
reconnect_min_s = 0.5
reconnect_max_s = 2
[health]
interval_s = 5
"""
    )


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    total = args.minutes * 60
    events: list[tuple[float, str]] = []
    outage = (args.outage_at, args.outage_at + args.outage_s)
    t = args.restart_every
    while t < total - 20:
        if not (outage[0] - 15 <= t <= outage[1] + 15):
            events.append((t, "restart"))
        t += args.restart_every
    events += [(outage[0], "outage"), (outage[1], "broker-up")]
    t = args.flap_every
    while t < total - 20:
        events += [(t, "camera-down"), (t + CAMERA_DOWN_S, "camera-up")]
        t += args.flap_every
    t = args.reload_at
    while t < total - 20:
        events.append((t, "reload"))
        t += args.reload_every
    events.append((args.kill_at, "kill"))
    return sorted(events)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--restart-every", type=float, default=300.0, help="seconds")
    ap.add_argument("--outage-at", type=float, default=1230.0)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--flap-every", type=float, default=420.0)
    ap.add_argument("--reload-at", type=float, default=150.0)
    ap.add_argument("--reload-every", type=float, default=600.0)
    ap.add_argument("--kill-at", type=float, default=120.0)
    ap.add_argument("--baseline-at", type=float, default=270.0)
    ap.add_argument("--print-every", type=float, default=60.0)
    ap.add_argument("--dir", default="/var/tmp", help="where the spool lives (a real disk)")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="edged-soak-", dir=args.dir))
    (workdir / "state").mkdir()
    broker = Broker(workdir)
    camera = MjpegServer(jpeg_frames(SAMPLES, (320, 240)), fps=FPS)
    soak = Soak(args, workdir, broker, camera)
    soak.config = workdir / "edged.toml"
    digest = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    plan = schedule(args)
    print(
        f"soak: {args.minutes:g} min, {FPS} fps, machine load {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs; faults: "
        + ", ".join(
            f"{k} x{sum(1 for _, e in plan if e == k)}" for k in dict.fromkeys(e for _, e in plan)
        ),
        flush=True,
    )
    header = (
        f"{'min':>5} {'rss_mb':>7} {'fds':>4} {'thr':>4} {'disk_kb':>8} {'created':>8} "
        f"{'acked':>8} {'received':>8} {'gaps':>5}  load"
    )
    print(header, flush=True)
    baseline: dict[str, int] = {}
    end: dict[str, int] = {}
    summary: dict[str, Any] = {}
    try:
        broker.start()
        camera.start()
        write_config(soak.config, f"mqtt://127.0.0.1:{broker.port}", camera.url)
        soak.observer = Observer(broker.port)
        soak.start_daemon()
        t0 = time.monotonic()
        next_print = args.print_every
        total = args.minutes * 60
        while True:
            now = time.monotonic() - t0
            while plan and plan[0][0] <= now:
                _, what = plan.pop(0)
                if what in ("restart",):
                    broker.stop()
                    broker.start()
                elif what == "outage":
                    broker.stop()
                elif what == "broker-up":
                    broker.start()
                elif what == "camera-down":
                    camera.stop()
                elif what == "camera-up":
                    camera.start()
                elif what == "reload":
                    soak.reloads += 1
                    soak.observer.command(
                        {
                            "id": f"soak-{soak.reloads}",
                            "cmd": "reload",
                            "model": {"path": str(MODEL), "sha256": digest},
                        }
                    )
                elif what == "kill":
                    soak.sample()
                    soak.daemon.proc.send_signal(signal.SIGKILL)
                    soak.daemon.proc.wait(10)
                    soak.daemon.killed = True
                    soak.start_daemon()
                print(f"{now / 60:5.1f} {what}", flush=True)
            if soak.daemon.proc.poll() is not None:
                sys.stdout.write(b"".join(soak.daemon.tail).decode(errors="replace"))
                raise RuntimeError(f"edged exited with {soak.daemon.proc.returncode}")
            st = soak.sample()
            # the largest reading over 10 s: a fault under way (a socket closed for a
            # moment) does not pass for the steady state, a leak still shows
            if st and args.baseline_at <= now <= args.baseline_at + SETTLE_S:
                baseline = {k: max(v, baseline.get(k, 0)) for k, v in st.items()}
            if st and now >= total - SETTLE_S:
                end = {k: max(v, end.get(k, 0)) for k, v in st.items()}
            if now >= next_print or now >= total:
                next_print += args.print_every
                tot = soak.totals()
                print(
                    f"{now / 60:5.1f} {st.get('VmRSS', 0) / 1024:7.1f} {st.get('fds', 0):4d} "
                    f"{st.get('Threads', 0):4d} {tot['written'] / 1024:8.0f} {tot['created']:8d} "
                    f"{tot['acked']:8d} {tot['received']:8d} {tot['gaps']:5d}  "
                    f"{os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            if now >= total:
                break
            time.sleep(max(0.0, min(1.0, (plan[0][0] - now) if plan else 1.0)))
        # the end: a clean stop, then everything created must arrive (bar the killed tail)
        last = soak.daemon
        last.proc.send_signal(signal.SIGTERM)
        code = last.proc.wait(30)
        if last.reader is not None:
            last.reader.join(10)
        obs = soak.observer
        window = round(FPS * (SPILL_AFTER_S + 0.2))
        deadline = time.monotonic() + 60

        def missing() -> dict[str, list[int]]:
            with obs.lock:
                return {
                    r.run_id: [
                        s for s in range(1, r.created + 1) if s not in obs.got.get(r.run_id, set())
                    ]
                    for r in soak.runs
                }

        while time.monotonic() < deadline:
            gone = missing()
            if all(not m or r.killed for r, m in zip(soak.runs, gone.values(), strict=True)):
                break
            time.sleep(0.5)
        gone = missing()
        tot = soak.totals()
        outside = 0
        inside = 0
        for run, lost in zip(soak.runs, gone.values(), strict=True):
            if run.killed:
                tail = [s for s in lost if s > run.created - window]
                inside += len(tail)
                outside += len(lost) - len(tail)
            else:
                outside += len(lost)
        ok_replies = sum(1 for r in obs.replies if r.get("cmd") == "reload" and r.get("ok"))
        summary = {
            "minutes": args.minutes,
            "exit_code": code,
            "runs": len(soak.runs),
            "created": tot["created"],
            "acked": tot["acked"],
            "received": tot["received"],
            "duplicates": obs.received - tot["received"],
            "lost_in_window": inside,
            "lost_outside_window": outside,
            "window_events": window,
            "reloads_sent": soak.reloads,
            "reloads_ok": ok_replies,
            "disk_write_bytes": tot["written"],
            "baseline": baseline,
            "end": end,
        }
        print("summary:")
        print(
            f"  events created {tot['created']}, acknowledged {tot['acked']} (health), "
            f"received {tot['received']} (+{summary['duplicates']} duplicates), lost "
            f"{outside} outside the declared window, {inside} inside it (kill -9: at most "
            f"{window})"
        )
        for name, key, scale in (
            ("RSS MB", "VmRSS", 1024),
            ("fds", "fds", 1),
            ("threads", "Threads", 1),
        ):
            b, e = baseline.get(key, 0) / scale, end.get(key, 0) / scale
            print(
                f"  {name}: {b:g} at {args.baseline_at / 60:g} min, {e:g} at the end ({e - b:+g})"
            )
        print(
            f"  disk: {tot['written']} bytes written by edged over its {len(soak.runs)} runs; "
            f"reloads {ok_replies}/{soak.reloads} ok; exit code {code}; "
            f"load {os.getloadavg()[0]:.1f}"
        )
    finally:
        if soak.observer is not None:
            soak.observer.close()
        for run in soak.runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(10)
        camera.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary and summary["lost_outside_window"] == 0 and summary["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
