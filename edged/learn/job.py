"""One training job, run as ``python -m edged.learn.job FOLDER`` in a process of its own at
the lowest priority, so that the daemon keeps classifying at its rate.

It splits the dataset into training and held-out photos (a stratified share of each class),
trains with ``edged.train`` on the training photos, then scores the new model and the
running one on the same held-out photos, and trains once more on half the training photos
to show whether more photos would help.  ``status.json`` says how far it is; the report is
``report.json``.  The running model is never touched: a job killed half-way leaves a folder
without a report, and the daemon reads it as failed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edged.config import ClassifyConfig, ModelConfig
from edged.learn.models import (
    MODEL_FILE,
    REPORT_FILE,
    SPEC_FILE,
    STATUS_FILE,
    read_json,
    sha256_of,
    write_json,
)
from edged.train.dataset import MIN_IMAGES, DatasetError, scan
from edged.train.pipeline import Progress

log = logging.getLogger(__name__)

# share of the whole job each phase takes, for one progress bar
WEIGHTS = {"check": 0.10, "train": 0.55, "score": 0.10, "half": 0.25}


class JobFailed(Exception):
    pass


class Status:
    """Writes ``status.json`` (throttled) as the job goes."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATUS_FILE
        self.phase = "starting"
        self.done_before = 0.0
        self.fraction = 0.0
        self._last = 0.0

    def begin(self, phase: str) -> None:
        order = list(WEIGHTS)
        self.done_before = sum(WEIGHTS[p] for p in order[: order.index(phase)])
        self.phase, self.fraction = phase, 0.0
        self.write(force=True)

    def step(self, fraction: float) -> None:
        self.fraction = min(1.0, max(self.fraction, fraction))  # a bar never goes back
        self.write()

    @property
    def progress(self) -> float:
        return round(self.done_before + WEIGHTS.get(self.phase, 0.0) * self.fraction, 4)

    def write(self, force: bool = False, **extra: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        data = {"state": "running", "phase": self.phase, "progress": self.progress,
                "pid": os.getpid()} | extra  # fmt: skip
        write_json(self.path, data)


class _Progress(Progress):
    """edged.train's progress (phases, images) as a fraction of one job phase."""

    def __init__(self, status: Status) -> None:
        self.status = status
        self.total: int | None = None
        self.count = 0
        self.phases = 0

    def phase(self, name: str, total: int | None = None) -> None:
        self.phases += 1
        self.total, self.count = total, 0
        self.status.step(min(0.95, 0.1 * self.phases))

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.total:
            # features take most of a training run
            self.status.step(min(0.9, 0.1 + 0.8 * self.count / self.total))

    def done(self) -> None:
        self.status.step(1.0)


def split(
    files: dict[str, list[Path]], share: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Per class, ``share`` of the photos (at least one) held out, the rest to train on."""
    rng = np.random.default_rng(seed)
    train: dict[str, list[Path]] = {}
    held: dict[str, list[Path]] = {}
    for name, paths in files.items():
        if len(paths) < MIN_IMAGES + 1:
            raise JobFailed(
                f"class {name!r} has {len(paths)} readable photo(s): label at least "
                f"{MIN_IMAGES + 1} ({MIN_IMAGES} to train on, 1 to score)"
            )
        order = [paths[i] for i in rng.permutation(len(paths))]
        n = min(max(1, round(len(paths) * share)), len(paths) - MIN_IMAGES)
        held[name] = sorted(order[:n])
        train[name] = sorted(order[n:])
    return train, held


def link_tree(files: dict[str, list[Path]], root: Path) -> None:
    """A training folder (a folder per class) of links to the dataset's photos."""
    for name, paths in files.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for p in paths:
            dst = root / name / p.name
            try:
                os.link(p, dst)
            except OSError:
                os.symlink(p.resolve(), dst)


def score(
    model: ModelConfig, classify: ClassifyConfig, held: dict[str, list[Path]],
    classes: list[str], status: Status | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy, per-class precision and recall and the confusion matrix (rows: the true
    class, columns: the predicted one, a last column for a label outside ``classes``) of
    ``model`` on the held-out photos.  A label matches a class case-insensitively."""
    from edged.engine import open_engine

    index = {c.lower(): i for i, c in enumerate(classes)}
    other = len(classes)
    matrix = [[0] * (other + 1) for _ in classes]
    engine = open_engine(model, classify)
    total = sum(len(v) for v in held.values())
    done = 0
    try:
        for t, name in enumerate(classes):
            for path in held.get(name, []):
                result, _ms = engine.infer(engine.load(path))
                top = result.top1
                p = index.get(top.label.lower(), other) if top is not None else other
                matrix[t][p] += 1
                done += 1
                if status is not None:
                    status.step(done / total)
        name_sha = (engine.model.name, engine.model.sha256)
    finally:
        engine.close()
    right = sum(matrix[i][i] for i in range(len(classes)))
    per_class = {}
    for i, c in enumerate(classes):
        predicted = sum(matrix[t][i] for t in range(len(classes)))
        support = sum(matrix[i])
        per_class[c] = {
            "precision": round(matrix[i][i] / predicted, 4) if predicted else None,
            "recall": round(matrix[i][i] / support, 4) if support else None,
            "support": support,
        }
    return {
        "accuracy": round(right / total, 4) if total else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix,
        "model": {"name": name_sha[0], "sha256": name_sha[1]},
    }


def check_photos(
    files: dict[str, list[Path]], status: Status
) -> tuple[dict[str, list[Path]], list[dict[str, str]]]:
    """Every photo decoded once: one that cannot be is reported and left out."""
    from edged.preprocess.image import ImageError, load_image

    good: dict[str, list[Path]] = {}
    bad: list[dict[str, str]] = []
    total = sum(len(v) for v in files.values()) or 1
    done = 0
    for name, paths in files.items():
        good[name] = []
        for p in paths:
            try:
                load_image(p, (224, 224))
                good[name].append(p)
            except (ImageError, OSError) as exc:
                log.warning("photo %s left out: %s", p, exc)
                bad.append({"file": f"{name}/{p.name}", "error": str(exc)})
            done += 1
            status.step(done / total)
    return good, bad


def run(folder: Path) -> dict[str, Any]:
    from edged.train import TrainError, TrainOptions, train

    spec = read_json(folder / SPEC_FILE)
    if spec is None:
        raise JobFailed(f"{folder / SPEC_FILE} is missing or unreadable")
    status = Status(folder)
    started = time.monotonic()
    timings: dict[str, float] = {}

    status.begin("check")
    try:
        dataset = scan(Path(spec["dataset"]))
    except DatasetError as exc:
        raise JobFailed(str(exc)) from None
    files = {c: [p for p in dataset.files[c] if p.suffix.lower() != ".json"]
             for c in dataset.classes}  # fmt: skip
    files, bad = check_photos(files, status)
    classes = dataset.classes
    train_files, held = split(files, float(spec["held_out"]), int(spec.get("seed", 0)))
    work = folder / "split"
    link_tree(train_files, work / "train")
    timings["check"] = round(time.monotonic() - started, 3)

    threads = int(spec["threads"])
    base_cfg = ModelConfig.model_validate(spec["model"]).model_copy(update={"num_threads": threads})
    running = ModelConfig.model_validate(spec["baseline"]).model_copy(
        update={"num_threads": threads}
    )
    classify = ClassifyConfig.model_validate(spec["classify"])
    cache = Path(spec["cache_dir"]) if spec.get("cache_dir") else None
    out = folder / MODEL_FILE

    def opts(data: Path, dest: Path) -> TrainOptions:
        return TrainOptions(data_dir=data, out=dest, model=base_cfg, cache_dir=cache,
                            recipe=str(spec["recipe"]))  # fmt: skip

    status.begin("train")
    t0 = time.monotonic()
    try:
        trained = train(opts(work / "train", out), _Progress(status))
    except TrainError as exc:
        raise JobFailed(f"training failed: {exc}") from None
    timings["train"] = round(time.monotonic() - t0, 3)

    status.begin("score")
    t0 = time.monotonic()
    new_model = base_cfg.model_copy(update={"path": str(out), "sha256": "", "labels": ""})
    new = score(new_model, classify, held, classes, status)
    old = score(running, classify, held, classes)
    timings["score"] = round(time.monotonic() - t0, 3)

    status.begin("half")
    t0 = time.monotonic()
    smallest = min(len(v) for v in train_files.values())
    if smallest // 2 < MIN_IMAGES:
        half: dict[str, Any] = {
            "accuracy": None,
            "skipped": f"needs {2 * MIN_IMAGES} training photos per class (the smallest "
            f"class has {smallest})",
        }
    else:
        halves = {c: v[: len(v) // 2] for c, v in train_files.items()}
        link_tree(halves, work / "half")
        half_out = work / "half.tflite"
        try:
            train(opts(work / "half", half_out), _Progress(status))
        except TrainError as exc:
            raise JobFailed(f"training on half the photos failed: {exc}") from None
        half_cfg = new_model.model_copy(update={"path": str(half_out)})
        scored = score(half_cfg, classify, held, classes)
        half = {"accuracy": scored["accuracy"],
                "train_images": {c: len(v) for c, v in halves.items()}}  # fmt: skip
    timings["half"] = round(time.monotonic() - t0, 3)
    timings["total"] = round(time.monotonic() - started, 3)

    gain = new["accuracy"] - old["accuracy"]
    report = {
        "recipe": trained.get("recipe", spec["recipe"]),
        "classes": classes,
        "accuracy": new["accuracy"],
        "per_class": new["per_class"],
        "confusion_matrix": new["confusion_matrix"],
        "baseline_accuracy": old["accuracy"],
        "baseline_model": old["model"],
        "baseline_confusion_matrix": old["confusion_matrix"],
        "verdict": "better" if gain > 0 else "same" if gain == 0 else "worse",
        "half": half,
        "held_out": {c: len(v) for c, v in held.items()},
        "train_images": {c: len(v) for c, v in train_files.items()},
        "skipped_files": bad + list(trained.get("skipped_files", [])),
        "model": {"path": str(out), "sha256": sha256_of(out), "size_bytes": out.stat().st_size},
        "training": {
            k: trained.get(k)
            for k in ("validation", "augment", "base", "date", "edged_version", "timings_s")
        },
        "threads": threads,
        "timings_s": timings,
    }
    write_json(folder / REPORT_FILE, report)
    return report


def _disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = Path(argv[0])
    try:
        os.nice(19)  # the daemon first
    except OSError as exc:
        log.warning("cannot lower this training's priority (nice 19): %s", exc)
    status_path = folder / STATUS_FILE
    try:
        report = run(folder)
    except BaseException as exc:
        if _disk_full(exc):
            msg = (f"the disk is full (no space left on device under {folder}): free space "
                   "and train again; the running model stays")  # fmt: skip
        elif isinstance(exc, JobFailed):
            msg = str(exc)
        else:
            msg = f"training failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        log.error("%s", msg)
        try:
            write_json(status_path, {"state": "failed", "progress": 1.0, "error": msg})
        except OSError:
            print(msg, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder / "split", ignore_errors=True)
    write_json(status_path, {"state": "done", "progress": 1.0,
                             "recipe": report["recipe"]})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
