#!/usr/bin/env python3
"""Peak memory and time of preparing a 24-megapixel JPEG for the bundled model: the one
path (``edged.preprocess.prepare``: DCT-scaled decoding) against a full decode followed by
the same crop and resize (what ``classify`` and ``eval`` did before).

Each way runs in a fresh process (peak RSS is per process: VmHWM), after the model and the
runtime are loaded, so the figures include what a real command holds.  The JPEG is a sample
photo upscaled to 6000x4000, written to a temporary directory.  Printed: peak RSS and
milliseconds of each, their ratios, and whether the two give the same top-1.

    python bench/decode.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from edged.config import parse_config
from edged.engine import open_engine
from edged.preprocess import load_image, to_model_input

path, way, repeat = sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = parse_config({})
engine = open_engine(cfg.model, cfg.classify)
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    if way == "prepare":
        tensor = engine.load(path)
    else:
        tensor = to_model_input(load_image(path), engine.backend.input_spec, engine.cfg.crop,
                                engine.cfg.crop_fraction, engine.cfg.resample)
    times.append((time.perf_counter() - t0) * 1000)
result, _ = engine.infer(tensor)
engine.close()
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print(json.dumps({"peak_rss_mb": hwm / 1024, "ms": sorted(times)[len(times) // 2],
                  "top1": result.top1.label if result.top1 else None}))
"""


class Measured(TypedDict):
    """What the child prints: peak RSS, median time per preparation and the top class."""

    peak_rss_mb: float
    ms: float
    top1: str | None


def measure(path: Path, way: str, repeat: int) -> Measured:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(path), way, str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: Measured = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="preparations per way (median)")
    args = parser.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jpg"
        with Image.open(ROOT / "edged" / "samples" / "coffee.jpg") as im:
            im.convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC).save(big, quality=90)
        full = measure(big, "full", args.repeat)
        one = measure(big, "prepare", args.repeat)
    print(f"24-megapixel JPEG ({args.repeat} preparations each, median time)")
    for name, r in (("full decode", full), ("prepare (DCT-scaled)", one)):
        print(f"  {name:22s} peak RSS {r['peak_rss_mb']:6.1f} MB  {r['ms']:7.1f} ms  {r['top1']}")
    memory = full["peak_rss_mb"] / one["peak_rss_mb"]
    speed = full["ms"] / one["ms"]
    print(f"  ratio full/prepare: memory {memory:.2f}x, time {speed:.1f}x")


if __name__ == "__main__":
    main()
