#!/usr/bin/env python3
"""What crash isolation costs, and how fast a fault is survived.

1. Throughput of CPU inference in a worker process (frames through shared memory) against
   the same model in-process, same run, same threads (target: ratio >= 0.95).  The worker is
   driven as the daemon drives it, two frames in flight (``ratio``); one frame at a time
   (``ratio_sync``) shows the round trip per frame beside the invoke itself.  Both sides
   pinned to the same core, and placed by the scheduler; then the same comparison for the
   whole daemon (``model.isolate_cpu`` false / true).
2. Time from ``kill -9`` of the Edge TPU worker to the first event produced on the CPU,
   over repeated kills, with the daemon publishing to a local mosquitto.  No Edge TPU here:
   the worker loads the fake pass-through delegate (tests/fakes), which runs the real
   delegate path on the CPU kernels.

    python bench/worker.py [--seconds 20] [--kills 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.app import Daemon  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.engine import open_engine  # noqa: E402
from edged.infer.base import InferenceBackend  # noqa: E402
from edged.infer.bundled import default_model_path  # noqa: E402
from edged.infer.cpu import CpuBackend  # noqa: E402
from edged.infer.model import inspect_model  # noqa: E402
from edged.infer.supervisor import Supervisor  # noqa: E402
from edged.infer.worker import WorkerBackend  # noqa: E402
from edged.preprocess import load_image  # noqa: E402
from tests.fakes.delegate import build_fake_delegate  # noqa: E402
from tests.support import IMAGES, MODELS, Mosquitto, Subscriber  # noqa: E402


def timed(
    backend: InferenceBackend, tensor: npt.NDArray[np.generic], frames: int
) -> tuple[float, float]:
    """Seconds for ``frames`` invokes, one at a time, and the time spent inside invoke() as
    the worker reports it (0 in-process)."""
    inside = 0.0
    t0 = time.perf_counter()
    for _ in range(frames):
        backend.invoke(tensor)
        inside += getattr(backend, "last_ms", 0.0) or 0.0
    return time.perf_counter() - t0, inside / 1000.0


def timed_pipelined(
    backend: InferenceBackend, tensor: npt.NDArray[np.generic], frames: int
) -> float:
    """Seconds for ``frames`` frames with ``backend.depth`` in flight, as the daemon runs."""
    t0 = time.perf_counter()
    for _ in backend.stream(itertools.repeat(tensor, frames)):
        pass
    return time.perf_counter() - t0


def isolation_cost(
    model: Path, threads: int, seconds: float, same_core: bool, control: bool = False
) -> dict[str, object]:
    """In-process and worker alternate in short blocks (about 0.1 s each) for ``seconds``,
    so that drift in this machine's speed hits both alike.

    ``same_core``: this process and the worker are pinned to one core, the other core in
    the next block, so both sides invoke on the same core and the ratio shows the process
    boundary alone.  Otherwise the scheduler places them, as in the daemon; on a VM whose
    two cores differ in speed from minute to minute, that ratio wanders by +-10 %.

    ``control``: a second in-process interpreter in place of the worker (an A/A run): how
    far the ratio strays with no process boundary at all."""
    cfg = parse_config({"model": {"path": str(model), "num_threads": threads}}).model
    mf = inspect_model(model)
    inproc = CpuBackend(mf, cfg)
    worker = CpuBackend(mf, cfg) if control else WorkerBackend(mf, cfg, "cpu")
    engine = open_engine(cfg, parse_config({}).classify)
    tensor = engine.preprocess(load_image(IMAGES / "parrot.jpg"))
    engine.close()
    cores = sorted(os.sched_getaffinity(0))
    try:
        for backend in (inproc, worker):  # warm-up
            timed(backend, tensor, 20)
        per_frame = timed(inproc, tensor, 20)[0] / 20
        block = max(1, int(0.1 / per_frame))
        t_in = t_sync = t_pipe = inside = 0.0
        ratios = []  # per round of blocks: drift between rounds cancels out
        frames = n = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if same_core:
                core = {cores[n % len(cores)]}
                os.sched_setaffinity(0, core)
                if not control:
                    assert isinstance(worker, WorkerBackend) and worker.pid is not None
                    os.sched_setaffinity(worker.pid, core)
            # in-process before and after; the two worker modes swap places every round
            a = timed(inproc, tensor, block)[0]
            if n % 2:
                c, i = timed(worker, tensor, block)
                b = timed_pipelined(worker, tensor, block)
            else:
                b = timed_pipelined(worker, tensor, block)
                c, i = timed(worker, tensor, block)
            a2 = timed(inproc, tensor, block)[0]
            t_in += (a + a2) / 2
            t_pipe += b
            t_sync += c
            inside += i
            ratios.append((a + a2) / 2 / b)
            frames += block
            n += 1
    finally:
        os.sched_setaffinity(0, cores)
        inproc.close()
        worker.close()
    result = {
        "frames": frames,
        "in_process_fps": round(frames / t_in, 1),
        "worker_fps": round(frames / t_pipe, 1),
        "ratio": round(t_in / t_pipe, 3),
        "ratio_median_of_rounds": round(statistics.median(ratios), 3),
        "ratio_rounds_p25_p75": [round(q, 3) for q in statistics.quantiles(ratios, n=4)[::2]],
        "ratio_sync": round(t_in / t_sync, 3),
        "invoke_ms": round(t_in / frames * 1000.0, 2),
    }
    if control:
        for key in ("worker_fps", "ratio_sync"):
            result.pop(key)
        result["twin_fps"] = round(frames / t_pipe, 1)
    else:
        result["round_trip_us"] = round((t_sync - inside) / frames * 1e6, 1)
    return result


def daemon_isolation_cost(model: Path, threads: int, frames: int, pairs: int) -> dict[str, float]:
    """The whole daemon (unpaced replay, publishing to mosquitto) with CPU inference
    in-process against ``model.isolate_cpu = true``, alternating runs."""
    from bench.pipeline import daemon_run

    fps_in, fps_worker = [], []
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp)).start()
        try:
            for _ in range(pairs):
                fps_in.append(
                    daemon_run(IMAGES, frames, broker, path=str(model), num_threads=threads)[0]
                )
                fps_worker.append(
                    daemon_run(
                        IMAGES,
                        frames,
                        broker,
                        path=str(model),
                        num_threads=threads,
                        isolate_cpu=True,
                    )[0]
                )
        finally:
            broker.stop()
    ratios = [b / a for a, b in zip(fps_in, fps_worker, strict=True)]
    return {
        "in_process_fps": round(statistics.median(fps_in), 1),
        "worker_fps": round(statistics.median(fps_worker), 1),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def kill_to_cpu(kills: int) -> dict[str, float]:
    # The daemon gives up on a TPU that fails 5 times a minute; this measures the switch
    # itself over more kills than that, so the limit is lifted for the measurement.
    from edged.infer import supervisor

    supervisor.RESTART_LIMIT = kills + 1
    lib = build_fake_delegate(ROOT / ".bench-cache")
    tiny = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp)).start()
        sub = Subscriber(broker.port)
        cfg = parse_config(
            {
                "device": {"id": "bench-tpu"},
                "capture": {"paths": [str(IMAGES / "parrot.jpg")], "loop": True, "fps": 50},
                "model": {
                    "path": str(tiny),
                    "backend": "edgetpu",
                    "edgetpu_library": str(lib),
                    "num_threads": 1,
                },
                "mqtt": {"url": broker.url},
                "health": {"interval_s": 60},
            }
        )
        daemon = Daemon(cfg)
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        delays = []
        try:
            for i in range(kills):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    sup = daemon.engine.backend if daemon.engine else None
                    if isinstance(sup, Supervisor) and sup.name == "edgetpu" and sup.worker_pid:
                        break
                    time.sleep(0.02)
                else:
                    raise RuntimeError(f"no Edge TPU worker before kill {i + 1}")
                time.sleep(0.2)
                seen = len(sub.messages)
                t_kill = time.monotonic()
                os.kill(sup.worker_pid, signal.SIGKILL)
                while True:
                    timed = sub.timed_events()
                    cpu = [
                        t
                        for t, e in timed[seen - (len(sub.messages) - len(timed)) :]
                        if e["backend"] == "cpu" and t >= t_kill
                    ]
                    if cpu:
                        delays.append(cpu[0] - t_kill)
                        break
                    if time.monotonic() - t_kill > 10:
                        raise RuntimeError("no CPU event within 10 s of the kill")
                    time.sleep(0.001)
                print(
                    f"  kill {i + 1}/{kills}: first CPU event after {delays[-1] * 1000:.0f} ms",
                    file=sys.stderr,
                )
        finally:
            daemon.stop.set()
            thread.join(10)
            sub.close()
            broker.stop()
    return {
        "kills": len(delays),
        "p50_ms": round(statistics.median(delays) * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="per model and placement")
    ap.add_argument("--daemon-frames", type=int, default=300, help="per daemon run")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--parts",
        nargs="+",
        choices=("invoke", "daemon", "kills"),
        default=["invoke", "daemon", "kills"],
        help="what to measure: the invoke loop, the whole daemon, kill -9 recovery",
    )
    ap.add_argument(
        "--placement",
        nargs="+",
        choices=("same_core", "scheduler"),
        default=["same_core", "scheduler"],
    )
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    models = {
        "bundled_int8": default_model_path(),
        "v2_224": MODELS / "mobilenet_v2_1.0_224_quant.tflite",
        # the worst case: the fixed round trip weighs most against a sub-millisecond invoke
        "v1_025_128": MODELS / "mobilenet_v1_0.25_128_quant.tflite",
    }
    results: dict[str, Mapping[str, object]] = {}
    if "invoke" in args.parts:
        # A/A: two in-process interpreters, no process boundary: the noise floor of a ratio
        results["control_bundled_int8_in_process_twice"] = isolation_cost(
            default_model_path(), 1, args.seconds, same_core=False, control=True
        )
        for placement in args.placement:
            for name, path in models.items():
                results[f"{name}_threads1_{placement}"] = isolation_cost(
                    path, 1, args.seconds, same_core=placement == "same_core"
                )
    if "daemon" in args.parts:
        results["daemon_bundled_int8_threads2"] = daemon_isolation_cost(
            default_model_path(), 2, args.daemon_frames, 6
        )
        results["daemon_v1_025_128_threads2"] = daemon_isolation_cost(
            MODELS / "mobilenet_v1_0.25_128_quant.tflite", 2, args.daemon_frames, 6
        )
    if "kills" in args.parts:
        results["kill_to_first_cpu_event"] = kill_to_cpu(args.kills)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("worker process vs in-process CPU inference, and recovery from kill -9")
        for name, r in results.items():
            print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
