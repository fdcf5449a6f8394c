#!/usr/bin/env python3
"""What remote operation costs the pipeline: per-frame CPU of the daemon with the status
page and metrics off, and on with nobody connected, measured in the same run.

Every measurement is a fresh daemon process (bundled model, bundled photos replayed unpaced
and decoded each time, events to a local mosquitto, one inference thread) that counts the
process's CPU time over ``--frames`` frames after a warm-up.  Configurations alternate round
by round, so drift on a shared machine hits them alike; medians are compared:

- ``off``: [web] and [metrics] off (the defaults);
- ``off_again``: the same again, an A/A control that shows the noise floor;
- ``on_idle``: [web] and [metrics] listening on loopback, nobody connected;
- ``ref`` (with ``--ref REV``): the daemon of another revision (e.g. main, without remote
  operation), checked out into a temporary git worktree.

Whole-process CPU on a shared machine is noisy (see the A/A control), so what "on and idle"
adds is also accounted exactly: the servers' own threads (``edged-web``, ``edged-metrics``,
CPU from schedstat over the window, as a share of the process's), and the one per-frame
addition, the inference histogram's ``observe()`` (timed alone, as a share of a frame).

    python bench/remote_cost.py [--frames 300] [--rounds 5] [--ref main]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(tree: Path, frames: int, warmup: int, broker_url: str, on: bool) -> None:
    """In a child process: run the daemon of ``tree`` and print CPU seconds per frame."""
    sys.path.insert(0, str(tree))
    import logging

    logging.basicConfig(level=logging.WARNING)
    from edged.app import Daemon
    from edged.config import parse_config

    data: dict[str, object] = {
        "device": {"id": "bench"},
        "capture": {"type": "replay", "loop": True},
        "model": {"num_threads": 1},
        "mqtt": {"url": broker_url},
        "health": {"interval_s": 5.0},
    }
    if on:
        from tests.support import free_port

        data["web"] = {"listen": f"127.0.0.1:{free_port()}"}
        data["metrics"] = {"listen": f"127.0.0.1:{free_port()}"}
    daemon = Daemon(parse_config(data), max_frames=warmup + frames)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    while daemon.stats.frames_processed < warmup:
        time.sleep(0.002)
    s0 = server_cpu()
    c0, t0 = time.process_time(), time.perf_counter()
    while daemon.stats.frames_processed < warmup + frames:
        time.sleep(0.002)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    servers = server_cpu() - s0
    thread.join(30)
    print(
        json.dumps(
            {
                "cpu_ms_per_frame": cpu / frames * 1000,
                "fps": frames / wall,
                "server_share": servers / cpu,
            }
        )
    )


def server_cpu() -> float:
    """CPU seconds of the status page's and the metrics' server threads so far, from
    /proc/self/task/<tid>/schedstat (nanoseconds; psutil's clock ticks are too coarse)."""
    total = 0
    for t in threading.enumerate():
        if t.name in ("edged-web", "edged-metrics") and t.native_id is not None:
            with open(f"/proc/self/task/{t.native_id}/schedstat") as fh:
                total += int(fh.read().split()[0])
    return total / 1e9


def observe_cost_us(n: int = 200_000) -> float:
    """CPU microseconds of one inference-histogram observation (what metrics add per frame)."""
    from edged.health.metrics import Metrics

    metrics = Metrics(dict, "bench")
    c0 = time.process_time()
    for i in range(n):
        metrics.observe_inference(10.0 + (i % 7))
    return (time.process_time() - c0) / n * 1e6


def measure(tree: Path, args: argparse.Namespace, broker_url: str, on: bool) -> dict[str, float]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(tree),
        "--frames",
        str(args.frames),
        "--broker",
        broker_url,
    ] + (["--on"] if on else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ref", default="", help="also measure this git revision (e.g. main)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--broker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--on", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.frames, 30, args.broker, args.on)
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.support import Mosquitto

    runs: dict[str, list[dict[str, float]]] = {"off": [], "off_again": [], "on_idle": []}
    with tempfile.TemporaryDirectory() as tmp:
        ref_tree = Path(tmp) / "ref"
        if args.ref:
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-q", str(ref_tree), args.ref],
                cwd=ROOT,
                check=True,
            )
            runs["ref"] = []
        broker = Mosquitto(Path(tmp)).start()
        try:
            for r in range(args.rounds):
                order = list(runs)
                if r % 2:
                    order.reverse()
                for name in order:
                    tree = ref_tree if name == "ref" else ROOT
                    runs[name].append(measure(tree, args, broker.url, name == "on_idle"))
                    print(f"round {r + 1}: {name} {runs[name][-1]}", file=sys.stderr)
        finally:
            broker.stop()
            if args.ref:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(ref_tree)], cwd=ROOT, check=False
                )
    med = {k: statistics.median(x["cpu_ms_per_frame"] for x in v) for k, v in runs.items()}
    observe_us = observe_cost_us()
    report = {
        "frames_per_run": args.frames,
        "rounds": args.rounds,
        "cpu_ms_per_frame_median": {k: round(v, 3) for k, v in med.items()},
        "on_idle_vs_off": round(med["on_idle"] / med["off"], 4),
        "off_again_vs_off (noise)": round(med["off_again"] / med["off"], 4),
        "on_idle_server_threads_cpu_share": round(
            statistics.median(x["server_share"] for x in runs["on_idle"]), 6
        ),
        "histogram_observe_us": round(observe_us, 2),
        "histogram_observe_share_of_frame": round(observe_us / 1000 / med["off"], 6),
    }
    if "ref" in med:
        report[f"off_vs_{args.ref}"] = round(med["off"] / med["ref"], 4)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("per-frame CPU of the daemon, medians over rounds (same run):")
        for k, v in report.items():
            print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
