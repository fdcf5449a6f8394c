"""An :class:`Engine` is a loaded backend plus the preprocessing and post-processing that go
with its model.  The daemon, ``edged classify``, ``edged eval`` and ``edged bench`` all use it,
so they share one code path from pixels to classes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edged.classify import Classification, Classifier, Labels
from edged.config import ClassifyConfig, ModelConfig
from edged.infer import cpu as _cpu  # noqa: F401  (registers the backend)
from edged.infer.base import BACKENDS, InferenceBackend
from edged.infer.bundled import default_model_path, manifest_entry
from edged.infer.model import ModelError, ModelFile, cpu_twin, inspect_model, read_labels
from edged.preprocess import to_model_input

log = logging.getLogger(__name__)


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """Fill in the bundled model and its manifest's preprocessing where the config is silent."""
    updates: dict[str, object] = {}
    path = Path(cfg.path) if cfg.path else default_model_path()
    if not cfg.path:
        updates["path"] = str(path)
    entry = manifest_entry(path)
    if entry:
        given = cfg.model_fields_set
        norm = entry.get("normalization", {})
        crop = entry.get("crop", {})
        if "mean" not in given and "mean" in norm:
            updates["mean"] = float(norm["mean"])
        if "std" not in given and "std" in norm:
            updates["std"] = float(norm["std"])
        if "crop" not in given and "mode" in crop:
            updates["crop"] = crop["mode"]
        if "crop_fraction" not in given and "fraction" in crop:
            updates["crop_fraction"] = float(crop["fraction"])
        if "sha256" not in given and not cfg.path and entry.get("sha256"):
            updates["sha256"] = entry["sha256"]
    return cfg.model_copy(update=updates) if updates else cfg


@dataclass
class Engine:
    backend: InferenceBackend
    classifier: Classifier
    cfg: ModelConfig
    fallback_reason: str | None = None
    model: ModelFile = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.backend.model

    @property
    def labels(self) -> Labels:
        return self.classifier.labels

    def preprocess(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
        return to_model_input(
            frame,
            self.backend.input_spec,
            crop=self.cfg.crop,
            crop_fraction=self.cfg.crop_fraction,
            resample=self.cfg.resample,
        )

    def infer(self, tensor: npt.NDArray[np.generic]) -> tuple[Classification, float]:
        t0 = time.perf_counter()
        raw = self.backend.invoke(tensor)
        ms = (time.perf_counter() - t0) * 1000.0
        out = self.backend.output_spec
        return self.classifier(raw, out.scale, out.zero_point), ms

    def classify_frame(self, frame: npt.NDArray[np.uint8]) -> tuple[Classification, float]:
        return self.infer(self.preprocess(frame))

    def close(self) -> None:
        self.backend.close()


def _labels_for(model: ModelFile, cfg: ModelConfig, classes: int) -> Labels:
    if cfg.labels:
        names: list[str] | tuple[str, ...] | None = read_labels(cfg.labels)
        source = f"labels file {cfg.labels!r}"
    else:
        names = model.embedded_labels
        source = f"labels embedded in {model.name}"
    try:
        return Labels.build(names, classes, source, model.name)
    except ValueError as exc:
        raise ModelError(str(exc)) from None


def open_backend(cfg: ModelConfig) -> tuple[InferenceBackend, str | None]:
    """Load the model on the configured backend.  Returns the backend and, when it is not
    the one asked for, the reason."""
    model = inspect_model(cfg.path, cfg.sha256)
    if cfg.backend == "cpu" or "edgetpu" not in BACKENDS:
        if model.is_edgetpu:
            twin = cpu_twin(model, cfg.cpu_path)
            if twin is None or not twin.exists():
                raise ModelError(
                    f"{model.name} is an Edge TPU model and no Edge TPU backend is in use; its "
                    f"CPU twin {str(twin) if twin else '(model.cpu_path)'!r} does not exist"
                )
            reason = "Edge TPU backend not available" if cfg.backend != "cpu" else None
            if reason:
                log.warning("%s: running the CPU twin %s", reason, twin.name)
            return BACKENDS["cpu"](inspect_model(twin), cfg), reason
        return BACKENDS["cpu"](model, cfg), None
    raise ModelError(f"backend {cfg.backend!r} is not available")


def open_engine(cfg: ModelConfig, classify: ClassifyConfig) -> Engine:
    cfg = resolve_model_config(cfg)
    backend, reason = open_backend(cfg)
    try:
        labels = _labels_for(backend.model, cfg, backend.output_spec.classes)
    except ModelError:
        backend.close()
        raise
    return Engine(backend, Classifier(labels, classify), cfg, reason)
