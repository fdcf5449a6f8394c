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
import sys
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
from edged.train import deep
from edged.train import head as heads
from edged.train.convert import add_metadata
from edged.train.dataset import Dataset, DatasetError, check_counts, label_lines, scan
from edged.train.deep import DeepParams
from edged.train.features import FeatureExtractor, ImageFeatures, default_cache_dir
from edged.train.metadata import ClassifierMetadata, classifier_metadata
from edged.train.resources import (
    TRAIN_NICE,
    check_memory,
    lower_priority,
    read_mem_available,
    training_threads,
)
from edged.train.tflite import BaseModel, BaseModelError, QuantizedHead

log = logging.getLogger(__name__)

KFOLD_BELOW = 20  # k-fold cross-validation when a class has fewer images than this
KFOLD = 5
MAX_BYTES = 6_000_000
# how the model is trained: "head" fits a new last layer on the base model's frozen features;
# "deep" fine-tunes the last blocks too (PyTorch, the `learn` extra); "auto" runs deep when
# its packages are installed and the memory is there, else head
RECIPES = ("head", "deep", "auto")


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
    deep: DeepParams = field(default_factory=DeepParams)  # the deep recipe's settings
    threads: int | None = None  # deep: PyTorch threads (default: one fewer than the cores)
    nice: int = TRAIN_NICE  # the niceness training runs at (train() raises its own to it)


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


@dataclass(frozen=True)
class _Start:
    """What every recipe starts from: the checked options, the photos and the base model."""

    dataset: Dataset
    base: BaseModel
    base_path: Path
    base_sha: str
    serving: ModelConfig
    recipe: str  # the recipe that runs (never "auto")
    why: str  # why "auto" chose it ("" when asked for by name)


def train(opts: TrainOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Train and write the model; returns the report (also what ``--json`` prints).
    ``report["recipe"]`` names the recipe that ran (``auto`` resolves to head or deep)."""
    progress = progress or Progress()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    start = _start(opts, progress, timings)
    # below the daemon, which keeps classifying: before any worker thread exists
    lower_priority(opts.nice)
    if start.recipe == "deep":
        return _run_deep(opts, start, progress, timings, started)
    return _run_head(opts, start, progress, timings, started).report


def run_training(opts: TrainOptions, progress: Progress | None = None) -> Trained:
    """Fit a new last layer (the head recipe) and write the model."""
    progress = progress or Progress()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if opts.recipe != "head":
        raise TrainError(f"run_training fits the head recipe, not {opts.recipe!r}: use train()")
    return _run_head(opts, _start(opts, progress, timings), progress, timings, started)


def choose_recipe(opts: TrainOptions, photos: int, available: int | None) -> tuple[str, str]:
    """The recipe that runs, and for ``auto`` why.  ``deep`` asked for by name and
    impossible raises :class:`TrainError` saying why and what to do."""
    if opts.recipe == "head":
        return "head", ""
    problems = []
    absent = deep.missing()
    if absent:
        problems.append(f"the deep recipe needs {', '.join(absent)}: {deep.install_hint()}")
    if opts.base is not None and opts.base.resolve() != default_model_path().resolve():
        problems.append(
            f"the deep recipe fine-tunes the bundled EfficientNet-Lite0, not --base "
            f"{str(opts.base)!r}"
        )
    train_photos = photos - round(photos * opts.val)
    memory = check_memory(opts.deep.memory_needed(train_photos), available)
    if not memory.ok:
        problems.append(memory.message("deep"))
    if not problems:
        why = "its packages are installed and the memory is there"
        return "deep", why if opts.recipe == "auto" else ""
    if opts.recipe == "deep":
        raise TrainError("; ".join(problems))
    return "head", "; ".join(problems)


def _start(opts: TrainOptions, progress: Progress, timings: dict[str, float]) -> _Start:
    if opts.recipe not in RECIPES:
        raise TrainError(f"recipe {opts.recipe!r} is not known; valid: {', '.join(RECIPES)}")
    if not 0.0 < opts.val < 1.0:
        raise TrainError(f"--val {opts.val}: the held-out fraction must be between 0 and 1")
    if opts.threads is not None and opts.threads < 1:
        raise TrainError(f"threads {opts.threads}: give 1 or more")
    if not 0 <= opts.nice <= 19:
        raise TrainError(f"nice {opts.nice}: give a niceness from 0 to 19")
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
    recipe, why = choose_recipe(opts, len(dataset.samples()), read_mem_available())
    if why:
        log.info("recipe %s: %s", recipe, why)
    return _Start(dataset, base, base_path, base_sha, serving, recipe, why)


def _run_head(
    opts: TrainOptions,
    start: _Start,
    progress: Progress,
    timings: dict[str, float],
    started: float,
) -> Trained:
    dataset, base, base_path, base_sha, serving = (
        start.dataset,
        start.base,
        start.base_path,
        start.base_sha,
        start.serving,
    )
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
        "recipe": "head",
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "recipe_asked": opts.recipe,
        "recipe_reason": start.why,
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


def _metadata(
    out: Path, classes: list[str], how: str, mean: float, std: float
) -> ClassifierMetadata:
    """The written model's metadata: its classes, how it was trained, its normalization."""
    return ClassifierMetadata(
        name=f"{out.stem} (int8)",
        description=f"Image classifier ({len(classes)} classes: {', '.join(classes)}), {how}.",
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


def _write(
    opts: TrainOptions,
    base: BaseModel,
    base_path: Path,
    head: QuantizedHead,
    classes: list[str],
    serving: ModelConfig,
) -> tuple[int, str]:
    mean, std = base.normalization or (serving.mean or 127.5, serving.std or 127.5)
    how = f"trained by edged train {__version__} on the features of {base_path.name}"
    meta = _metadata(opts.out, classes, how, mean, std)
    data = base.with_head(head, label_lines(classes), classifier_metadata(meta))
    _atomic_write(opts.out, data)
    return len(data), hashlib.sha256(data).hexdigest()


MANIFEST_KEYS = (
    "sha256",
    "recipe",
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
    if "deep" in report:
        manifest["deep"] = report["deep"]
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(manifest_path(out), text.encode("utf-8"))


def holdout(
    labels: list[int], classes: int, val: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """One stratified split: ``val`` of each class held out (at least one photo, and at
    least one left to train on)."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in range(classes):
        members = rng.permutation(np.flatnonzero(y == c))
        k = min(max(1, round(len(members) * val)), len(members) - 1)
        held.append(members[:k])
    val_idx = np.sort(np.concatenate(held)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx).astype(np.int64)
    return train_idx, val_idx


class _DeepProgress(deep.Progress):
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def phase(self, name: str, total: int | None = None) -> None:
        self.progress.phase(name, total)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(n)


def _score_model(
    data: bytes, paths: list[Path], serving: ModelConfig, threads: int
) -> tuple[list[int | None], list[tuple[Path, str]]]:
    """The int8 model's top class for each photo, through the daemon's preprocessing and
    the runtime (None for an unreadable photo); and an error for each of those."""
    from edged.preprocess import ImageError, prepare
    from edged.tensor import InputSpec

    interp = get_runtime().Interpreter(model_content=data, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    _, height, width, _ = (int(d) for d in inp["shape"])
    spec = InputSpec(
        height,
        width,
        np.dtype(inp["dtype"]),
        scale=scale,
        zero_point=zero_point,
        mean=serving.mean or 127.0,
        std=serving.std or 128.0,
    )
    preds: list[int | None] = []
    errors: list[tuple[Path, str]] = []
    for path in paths:
        try:
            x = prepare(path, spec, serving.crop, serving.crop_fraction, serving.resample)
        except (ImageError, OSError) as exc:
            preds.append(None)
            errors.append((path, str(exc)))
            continue
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        preds.append(int(np.argmax(np.asarray(interp.get_tensor(out["index"])).reshape(-1))))
    return preds, errors


def _run_deep(
    opts: TrainOptions,
    start: _Start,
    progress: Progress,
    timings: dict[str, float],
    started: float,
) -> dict[str, Any]:
    import resource

    dataset, serving = start.dataset, start.serving
    classes = dataset.classes
    n_classes = len(classes)
    samples = dataset.samples()
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        threads = opts.threads or training_threads()
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    train_idx, val_idx = holdout([s.label for s in samples], n_classes, opts.val, opts.seed)
    photos = [deep.Photo(samples[i].path, samples[i].label) for i in train_idx]
    try:
        # the network and converter packages print to stdout: keep it for the report
        with contextlib.redirect_stdout(sys.stderr):
            result = deep.train_deep(
                photos, n_classes, serving, opts.deep, threads, opts.seed, _DeepProgress(progress)
            )
    except MemoryError:
        raise TrainError(
            "out of memory while training the deep recipe: train on fewer photos or use "
            "--recipe head"
        ) from None
    timings.update(result.timings)
    mean, std = 127.0, 128.0
    how = (
        f"fine-tuned by edged train {__version__} (recipe deep: the last {opts.deep.blocks} "
        "blocks of EfficientNet-Lite0, its conv head and a new classifier)"
    )
    meta = _metadata(opts.out, classes, how, mean, std)
    data = add_metadata(result.model, classifier_metadata(meta), label_lines(classes))

    with _timed(timings, "int8"):
        progress.phase("int8", len(val_idx))
        val_paths = [samples[i].path for i in val_idx]
        preds, errors = _score_model(data, val_paths, serving, threads)
    used = {c: 0 for c in classes}
    skipped = {c: 0 for c in classes}
    bad = [{"file": str(p.path), "error": e} for p, e in result.skipped]
    for p in result.used:
        used[classes[p.label]] += 1
    for p, _ in result.skipped:
        skipped[classes[p.label]] += 1
    truth: list[int] = []
    pred_int8: list[int] = []
    for i, pred in zip(val_idx, preds, strict=True):
        name = classes[samples[i].label]
        if pred is None:
            skipped[name] += 1
            continue
        used[name] += 1
        truth.append(samples[i].label)
        pred_int8.append(pred)
    bad += [{"file": str(path), "error": error} for path, error in errors]
    try:
        check_counts(used, skipped)
    except DatasetError as exc:
        raise TrainError(str(exc)) from None
    acc_int8 = float(np.mean(np.asarray(pred_int8) == np.asarray(truth))) if truth else 0.0

    with _timed(timings, "write"):
        progress.phase("write")
        _atomic_write(opts.out, data)
        size, sha = len(data), hashlib.sha256(data).hexdigest()
    timings["total"] = round(time.perf_counter() - started, 3)
    progress.done()
    held = round(opts.val * 100)
    report: dict[str, Any] = {
        "model": str(opts.out),
        "manifest": str(manifest_path(opts.out)),
        "sha256": sha,
        "size_bytes": size,
        "base": {"path": str(start.base_path), "sha256": start.base_sha},
        "edged_version": __version__,
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "classes": classes,
        "images": {k: {"used": used[k], "skipped": skipped[k]} for k in classes},
        "skipped_files": bad,
        "recipe": "deep",
        "nice": niceness,
        "recipe_asked": opts.recipe,
        "recipe_reason": start.why,
        "augment": True,
        "features": {"computed": len(result.used), "cached": 0},
        "validation": {
            "method": (
                f"stratified split: {held}% of each class held out; the model written is the "
                "one scored, trained on the other photos"
            ),
            "images": len(truth),
            "accuracy_int8": round(acc_int8, 4),
            "accuracy_float": None,
            "confusion_matrix": heads.confusion(truth, pred_int8, n_classes),
        },
        "l2": None,
        "l2_search": [],
        "training_accuracy_float": round(result.train_accuracy_float, 4),
        "deep": opts.deep.describe()
        | {
            "threads": threads,
            "nice": niceness,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        },
        "preprocessing": {
            "crop": serving.crop,
            "crop_fraction": serving.crop_fraction,
            "resample": serving.resample,
        },
        "timings_s": timings,
    }
    _write_manifest(opts.out, report)
    return report
