"""The daemon's frame rate while a Learn training job runs beside it.

The job runs at nice 19 with one thread fewer than the cores (edged.learn.api).  For each
source, in the same run: the daemon's rate at rest (a window before training), then while
the job trains (from the job's start to its end), read from the status page's health
(frames_processed over wall time).  Sources: a camera-like replay paced at --fps (does it
keep its rate?) and an unpaced replay (what the training takes from the daemon's ceiling).

Data: the weather fixture's photos (../shared/fixtures/custom/weather, first --per-class
by sorted name per class) placed in the dataset; without it, views cut from the samples
edged ships (tests.integration.learn_support.variants).

    .venv/bin/python bench/learn.py [--fps 10] [--per-class 30] [--rest 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.learn_support import Client, learn_config, variants  # noqa: E402
from tests.support import Mosquitto, start_edged, stop_process, wait_port  # noqa: E402

WEATHER = ROOT.parent / "shared" / "fixtures" / "custom" / "weather"


def dataset(tmp: Path, per_class: int) -> str:
    data = tmp / "dataset"
    if WEATHER.is_dir():
        for folder in sorted(p for p in WEATHER.iterdir() if p.is_dir()):
            (data / folder.name).mkdir(parents=True)
            for photo in sorted(folder.glob("*.jpg"))[:per_class]:
                shutil.copy(photo, data / folder.name / photo.name)
        return f"weather fixture, {per_class} per class"
    for name, label in variants(tmp / "views", per_class=per_class).items():
        (data / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / "views" / name, data / label / name)
    return f"views of the bundled samples, {per_class} per class"


def processed(client: Client) -> int:
    return int(client.get("api/status")["health"]["frames_processed"])


def rate(client: Client, seconds: float) -> float:
    n0, t0 = processed(client), time.monotonic()
    time.sleep(seconds)
    return (processed(client) - n0) / (time.monotonic() - t0)


def one(tmp: Path, fps: float, rest: float) -> dict[str, Any]:
    broker = Mosquitto(tmp).start()
    samples = sorted((ROOT / "edged" / "samples").glob("*.jpg"))
    cfg, port = learn_config(tmp, broker.url, samples, fps=fps)
    proc = start_edged("run", "--config", str(cfg), log=tmp / "edged.log")
    client = Client(port)
    try:
        wait_port(port, 60)
        deadline = time.monotonic() + 60
        while processed(client) < 10:  # warmed up
            if time.monotonic() > deadline:
                sys.exit(f"the daemon classifies nothing:\n{(tmp / 'edged.log').read_text()}")
            time.sleep(0.2)
        at_rest = rate(client, rest)
        n0, t0 = processed(client), time.monotonic()
        job = client.post("api/train")["job"]
        while (state := client.get(f"api/train/{job}"))["state"] == "running":
            time.sleep(0.5)
        during = (processed(client) - n0) / (time.monotonic() - t0)
        if state["state"] != "done":
            sys.exit(f"training failed: {state.get('error')}")
        report = state["report"]
        return {
            "source": f"replay paced at {fps:g} fps" if fps else "unpaced replay",
            "fps_at_rest": round(at_rest, 2),
            "fps_while_training": round(during, 2),
            "ratio": round(during / at_rest, 3) if at_rest else None,
            "training_s": round(time.monotonic() - t0, 1),
            "job_timings_s": report["timings_s"],
            "threads": report["threads"],
            "accuracy": report["accuracy"],
            "baseline_accuracy": report["baseline_accuracy"],
        }
    finally:
        stop_process(proc, timeout=20)
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fps", type=float, default=10.0, help="the paced source's rate")
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--rest", type=float, default=20.0, help="seconds measured at rest")
    args = ap.parse_args()
    rows = []
    for fps in (args.fps, 0.0):
        with tempfile.TemporaryDirectory(prefix="edged-bench-learn-") as d:
            tmp = Path(d)
            data = dataset(tmp, args.per_class)
            rows.append(one(tmp, fps, args.rest) | {"data": data})
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
