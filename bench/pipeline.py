#!/usr/bin/env python3
"""End-to-end throughput of the daemon against a bare ``interpreter.invoke()`` loop.

Both run in this process, on the same model and thread count: the baseline invokes the
interpreter on one preprocessed photo in a tight loop; the daemon replays the photos in
../shared/fixtures/images unpaced (decoding every file each time), classifies and publishes
each frame to a local mosquitto.  Printed: frames/s of each and their ratio, and the CPU time
per frame that the daemon spends outside ``invoke()``.

    python bench/pipeline.py [--frames 300] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.app import Daemon  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.engine import open_engine  # noqa: E402
from edged.preprocess import load_image  # noqa: E402
from tests.support import IMAGES, MODELS, Mosquitto  # noqa: E402


def bare_loop(model: Path, threads: int, frames: int) -> tuple[float, float]:
    """(frames/s, CPU seconds per invoke) of invoke() alone, on a real preprocessed photo."""
    cfg = parse_config({"model": {"path": str(model), "num_threads": threads}})
    engine = open_engine(cfg.model, cfg.classify)
    backend = engine.backend
    tensor = engine.preprocess(load_image(IMAGES / "parrot.jpg"))
    for _ in range(20):
        backend.invoke(tensor)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(frames):
        backend.invoke(tensor)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.close()
    return frames / wall, cpu / frames


def daemon_run(
    model: Path, threads: int, frames: int, broker: Mosquitto, **model_options: object
) -> tuple[float, float]:
    """(frames/s, CPU seconds per frame) of the whole daemon, after a warm-up."""
    warmup = 20
    cfg = parse_config(
        {
            "device": {"id": "bench"},
            "capture": {"type": "replay", "paths": [str(IMAGES)], "loop": True},
            "model": {"path": str(model), "num_threads": threads, **model_options},
            "mqtt": {"url": broker.url},
            "health": {"interval_s": 5.0},
        }
    )
    daemon = Daemon(cfg, max_frames=warmup + frames)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (daemon.run(), done.set()), daemon=True)
    thread.start()
    while daemon.stats.frames_processed < warmup:
        time.sleep(0.002)
    c0, t0 = time.process_time(), time.perf_counter()
    while daemon.stats.frames_processed < warmup + frames:
        time.sleep(0.002)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    done.wait(30)
    return frames / wall, cpu / frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp)).start()
        try:
            v2 = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
            for threads in args.threads:
                bare_fps, _ = bare_loop(v2, threads, args.frames)
                d_fps, _ = daemon_run(v2, threads, args.frames, broker)
                results[f"v2_224_threads{threads}"] = {
                    "bare_fps": round(bare_fps, 1),
                    "daemon_fps": round(d_fps, 1),
                    "ratio": round(d_fps / bare_fps, 3),
                }
            tiny = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
            _, invoke_cpu = bare_loop(tiny, 1, args.frames * 3)
            d_fps, frame_cpu = daemon_run(tiny, 1, args.frames * 3, broker)
            results["v1_025_128_threads1"] = {
                "daemon_fps": round(d_fps, 1),
                "cpu_ms_per_frame": round(frame_cpu * 1000, 3),
                "cpu_ms_in_invoke": round(invoke_cpu * 1000, 3),
                "cpu_ms_outside_invoke": round((frame_cpu - invoke_cpu) * 1000, 3),
            }
        finally:
            broker.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("end-to-end daemon throughput vs bare invoke() loop (same run, same model/threads)")
    for name, r in results.items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in r.items()))  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    sys.exit(main())
