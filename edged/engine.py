"""An :class:`Engine` stands above the stages: a loaded inference backend plus the
preprocessing and post-processing that go with its model, and the frame size it wants from
capture.  The daemon, ``edged classify``, ``edged eval`` and ``edged bench`` all use it, so
they share one code path from pixels to classes.  ``infer/`` holds the backends only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from edged.capture.base import Framing
from edged.classify import Classification, Classifier, Labels
from edged.config import ClassifyConfig, Config, ModelConfig
from edged.infer import cpu as _cpu  # noqa: F401  (registers the backend)
from edged.infer import edgetpu as _edgetpu  # noqa: F401
from edged.infer.base import BACKENDS, Inference, InferenceBackend, OutputSpec
from edged.infer.bundled import manifest_entry, profile_model
from edged.infer.model import ModelError, ModelFile, cpu_twin, inspect_model, read_labels
from edged.infer.supervisor import Supervisor, Timings
from edged.infer.worker import WorkerBackend, WorkerFault
from edged.preprocess import ImageSource, decode_size, prepare, to_model_input
from edged.tensor import InputSpec, ModelInput, SensorOutput
from edged.wire import HEALTH_FIELDS

log = logging.getLogger(__name__)


def cpu_model(cfg: Config) -> ModelConfig:
    """The model the CPU runs: an AI camera's ``cpu_model`` (its TFLite twin) when set."""
    twin = getattr(cfg.capture, "cpu_model", "")
    if not twin:
        return cfg.model
    return cfg.model.model_copy(update={"path": twin, "sha256": "", "cpu_path": ""})


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """Fill in the profile's model and its manifest's preprocessing where the config is
    silent.  A model chosen by profile must match the manifest's sha256."""
    updates: dict[str, object] = {}
    if cfg.path:
        entry = manifest_entry(Path(cfg.path))
    else:
        path, entry = profile_model(cfg.profile, cfg.models_dir)
        updates["path"] = str(path)
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


class Outcome(NamedTuple):
    """One frame's classification, its invoke milliseconds, and the backend that ran it."""

    classification: Classification
    ms: float
    backend: str


@dataclass(frozen=True)
class Work:
    """A prepared frame on its way from capture to inference (with the frame itself, to
    prepare it again for a model swapped in meanwhile)."""

    number: int
    source: str
    input: ModelInput | None  # None when the camera's sensor classified the frame
    region: str | None = None  # the capture.regions name; None = the whole frame
    image: npt.NDArray[np.uint8] | None = None
    sensor: SensorOutput | None = None
    ts: float = 0.0  # time.time() when the source delivered the frame (0: unknown)


@dataclass(frozen=True)
class Result:
    """A classified frame on its way from inference to publishing."""

    number: int
    source: str
    outcome: Outcome
    region: str | None = None
    model: str = ""  # file name of the model that classified it


@dataclass
class Engine:
    backend: InferenceBackend
    classifier: Classifier
    cfg: ModelConfig
    _sensor_cache: tuple[object, Classifier] | None = field(default=None, repr=False)

    @property
    def model(self) -> ModelFile:
        """The model now running (the CPU twin while an Edge TPU model is on the CPU)."""
        return self.backend.active_model

    @property
    def fallback_reason(self) -> str | None:
        reason = self.backend.status().get(HEALTH_FIELDS.fallback_reason)
        return str(reason) if reason else None

    @property
    def labels(self) -> Labels:
        return self.classifier.labels

    def capture_size(self) -> tuple[int, int]:
        """The (width, height) capture should deliver, and image files may be decoded down
        to: the model input, enlarged by the center crop so that cropping does not upscale."""
        return decode_size(self.backend.input_spec, self.cfg.crop, self.cfg.crop_fraction)

    def framing(self) -> Framing:
        """The model's input size and center crop, for a source that frames on the device
        (its frames then arrive at the input size and are fed as they are)."""
        spec = self.backend.input_spec
        fraction = self.cfg.crop_fraction if self.cfg.crop == "center" else 1.0
        return Framing((spec.width, spec.height), fraction)

    def prepare(self, frame: npt.NDArray[np.uint8]) -> ModelInput:
        """``frame`` as the tensor the backend wants now, with the spec it was made for."""
        spec: InputSpec = self.backend.input_spec
        tensor = to_model_input(
            frame,
            spec,
            crop=self.cfg.crop,
            crop_fraction=self.cfg.crop_fraction,
            resample=self.cfg.resample,
        )
        return ModelInput(tensor, spec)

    def preprocess(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
        return self.prepare(frame).tensor

    def load(self, source: ImageSource) -> npt.NDArray[np.generic]:
        """An image file (path or bytes) as this model's input, exactly as the daemon
        prepares it (:func:`edged.preprocess.prepare`)."""
        return prepare(
            source,
            self.backend.input_spec,
            crop=self.cfg.crop,
            crop_fraction=self.cfg.crop_fraction,
            resample=self.cfg.resample,
        )

    def infer(self, tensor: npt.NDArray[np.generic]) -> tuple[Classification, float]:
        result, ms, _ = self.infer_with_backend(tensor)
        return result, ms

    def infer_with_backend(self, tensor: npt.NDArray[np.generic]) -> Outcome:
        """Classification, milliseconds, and the backend that ran it."""
        return self.classify(self.backend.infer(tensor))

    @property
    def depth(self) -> int:
        """How many frames to keep in flight (see :class:`InferenceBackend`)."""
        return self.backend.depth

    def submit(self, tensor: npt.NDArray[np.generic] | ModelInput) -> None:
        if isinstance(tensor, ModelInput):
            self.backend.submit(tensor.tensor, tensor.spec)
        else:
            self.backend.submit(tensor)

    def collect(self) -> Outcome:
        """The oldest submitted frame: classification, invoke milliseconds, backend."""
        return self.classify(self.backend.collect())

    def collect_raw(self) -> Inference:
        """The oldest submitted frame's raw output, for :meth:`classify` (in any thread)."""
        return self.backend.collect()

    def classify(
        self,
        result: Inference,
        sensor: SensorOutput | None = None,
        classifier: Classifier | None = None,
    ) -> Outcome:
        """A raw output as a classification (by ``classifier``, a camera's own, or the
        engine's); touches no device, so the engine may since have been closed.
        ``sensor``: the output came from a camera's sensor, with that network's labels
        (see :meth:`sensor_inference`)."""
        raw, out, name, ms = result
        if sensor is not None:
            classifier = self._sensor_classifier(sensor)
        c = classifier or self.classifier
        return Outcome(c(raw, out.scale, out.zero_point), ms, name)

    def sensor_inference(self, sensor: SensorOutput) -> Inference:
        """A sensor's class vector as a backend's raw output (its DNN time as the invoke)."""
        spec = OutputSpec(sensor.scores.size, np.dtype(np.float32), 0.0, 0)
        return Inference(sensor.scores, spec, sensor.backend, sensor.ms)

    def _sensor_classifier(self, sensor: SensorOutput) -> Classifier:
        """The same post-processing (background rule, top-k, ambiguity, allow/deny) over
        the network's labels; the CPU model's when the network has none and the class
        counts match.  Cached until the labels or the classify settings change."""
        key = (sensor.labels, sensor.scores.size, self.classifier.cfg)
        cached = self._sensor_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        names: tuple[str, ...] | None = sensor.labels
        source = sensor.labels_source
        if names is None and abs(len(self.labels) - sensor.scores.size) <= 1:
            names = self.labels.names
            if self.labels.background is not None and len(names) == sensor.scores.size + 1:
                names = names[1:]
        try:
            labels = Labels.build(names, sensor.scores.size, source, sensor.model)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        classifier = Classifier(labels, self.classifier.cfg)
        self._sensor_cache = (key, classifier)
        return classifier

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


def _cpu_model(model: ModelFile, cfg: ModelConfig) -> ModelFile | None:
    """The model the CPU runs: ``model.cpu_path``, the model itself when it has no Edge TPU
    ops, or its twin without ``_edgetpu`` in the name."""
    if cfg.cpu_path:
        twin = inspect_model(cfg.cpu_path)
    elif not model.is_edgetpu:
        return model
    else:
        path = cpu_twin(model)
        if path is None or not path.exists():
            return None
        twin = inspect_model(path)
    if twin.is_edgetpu:
        raise ModelError(f"CPU twin {twin.name} is itself compiled for the Edge TPU")
    return twin


def _cpu_backend(
    model: ModelFile, cfg: ModelConfig, timings: Timings | None = None
) -> InferenceBackend:
    """The CPU backend: in-process, or with ``model.isolate_cpu`` a worker process under a
    :class:`Supervisor` whose fallback (while the worker restarts) is the same model
    in-process."""
    cpu = BACKENDS["cpu"](model, cfg)
    if not cfg.isolate_cpu:
        return cpu
    try:
        worker = WorkerBackend(model, cfg, "cpu")
    except WorkerFault as exc:
        log.warning("CPU worker unavailable (%s): inference runs in-process", exc.reason)
        return Supervisor(
            model, cfg, worker=None, cpu=cpu, reason=exc.reason, kind="cpu", timings=timings
        )
    return Supervisor(model, cfg, worker=worker, cpu=cpu, kind="cpu", timings=timings)


def open_backend(cfg: ModelConfig, timings: Timings | None = None) -> InferenceBackend:
    """Load the model where ``model.backend`` says.

    ``auto`` puts an Edge TPU model (told by its custom op, not its name) on the Edge TPU
    when the delegate loads, else its CPU twin with one warning; a CPU model runs on the CPU.
    ``edgetpu`` must start on the Edge TPU (else ModelError, exit 3).  ``cpu`` never tries.
    """
    model = inspect_model(cfg.path, cfg.sha256)
    want_tpu = cfg.backend == "edgetpu" or (cfg.backend == "auto" and model.is_edgetpu)
    cpu_file = _cpu_model(model, cfg)
    if not want_tpu:
        if cpu_file is None:
            raise ModelError(
                f"{model.name} is an Edge TPU model and backend is 'cpu', but its CPU twin "
                f"{str(cpu_twin(model))!r} does not exist (set model.cpu_path)"
            )
        return _cpu_backend(cpu_file, cfg, timings)
    # the fallback runs in-process: it must work when the worker cannot
    cpu = BACKENDS["cpu"](cpu_file, cfg) if cpu_file is not None else None
    try:
        tpu = WorkerBackend(model, cfg, "edgetpu")
    except ModelError:
        if cpu is not None:
            cpu.close()
        raise
    except WorkerFault as exc:
        if cfg.backend == "edgetpu" or cpu is None:
            if cpu is not None:
                cpu.close()
            missing = (
                ""
                if cpu is not None
                else (
                    f" and there is no CPU twin ({str(cpu_twin(model))!r} does not exist; "
                    "set model.cpu_path)"
                )
            )
            raise ModelError(f"the Edge TPU backend cannot start: {exc.reason}{missing}") from exc
        log.warning("Edge TPU unavailable (%s): running %s on the CPU", exc.reason, cpu.model.name)
        return Supervisor(model, cfg, worker=None, cpu=cpu, reason=exc.reason, timings=timings)
    if cpu is None:
        log.warning("%s has no CPU twin: no fallback if the Edge TPU fails", model.name)
    elif cpu.output_spec.classes != tpu.output_spec.classes:
        tpu.close()
        cpu.close()
        raise ModelError(
            f"CPU twin {cpu.model.name} outputs {cpu.output_spec.classes} classes, "
            f"{model.name} {tpu.output_spec.classes}"
        )
    return Supervisor(model, cfg, worker=tpu, cpu=cpu, timings=timings)


def open_engine(
    cfg: ModelConfig, classify: ClassifyConfig, timings: Timings | None = None
) -> Engine:
    """The engine for ``cfg``; ``timings`` pace a supervised worker (defaults otherwise)."""
    cfg = resolve_model_config(cfg)
    backend = open_backend(cfg, timings)
    try:
        labels = _labels_for(backend.model, cfg, backend.output_spec.classes)
    except ModelError:
        backend.close()
        raise
    return Engine(backend, Classifier(labels, classify), cfg)


def check_model(cfg: ModelConfig) -> str:
    """What :func:`open_engine` would refuse, found without starting anything: the file is
    a readable TFLite model with the configured sha256, it has one class-vector output,
    and the labels count its classes.  An Edge TPU model is loaded through its CPU twin
    (nothing here touches a device); without a twin only the file itself is checked.
    Raises ModelError; returns a short description of the model."""
    cfg = resolve_model_config(cfg)
    model = inspect_model(cfg.path, cfg.sha256)
    cpu_file = _cpu_model(model, cfg)
    if cpu_file is None:
        return f"{model.name} (Edge TPU; no CPU twin to check its output)"
    backend = BACKENDS["cpu"](cpu_file, cfg.model_copy(update={"num_threads": 1}))
    try:
        classes = backend.output_spec.classes
        labels = _labels_for(model, cfg, classes)
    finally:
        backend.close()
    return f"{model.name}, {classes} classes, {labels.source}"
