"""Milliseconds per inference of the bundled models against Coral's CPU MobileNets.

Every model runs in this one process through ``ai_edge_litert.interpreter.Interpreter``
on the CPU, at 1 and at 2 threads: a warm-up, then N timed ``invoke()`` calls on a fixed
input, the models taking turns in a few rounds so that a busy spell on the machine hits them
alike.  The table gives the median and the 95th percentile, and each model's median as a
ratio of ``mobilenet_v2_1.0_224_quant`` at the same thread count.

    .venv/bin/python bench/models_speed.py [--runs 100] [--warmup 10] [--rounds 5]
        [--baseline FILE_NAME] [MODEL ...]

Run it on an otherwise idle machine: other work on the same cores shows up in the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MODELS = ROOT.parent / "shared" / "fixtures" / "models"
BASELINE = "mobilenet_v2_1.0_224_quant.tflite"
DEFAULT_MODELS = [
    ROOT / "models" / "efficientnet_lite0_int8.tflite",
    ROOT / "models" / "efficientnet_lite0_fp32.tflite",
    ROOT / "models" / "efficientnet_lite1_int8.tflite",
    ROOT / "models" / "efficientnet_lite2_int8.tflite",
    FIXTURE_MODELS / "mobilenet_v1_0.25_128_quant.tflite",
    FIXTURE_MODELS / "mobilenet_v1_0.75_192_quant.tflite",
    FIXTURE_MODELS / BASELINE,
    FIXTURE_MODELS / "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
]


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p95_ms: float
    runs: int


def _input_for(detail: dict[str, object]) -> np.ndarray:
    """A fixed pseudo-random tensor of the input's shape and type."""
    shape = tuple(int(d) for d in detail["shape"])  # type: ignore[attr-defined]
    dtype = np.dtype(detail["dtype"])  # type: ignore[call-overload]
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def _ready(path: Path, threads: int, warmup: int) -> object:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _input_for(detail))
    for _ in range(warmup):
        interpreter.invoke()
    return interpreter


def _time(interpreter: object, runs: int) -> list[float]:
    invoke = interpreter.invoke  # type: ignore[attr-defined]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _summary(times: list[float]) -> Timing:
    times = sorted(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Timing(statistics.median(times), p95, len(times))


def measure(path: Path, threads: int, warmup: int = 10, runs: int = 100) -> Timing:
    """Median and 95th-percentile milliseconds per ``invoke()`` of one model."""
    return _summary(_time(_ready(path, threads, warmup), runs))


def measure_all(
    paths: list[Path], threads: int, warmup: int = 10, runs: int = 100, rounds: int = 5
) -> dict[Path, Timing]:
    """:func:`measure` for several models, interleaved: each of ``rounds`` rounds times every
    model in turn, so that a busy spell on a shared machine hits them all alike."""
    interpreters = {path: _ready(path, threads, warmup) for path in paths}
    times: dict[Path, list[float]] = {path: [] for path in paths}
    per_round = [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]
    for n in per_round:
        for path, interpreter in interpreters.items():
            times[path] += _time(interpreter, n)
    return {path: _summary(t) for path, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models",
        nargs="*",
        type=Path,
        help="model files (default: the "
        "bundled models and the Coral CPU models in ../shared/fixtures)",
    )
    parser.add_argument(
        "--runs", type=int, default=100, help="timed runs per model and thread count (default 100)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the models take turns in this many rounds of runs/rounds runs (default 5)",
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)"
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"file name of the model the ratios are against (default {BASELINE})",
    )
    args = parser.parse_args(argv)

    models = args.models or DEFAULT_MODELS
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        parser.error(f"model file(s) not found: {', '.join(missing)}")

    import ai_edge_litert

    print(
        f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}, "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores; per model and thread count: {args.warmup} warm-up + "
        f"{args.runs} timed runs, taking turns in {args.rounds} rounds"
    )
    results: dict[tuple[str, int], Timing] = {}
    for threads in args.threads:
        timings = measure_all(models, threads, args.warmup, args.runs, args.rounds)
        for path, timing in timings.items():
            results[(path.name, threads)] = timing

    width = max(len(p.name) for p in models)
    header = f"{'model':<{width}}  {'MB':>5}"
    for threads in args.threads:
        header += f"  {f'{threads}T median':>10} {f'{threads}T p95':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for path in models:
        line = f"{path.name:<{width}}  {path.stat().st_size / 1e6:5.1f}"
        for threads in args.threads:
            t = results[(path.name, threads)]
            base = results.get((args.baseline, threads))
            ratio = f"{t.median_ms / base.median_ms:6.2f}" if base else f"{'-':>6}"
            line += f"  {t.median_ms:10.2f} {t.p95_ms:8.2f} {ratio}"
        print(line)
    if not any(p.name == args.baseline for p in models):
        print(f"(ratio: {args.baseline} was not measured)")
    else:
        print(f"ratio = median / median of {args.baseline} at the same thread count")
    return 0


if __name__ == "__main__":
    sys.exit(main())
