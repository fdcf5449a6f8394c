#!/usr/bin/env python3
"""Classifying and publishing beside the next ``invoke()`` (thread ``edged-publish``)
against doing it in the infer thread between invokes: the daemon's frames/s as a share of
the bare ``invoke()`` loop's, and its CPU per frame outside ``invoke()``, at each number of
interpreter threads.  Rounds alternate the bare loop and the daemon both ways on pre-sized
224x224 frames (bench/pipeline.py's), unpaced, QoS 1 to a local mosquitto; medians.

The daemon chooses by itself (beside where the interpreter leaves a core free); here each
way is forced in turn.

    python bench/beside.py [--rounds 5] [--frames 600] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edged.app  # noqa: E402
from bench.pipeline import bare_loop, daemon_run, presized_frames  # noqa: E402
from tests.support import Mosquitto  # noqa: E402

WAYS = {"beside": True, "in the infer thread": False}


def _forced(spare: bool, interpreter_threads: int) -> bool:
    return spare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--threads", default="1,2", help="interpreter threads, comma-separated")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    chooser = edged.app.spare_core
    print(
        f"edged beside: {args.rounds} rounds of {args.frames} frames, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = presized_frames(tmp / "frames")
        broker = Mosquitto(tmp).start()
        try:
            for threads in (int(t) for t in args.threads.split(",")):
                bare: list[float] = []
                fps: dict[str, list[float]] = {way: [] for way in WAYS}
                outside: dict[str, list[float]] = {way: [] for way in WAYS}
                for _ in range(args.rounds):
                    bare.append(bare_loop(frames, threads, args.frames)[0])
                    for way, spare in WAYS.items():
                        edged.app.spare_core = functools.partial(_forced, spare)
                        rate, cpu, invoke_cpu = daemon_run(
                            frames, args.frames, broker, num_threads=threads
                        )
                        fps[way].append(rate)
                        outside[way].append((cpu - invoke_cpu) * 1000)
                edged.app.spare_core = chooser
                base = statistics.median(bare)
                print(f"{threads} interpreter thread(s): bare {base:.1f} frames/s")
                for way in WAYS:
                    note = " (the daemon's choice)" if chooser(threads) == WAYS[way] else ""
                    line = f"  {way:<20} daemon / bare {statistics.median(fps[way]) / base:.3f}"
                    if threads == 1:  # the invoke clock sees all of invoke's CPU only here
                        line += f", CPU outside invoke {statistics.median(outside[way]):.2f} ms"
                    print(line + note)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
