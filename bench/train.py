"""How long `edged train` takes on this machine.

1. from scratch: 6 classes x 30 images, augmentation on, an empty feature cache;
2. retrain after adding 5 images to one class (the cache holds the others);
3. the size of the model written.

Baseline, measured in the same run: one `edged classify` pass of the bundled model over the
same 180 images (decode, preprocess, inference), so the ratios say how many "looks at every
photo" training costs.  Targets: from scratch <= 60 s, retrain <= 10 s, model <= 6 MB.

Images: the 4 classes of ../shared/fixtures/custom/weather (first 30 + 1 by sorted name) and
2 classes of 30 ImageNet photos from ../shared/fixtures/calibration.  Without the fixtures,
--synthetic cuts 6 classes from the sample photos edged ships.

    .venv/bin/python bench/train.py [--synthetic] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
WEATHER = FIXTURES / "custom" / "weather"
CALIBRATION = FIXTURES / "calibration"
PER_CLASS = 30
ADDED = 5


def edged(*args: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "edged", *args, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"edged {' '.join(args)} failed:\n{out.stderr}")
    return seconds, json.loads(out.stdout)


def from_fixtures(data: Path) -> Path:
    """6 class folders of PER_CLASS images (symlinks); returns the folder of spare images."""
    spare = data.parent / "spare"
    spare.mkdir()
    for cls in sorted(p.name for p in WEATHER.iterdir() if p.is_dir()):
        files = sorted((WEATHER / cls).iterdir())
        (data / cls).mkdir(parents=True)
        for f in files[:PER_CLASS]:
            (data / cls / f.name).symlink_to(f.resolve())
        if cls == "cloudy":
            for f in files[PER_CLASS : PER_CLASS + ADDED]:
                (spare / f.name).symlink_to(f.resolve())
    photos = sorted(CALIBRATION.iterdir())
    for i, cls in enumerate(("imagenet a", "imagenet b")):
        (data / cls).mkdir()
        for f in photos[i * PER_CLASS : (i + 1) * PER_CLASS]:
            (data / cls / f.name).symlink_to(f.resolve())
    return spare


def synthetic(data: Path) -> Path:
    """6 classes of random crops of the bundled sample photos (two in grey)."""
    import numpy as np
    from PIL import Image, ImageOps

    samples = sorted((ROOT / "edged" / "samples").glob("*.jpg"))
    rng = np.random.default_rng(0)
    spare = data.parent / "spare"
    spare.mkdir()
    classes = [(p, False) for p in samples] + [(samples[0], True), (samples[1], True)]
    for i, (photo, grey) in enumerate(classes):
        folder = data / f"{photo.stem}{' grey' if grey else ''}"
        folder.mkdir(parents=True)
        with Image.open(photo) as opened:
            im = ImageOps.grayscale(opened).convert("RGB") if grey else opened.convert("RGB")
            w, h = im.size
            for k in range(PER_CLASS + (ADDED if i == 0 else 0)):
                s = rng.uniform(0.6, 0.9)
                cw, ch = int(w * s), int(h * s)
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                view = im.crop((x, y, x + cw, y + ch)).resize((640, 480))
                target = folder if k < PER_CLASS else spare
                view.save(target / f"{k:03d}.jpg", quality=90)
    return spare


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synthetic", action="store_true", help="cut classes from edged/samples")
    ap.add_argument("--rounds", type=int, default=1, help="repeat and report medians")
    args = ap.parse_args()
    if not args.synthetic and not (WEATHER.is_dir() and CALIBRATION.is_dir()):
        sys.exit(f"fixtures not found ({WEATHER}, {CALIBRATION}): use --synthetic")
    scratch, retrain, baseline, size = [], [], [], 0
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="edged-bench-train-") as tmp:
            data, cache, out = Path(tmp) / "data", Path(tmp) / "cache", Path(tmp) / "m.tflite"
            spare = synthetic(data) if args.synthetic else from_fixtures(data)
            images = sum(1 for _ in data.rglob("*.*"))
            files = sorted(str(p) for p in data.rglob("*.*"))
            seconds, _ = edged("classify", *files)
            baseline.append(seconds)
            seconds, first = edged("train", str(data), "--out", str(out), "--cache", str(cache))
            scratch.append(seconds)
            target = sorted(p for p in data.iterdir())[0]
            for f in sorted(spare.iterdir()):
                shutil.copy(f, target / f"added-{f.name}")
            seconds, second = edged("train", str(data), "--out", str(out), "--cache", str(cache))
            retrain.append(seconds)
            size = out.stat().st_size
            print(
                f"round: classify {baseline[-1]:.1f} s, from scratch {scratch[-1]:.1f} s "
                f"(phases {first['timings_s']}), retrain {retrain[-1]:.1f} s "
                f"(phases {second['timings_s']}, features computed "
                f"{second['features']['computed']})",
                flush=True,
            )
    base, s, r = (statistics.median(v) for v in (baseline, scratch, retrain))
    acc = first["validation"]
    print(f"classes: {len(first['classes'])} x {PER_CLASS} images ({images} files), augment on")
    print(f"baseline: edged classify of the same images, bundled model: {base:.1f} s")
    print(f"from scratch: {s:.1f} s = {s / base:.2f} x baseline   (target <= 60 s)")
    print(f"retrain +{ADDED} images: {r:.1f} s = {r / base:.2f} x baseline   (target <= 10 s)")
    print(f"model: {size / 1e6:.2f} MB   (target <= 6 MB)")
    print(
        f"held-out accuracy ({acc['method']}): int8 {acc['accuracy_int8']:.3f}, "
        f"float {acc['accuracy_float']:.3f} on {acc['images']} images"
    )
    ok = s <= 60 and r <= 10 and size <= 6_000_000
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
