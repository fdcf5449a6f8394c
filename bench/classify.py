#!/usr/bin/env python3
"""Classification's CPU per call on quantized softmax outputs, in one run: the integer path
(a uint8 output ranked on its integers, only the winners dequantized) against the general
path on the same output dequantized to float32 (what a float model or a sensor's tensor
takes).  The outputs are softmaxes of random logits over 1001 classes, quantized to uint8
as a quantized model's last layer does (most classes at 0, many ties).

    python bench/classify.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edged.classify import Classifier, Labels, dequantize
from edged.config import ClassifyConfig

CLASSES = 1001
SCALE = 1 / 256


def outputs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        logits = rng.normal(0, 2.5, CLASSES)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        out.append(np.clip(np.rint(probs / SCALE), 0, 255).astype(np.uint8))
    return out


def per_call_us(f: Classifier, args: Sequence[tuple[Any, ...]], calls: int) -> float:
    for a in args[:100]:
        f(*a)
    t = time.thread_time_ns()
    for i in range(calls):
        f(*args[i % len(args)])
    return (time.thread_time_ns() - t) / calls / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names = ["background"] + [f"class {i}" for i in range(CLASSES - 1)]
    clf = Classifier(Labels.build(names, CLASSES, "bench", "bench"), ClassifyConfig())
    raw = outputs(256)
    ints = [(r, SCALE, 0) for r in raw]
    floats = [(dequantize(r, SCALE, 0),) for r in raw]
    at_zero = statistics.mean(float((r == 0).mean()) for r in raw)
    a, b = [], []
    for _ in range(args.rounds):
        a.append(per_call_us(clf, ints, args.calls))
        b.append(per_call_us(clf, floats, args.calls))
    ia, fb = statistics.median(a), statistics.median(b)
    print(
        f"{CLASSES} classes, {at_zero:.0%} of them at 0 on average, {args.rounds} rounds of "
        f"{args.calls} calls, medians: uint8 on its integers {ia:.1f} us per call, the same "
        f"output as float32 {fb:.1f} us; ratio {ia / fb:.2f}"
    )


if __name__ == "__main__":
    main()
