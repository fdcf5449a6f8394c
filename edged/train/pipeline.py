"""``edged train``: a folder of photos, one folder per class, becomes a drop-in int8 model.

Phases: scan the folder, compute (or load cached) features with the daemon's preprocessing,
choose the L2 strength by validation and fit the softmax head, quantize it and score the
int8 head with the runtime's own kernels, write the model and its manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edged import __version__
from edged.config import ModelConfig
from edged.engine import resolve_model_config
from edged.infer.bundled import default_model_path
from edged.infer.runtime import get_runtime
from edged.train import head as heads
from edged.train.dataset import Dataset, DatasetError, check_counts, label_lines, scan
from edged.train.features import FeatureExtractor, ImageFeatures, default_cache_dir
from edged.train.metadata import ClassifierMetadata, classifier_metadata
from edged.train.tflite import BaseModel, BaseModelError, QuantizedHead

log = logging.getLogger(__name__)

KFOLD_BELOW = 20  # k-fold cross-validation when a class has fewer images than this
KFOLD = 5
MAX_BYTES = 6_000_000
# how the model is trained: "head" fits a new last layer on the base model's frozen features
RECIPES = ("head",)


class TrainError(Exception):
    """Training cannot start or finish; the message says why and what to change.
    ``exit_code`` is edged's: 1 for bad data or output, 3 for an unusable base model."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class TrainOptions:
    data_dir: Path
    out: Path
    base: Path | None = None
    val: float = 0.2
    augment: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    seed: int = 0
    recipe: str = "head"  # one of RECIPES


class Progress:
    """What a caller sees of a long run: phases and a count of images."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def done(self) -> None: ...


@dataclass
class _Features:
    values: list[npt.NDArray[np.int8]]  # per image: [variants, features]
    labels: list[int]
    paths: list[Path]


def check_out(out: Path) -> None:
    """Fail early, before any work, when the output cannot be written: a file is created
    and removed beside it (permissions alone say nothing for root or a read-only mount)."""
    if out.is_dir() or manifest_path(out) == out:
        raise TrainError(f"--out {str(out)!r}: give a model file name like birds.tflite")
    parent = out.parent
    if not parent.is_dir():
        raise TrainError(f"--out {str(out)!r}: folder {str(parent)!r} does not exist")
    probe = parent / f".{out.name}.{os.getpid()}.probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise TrainError(f"--out {str(out)!r} is not writable (permission denied)")


def manifest_path(out: Path) -> Path:
    return out.with_suffix(".json")


def folds(
    labels: list[int], classes: int, val: float, seed: int
) -> tuple[str, list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]]:
    """A stratified split holding out ``val`` of each class, or stratified k-fold when a
    class has fewer than ``KFOLD_BELOW`` images."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(classes)]
    smallest = min(len(p) for p in per_class)
    if smallest >= KFOLD_BELOW:
        val_idx = np.concatenate([p[: max(1, round(len(p) * val))] for p in per_class])
        train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
        method = f"stratified split: {round(val * 100)}% of each class held out"
        return method, [(train_idx, np.sort(val_idx))]
    k = min(KFOLD, smallest)
    fold_of = np.empty(len(y), dtype=np.int64)
    for p in per_class:
        fold_of[p] = np.arange(len(p)) % k
    method = f"{k}-fold stratified cross-validation (a class has fewer than {KFOLD_BELOW} images)"
    out = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]
    return method, out


class IntHead:
    """The quantized classifier run by the TFLite runtime on int8 features."""

    def __init__(self, base: BaseModel, q: QuantizedHead) -> None:
        self.interp = get_runtime().Interpreter(model_content=base.head_model(q), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]

    def scores(self, feats: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
        rows = []
        for row in feats:
            self.interp.set_tensor(self.inp, row[np.newaxis, :])
            self.interp.invoke()
            rows.append(np.array(self.interp.get_tensor(self.out)).reshape(-1))
        return np.stack(rows).astype(np.int8)

    def predict(self, feats: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
        # argmax takes the lowest class id among equal scores, as edged's classifier does
        return np.asarray(np.argmax(self.scores(feats), axis=1), dtype=np.int64)


def _rows(
    feats: _Features, idx: npt.NDArray[np.int64], augmented: bool
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """Feature rows of the images ``idx`` (with their augmented variants when asked)."""
    xs, ys = [], []
    for i in idx:
        v = feats.values[i] if augmented else feats.values[i][:1]
        xs.append(v)
        ys.extend([feats.labels[i]] * len(v))
    return np.concatenate(xs), np.asarray(ys, dtype=np.int64)


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 3)


def _model_config(opts: TrainOptions) -> ModelConfig:
    """The preprocessing the daemon will apply when it serves ``opts.out``."""
    cfg = opts.model.model_copy(update={"path": str(opts.out), "sha256": ""})
    return resolve_model_config(cfg)


def _read_base(path: Path) -> tuple[BaseModel, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TrainError(f"base model {str(path)!r} does not exist", 3) from None
    except OSError as exc:
        raise TrainError(f"cannot read base model {str(path)!r}: {exc}", 3) from exc
    try:
        base = BaseModel(data, f"base model {path.name}")
    except BaseModelError as exc:
        raise TrainError(str(exc), 3) from None
    return base, hashlib.sha256(data).hexdigest()


def _extract(
    dataset: Dataset, extractor: FeatureExtractor, augment: bool, progress: Progress
) -> tuple[_Features, dict[str, int], dict[str, int], list[dict[str, str]], int]:
    feats = _Features([], [], [])
    used = {c: 0 for c in dataset.classes}
    skipped = {c: 0 for c in dataset.classes}
    bad: list[dict[str, str]] = []
    cached = 0
    samples = dataset.samples()
    progress.phase("features", len(samples))
    items: Iterator[ImageFeatures] = extractor.extract(
        [s.path for s in samples], augment, lambda _: progress.advance()
    )
    for sample, item in zip(samples, items, strict=True):
        name = dataset.classes[sample.label]
        if item.values is None:
            skipped[name] += 1
            bad.append({"file": str(item.path), "error": item.error})
            continue
        cached += item.cached
        used[name] += 1
        feats.values.append(item.values)
        feats.labels.append(sample.label)
        feats.paths.append(sample.path)
    return feats, used, skipped, bad, cached


@dataclass(frozen=True)
class Trained:
    report: dict[str, Any]  # what ``--json`` prints
    head: heads.FloatHead  # the float head the int8 one was quantized from
    base: BaseModel
    serving: ModelConfig  # the preprocessing the model was trained (and is served) with


def train(opts: TrainOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Train and write the model; returns the report (also what ``--json`` prints)."""
    return run_training(opts, progress).report


def run_training(opts: TrainOptions, progress: Progress | None = None) -> Trained:
    """Train and write the model."""
    progress = progress or Progress()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if opts.recipe not in RECIPES:
        raise TrainError(f"recipe {opts.recipe!r} is not known; valid: {', '.join(RECIPES)}")
    if not 0.0 < opts.val < 1.0:
        raise TrainError(f"--val {opts.val}: the held-out fraction must be between 0 and 1")
    check_out(opts.out)
    with _timed(timings, "scan"):
        progress.phase("scan")
        try:
            dataset = scan(opts.data_dir)
        except DatasetError as exc:
            raise TrainError(str(exc)) from None
        base_path = opts.base or default_model_path()
        base, base_sha = _read_base(base_path)
        serving = _model_config(opts)
    classes = dataset.classes
    n_classes = len(classes)
    with (
        _timed(timings, "features"),
        FeatureExtractor(base, base_sha, serving, opts.cache_dir) as extractor,
    ):
        feats, used, skipped, bad, cached = _extract(dataset, extractor, opts.augment, progress)
    try:
        check_counts(used, skipped)
    except DatasetError as exc:
        raise TrainError(str(exc)) from None
    c = base.classifier

    def deq(q: npt.NDArray[np.int8]) -> heads.F32:
        return heads.dequantize_features(q, c.feature_scale, c.feature_zero_point)

    with _timed(timings, "fit"):
        progress.phase("fit")
        method, splits = folds(feats.labels, n_classes, opts.val, opts.seed)
        data = []
        for train_idx, val_idx in splits:
            xq, y = _rows(feats, train_idx, opts.augment)
            vq, vy = _rows(feats, val_idx, False)
            data.append((deq(xq), y, xq, vq, vy))
        search = []
        fold_heads: dict[float, list[heads.FloatHead]] = {}
        prev: list[heads.FloatHead | None] = [None] * len(splits)
        stds: list[heads.Standardizer | None] = [None] * len(splits)
        for l2 in heads.L2_GRID:
            hits, loss, fitted = 0, 0.0, []
            for f, (x, y, _, vq, vy) in enumerate(data):
                h, stds[f] = heads.fit(x, y, n_classes, l2, prev[f], stds[f])
                prev[f] = h
                fitted.append(h)
                vx = deq(vq)
                hits += int((h.predict(vx) == vy).sum())
                loss += heads.cross_entropy(h, vx, vy) * len(vy)
            total = sum(len(d[4]) for d in data)
            fold_heads[l2] = fitted
            search.append({"l2": l2, "accuracy": hits / total, "loss": loss / total})
        # best accuracy; among equals the lowest validation loss
        best = max(search, key=lambda r: (r["accuracy"], -r["loss"]))
        l2 = float(best["l2"])
    with _timed(timings, "int8"):
        progress.phase("int8")
        truth: list[int] = []
        pred_int8: list[int] = []
        pred_float: list[int] = []
        for h, (x, _, _, vq, vy) in zip(fold_heads[l2], data, strict=True):
            q = heads.quantize(h, c.feature_scale, c.feature_zero_point, x)
            pred_int8 += IntHead(base, q).predict(vq).tolist()
            pred_float += h.predict(deq(vq)).tolist()
            truth += vy.tolist()
        acc_int8 = float(np.mean(np.asarray(pred_int8) == np.asarray(truth)))
        acc_float = float(np.mean(np.asarray(pred_float) == np.asarray(truth)))
        # the model itself: every image, the chosen L2
        xq_all, y_all = _rows(feats, np.arange(len(feats.labels)), opts.augment)
        x_all = deq(xq_all)
        final, _ = heads.fit(x_all, y_all, n_classes, l2, fold_heads[l2][0])
        quantized = heads.quantize(final, c.feature_scale, c.feature_zero_point, x_all)
        train_int8 = float(
            np.mean(
                IntHead(base, quantized).predict(
                    _rows(feats, np.arange(len(feats.labels)), False)[0]
                )
                == np.asarray(feats.labels)
            )
        )
    with _timed(timings, "write"):
        progress.phase("write")
        size, sha = _write(opts, base, base_path, quantized, classes, serving)
    timings["total"] = round(time.perf_counter() - started, 3)
    progress.done()
    report: dict[str, Any] = {
        "model": str(opts.out),
        "manifest": str(manifest_path(opts.out)),
        "sha256": sha,
        "size_bytes": size,
        "base": {"path": str(base_path), "sha256": base_sha},
        "edged_version": __version__,
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "classes": classes,
        "images": {k: {"used": used[k], "skipped": skipped[k]} for k in classes},
        "skipped_files": bad,
        "recipe": opts.recipe,
        "augment": opts.augment,
        "features": {"computed": len(feats.labels) - cached, "cached": cached},
        "validation": {
            "method": method,
            "images": len(truth),
            "accuracy_int8": round(acc_int8, 4),
            "accuracy_float": round(acc_float, 4),
            "confusion_matrix": heads.confusion(truth, pred_int8, n_classes),
        },
        "l2": l2,
        "l2_search": [
            {"l2": r["l2"], "accuracy": round(r["accuracy"], 4), "loss": round(r["loss"], 4)}
            for r in search
        ],
        "training_accuracy_int8": round(train_int8, 4),
        "preprocessing": {
            "crop": serving.crop,
            "crop_fraction": serving.crop_fraction,
            "resample": serving.resample,
        },
        "timings_s": timings,
    }
    _write_manifest(opts.out, report)
    if size > MAX_BYTES:
        log.warning("%s is %d bytes, larger than %d", opts.out, size, MAX_BYTES)
    return Trained(report, final, base, serving)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot write {str(path)!r}: {exc}") from exc


def _write(
    opts: TrainOptions,
    base: BaseModel,
    base_path: Path,
    head: QuantizedHead,
    classes: list[str],
    serving: ModelConfig,
) -> tuple[int, str]:
    mean, std = base.normalization or (serving.mean or 127.5, serving.std or 127.5)
    listed = ", ".join(classes)
    meta = ClassifierMetadata(
        name=f"{opts.out.stem} (int8)",
        description=(
            f"Image classifier ({len(classes)} classes: {listed}), trained by edged train "
            f"{__version__} on the features of {base_path.name}."
        ),
        input_description=(
            f"Input image to be classified: RGB, normalized as (pixel - {mean:g}) / {std:g}."
        ),
        output_description=f"Probabilities of the {len(classes)} classes (softmax).",
        mean=mean,
        std=std,
        input_range=(-128.0, 127.0),
        author="edged train",
        license="",
    )
    data = base.with_head(head, label_lines(classes), classifier_metadata(meta))
    _atomic_write(opts.out, data)
    return len(data), hashlib.sha256(data).hexdigest()


MANIFEST_KEYS = (
    "sha256",
    "size_bytes",
    "base",
    "edged_version",
    "date",
    "classes",
    "images",
    "augment",
    "validation",
    "l2",
    "preprocessing",
)


def _write_manifest(out: Path, report: dict[str, Any]) -> None:
    manifest = {"model": out.name} | {k: report[k] for k in MANIFEST_KEYS}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(manifest_path(out), text.encode("utf-8"))
