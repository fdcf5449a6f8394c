#!/usr/bin/env python3
"""Where the daemon's CPU goes, thread by thread: CPU ms per frame of each of its threads
(from /proc/self/task), and of that the ``invoke()`` calls' own CPU, between two marks of
an unpaced replay of pre-sized 224x224 frames at 1 interpreter thread, publishing QoS 1 to
a local mosquitto.  A profile that needs no sampler: every figure is the kernel's own
account of each thread's CPU time.

    python bench/threads.py [--frames 1500] [--threads 1] [--durability spill|always]
                            [--coalesce-ms MS]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import _InvokeClock, presized_frames  # noqa: E402
from edged.app import Daemon  # noqa: E402
from edged.config import parse_config  # noqa: E402
from tests.support import Mosquitto  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_thread() -> dict[str, float]:
    """CPU seconds of each thread of this process, by Python thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{task}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        name = names.get(int(task), "native (runtime, libraries)")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1, help="interpreter threads")
    ap.add_argument("--durability", choices=["spill", "always"], default="spill")
    ap.add_argument("--coalesce-ms", type=float, default=None, help="mqtt.coalesce_ms")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = presized_frames(tmp / "frames")
        broker = Mosquitto(tmp).start()
        try:
            cfg = parse_config(
                {
                    "device": {"id": "bench"},
                    "capture": {"type": "replay", "paths": [str(images)], "loop": True},
                    "model": {"num_threads": args.threads},
                    "mqtt": {
                        "url": broker.url,
                        "qos": 1,
                        "durability": args.durability,
                        **({} if args.coalesce_ms is None else {"coalesce_ms": args.coalesce_ms}),
                    },
                    "health": {"interval_s": 5.0},
                }
            )
            warmup = 100
            daemon = Daemon(cfg, max_frames=warmup + args.frames + 50)
            with _InvokeClock() as clock:
                thread = threading.Thread(
                    target=daemon.run, name="main loop (Daemon.run)", daemon=True
                )
                thread.start()
                while daemon.stats.frames_processed < warmup:
                    time.sleep(0.05)
                n0, i0, c0 = daemon.stats.frames_processed, clock.cpu, time.process_time()
                before = cpu_by_thread()
                while daemon.stats.frames_processed < warmup + args.frames:
                    time.sleep(0.05)
                after = cpu_by_thread()
                n1, i1, c1 = daemon.stats.frames_processed, clock.cpu, time.process_time()
                thread.join(60)
        finally:
            broker.stop()
    n = n1 - n0
    invoke = (i1 - i0) / n * 1000
    total = (c1 - c0) / n * 1000
    print(
        f"edged threads: {n} frames, {args.threads} interpreter thread(s), "
        f"durability {args.durability}, coalesce_ms {daemon.cfg.mqtt.coalesce_ms:g}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'process':32s} {total:7.3f} ms/frame")
    print(f"{'  of which inside invoke()':32s} {invoke:7.3f} ms/frame")
    print(f"{'  outside invoke()':32s} {total - invoke:7.3f} ms/frame")
    for name in sorted(after, key=lambda k: before.get(k, 0.0) - after[k]):
        ms = (after[name] - before.get(name, 0.0)) / n * 1000
        if ms < 0.0005:
            continue
        label = f"  thread {name}"
        extra = f"  ({ms - invoke:.3f} outside invoke)" if name == "edged-infer" else ""
        print(f"{label:32s} {ms:7.3f} ms/frame{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
