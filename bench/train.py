"""What the training recipes cost and give, and what the daemon keeps while they run.

The weather fixture (../shared/fixtures/custom/weather, 4 classes of about 40 photos) is split
three ways per class by sorted file name: the first third trains, the second is the "field"
photos a camera meets later, the last third tests.  For the head recipe (a new last layer)
and the deep recipe (the last two blocks too), first on the train photos alone, then on
train + field, the table gives:

* the wall time of ``edged train`` and its peak RSS (``wait4``'s ru_maxrss);
* the int8 accuracy of the model written, on the test photos, through ``edged classify``;
* the events per second of a running ``edged run`` (replay of the test photos at 30 frames/s,
  like a camera, to a local mosquitto) while the training runs, against its rate at rest
  measured just before, in the same run.

    .venv/bin/python bench/train.py [--recipes head,deep] [--rest 20] [--fps 30]

``--retrain`` runs the older measurement instead: the head recipe from scratch and after
adding 5 photos, against one ``edged classify`` pass over the same photos.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import Mosquitto  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures"
WEATHER = FIXTURES / "custom" / "weather"
CALIBRATION = FIXTURES / "calibration"
PER_CLASS = 30
ADDED = 5

RETRAIN_DOC = """How long `edged train` takes on this machine.

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


def retrain_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=RETRAIN_DOC.split("\n")[0])
    ap.add_argument("--synthetic", action="store_true", help="cut classes from edged/samples")
    ap.add_argument("--rounds", type=int, default=1, help="repeat and report medians")
    args = ap.parse_args(argv)
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


# ---------------------------------------------------------------------------------------
# The recipes' table

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def split_weather(out: Path) -> dict[str, dict[str, list[Path]]]:
    """{"train"|"field"|"test": {class: [photos]}}: thirds of each class by sorted name."""
    parts: dict[str, dict[str, list[Path]]] = {"train": {}, "field": {}, "test": {}}
    for cls in sorted(p.name for p in WEATHER.iterdir() if p.is_dir()):
        files = sorted(p for p in (WEATHER / cls).iterdir() if p.suffix.lower() in SUFFIXES)
        third = len(files) // 3
        parts["train"][cls] = files[:third]
        parts["field"][cls] = files[third : 2 * third]
        parts["test"][cls] = files[2 * third :]
    return parts


def link_tree(folder: Path, classes: dict[str, list[Path]]) -> Path:
    for cls, files in classes.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            (folder / cls / f.name).symlink_to(f.resolve())
    return folder


class EventRate:
    """Counts a device's events on the broker; ``rate(t0, t1)`` in events per second."""

    def __init__(self, port: int, device: str) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-train-rate")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"edged/{device}/events")
        self.client.loop_start()

    def _on_message(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.times.append(time.monotonic())

    def count(self) -> int:
        with self.lock:
            return len(self.times)

    def rate(self, t0: float, t1: float) -> float:
        with self.lock:
            n = sum(1 for t in self.times if t0 <= t < t1)
        return n / (t1 - t0) if t1 > t0 else float("nan")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_daemon(tmp: Path, photos: Path, broker: Mosquitto, fps: float) -> subprocess.Popen[bytes]:
    config = tmp / "daemon.toml"
    config.write_text(
        '[device]\nid = "benchtrain"\n'
        f'[capture]\ntype = "replay"\npaths = ["{photos}"]\nrecursive = true\nloop = true\n'
        f"fps = {fps}\n"
        f'[mqtt]\nurl = "{broker.url}"\n'
    )
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("wb"),
    )


def on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def timed_train(data: Path, out: Path, recipe: str, log: Path) -> tuple[float, float, float, Any]:
    """``edged train`` as a child: (wall s, CPU s, peak RSS MB, report)."""
    cmd = [sys.executable, "-m", "edged", "train", str(data), "--out", str(out)]
    cmd += ["--recipe", recipe, "--no-cache", "--json"]
    t0 = time.monotonic()
    with (out.parent / f"{out.stem}.json.out").open("wb") as stdout, log.open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"edged train --recipe {recipe} failed ({proc.returncode}), see {log}")
    report = json.loads((out.parent / f"{out.stem}.json.out").read_text())
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, report


def test_accuracy(model: Path, test: dict[str, list[Path]]) -> tuple[float, int]:
    files = [(cls, f) for cls, fs in test.items() for f in fs]
    cmd = [sys.executable, "-m", "edged", "classify", "--model", str(model), "--json"]
    out = subprocess.run(
        cmd + [str(f) for _, f in files], capture_output=True, text=True, check=True
    )
    rows = json.loads(out.stdout)
    hits = sum(1 for (cls, _), row in zip(files, rows, strict=True) if row["label"] == cls)
    return hits / len(files), len(files)


def wait_for_events(rate: EventRate, n: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while rate.count() < n:
        if time.monotonic() > deadline:
            sys.exit(
                f"the daemon sent fewer than {n} events in {timeout:.0f} s:\n{log.read_text()}"
            )
        time.sleep(0.1)


def table_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default="head,deep", help="comma-separated (head,deep)")
    ap.add_argument("--rest", type=float, default=20.0, help="seconds at rest before each run")
    ap.add_argument("--fps", type=float, default=30.0, help="the daemon's replay rate")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if not WEATHER.is_dir():
        sys.exit(f"fixture not found: {WEATHER}")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    signal.signal(signal.SIGTERM, on_sigterm)  # clean up the daemon and the broker
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edged-bench-recipes-") as tmp_name:
        tmp = Path(tmp_name)
        parts = split_weather(tmp)
        sets = {
            "train": link_tree(tmp / "train", parts["train"]),
            "train+field": link_tree(
                tmp / "train+field",
                {c: parts["train"][c] + parts["field"][c] for c in parts["train"]},
            ),
        }
        test_dir = link_tree(tmp / "test", parts["test"])
        broker = Mosquitto(tmp).start()
        daemon = start_daemon(tmp, test_dir, broker, args.fps)
        rate = EventRate(broker.port, "benchtrain")
        try:
            wait_for_events(rate, 30, 120, tmp / "daemon.log")
            for recipe in recipes:
                for name, data in sets.items():
                    t0 = time.monotonic()
                    time.sleep(args.rest)  # the daemon alone
                    t1 = time.monotonic()
                    out = tmp / f"{recipe}-{name}.tflite"
                    seconds, cpu, rss, report = timed_train(
                        data, out, recipe, tmp / f"{recipe}-{name}.log"
                    )
                    t2 = time.monotonic()
                    acc, n_test = test_accuracy(out, parts["test"])
                    photos = sum(1 for _ in data.rglob("*.*"))
                    row = {
                        "recipe": report["recipe"],
                        "set": name,
                        "photos": photos,
                        "seconds": round(seconds, 1),
                        "cpu_seconds": round(cpu, 1),
                        "peak_rss_mb": round(rss),
                        "test_accuracy_int8": round(acc, 4),
                        "test_photos": n_test,
                        "validation_accuracy_int8": report["validation"]["accuracy_int8"],
                        "fps_rest": round(rate.rate(t0, t1), 2),
                        "fps_training": round(rate.rate(t1, t2), 2),
                        "phases_s": report["timings_s"],
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            rate.close()
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            broker.stop()
    load = os.getloadavg()
    print()
    print(
        f"weather fixture, thirds by sorted name; test = {rows[0]['test_photos']} photos; "
        f"daemon replaying at {args.fps:g} frames/s; {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} at the end"
    )
    print(
        "| recipe | training photos | time s | CPU s | peak RSS MB | int8 accuracy (test) "
        "| daemon events/s at rest | while training | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = r["fps_training"] / r["fps_rest"] if r["fps_rest"] else float("nan")
        print(
            f"| {r['recipe']} | {r['set']} ({r['photos']}) | {r['seconds']:.0f} | "
            f"{r['cpu_seconds']:.0f} | "
            f"{r['peak_rss_mb']} | {r['test_accuracy_int8']:.3f} | {r['fps_rest']:.1f} | "
            f"{r['fps_training']:.1f} | {ratio:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def main() -> int:
    argv = sys.argv[1:]
    if "--retrain" in argv:
        return retrain_main([a for a in argv if a != "--retrain"])
    return table_main(argv)


if __name__ == "__main__":
    sys.exit(main())
