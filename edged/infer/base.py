"""The inference backend interface, its registry, and the TFLite interpreter they share."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from edged.config import ModelConfig
from edged.infer.model import ModelError, ModelFile
from edged.infer.runtime import get_runtime, native_log_to_debug
from edged.tensor import InputSpec
from edged.wire import HEALTH_FIELDS as H

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputSpec:
    classes: int
    dtype: np.dtype[np.generic]
    scale: float
    zero_point: int


class Inference(NamedTuple):
    """One frame's raw output, how to read it, what ran it, and its invoke time."""

    raw: npt.NDArray[np.generic]
    spec: OutputSpec
    backend: str
    ms: float


def check_spec(backend: InferenceBackend, spec: InputSpec | None) -> None:
    if spec is not None and spec != backend.input_spec:
        raise ValueError(
            f"frame prepared for input {spec.width}x{spec.height} {spec.dtype}, "
            f"{backend.name} wants {backend.input_spec.width}x{backend.input_spec.height} "
            f"{backend.input_spec.dtype}"
        )


class InferenceBackend(ABC):
    """One model loaded on one device.  ``invoke`` takes a preprocessed 1xHxWxC tensor and
    returns the raw output vector (a copy).

    ``submit`` / ``collect`` is the pipelined form: up to ``depth`` frames may be submitted
    before the oldest is collected, results come back in submission order.  In-process
    backends have depth 1 and run the frame at ``collect``; a worker process has depth 2, so
    it starts the next frame while this process reads the previous result.
    """

    type_key: ClassVar[str]
    available: ClassVar[bool] = True

    input_spec: InputSpec
    output_spec: OutputSpec

    def __init__(self, model: ModelFile, cfg: ModelConfig) -> None:
        self.model = model
        self.cfg = cfg
        self._submitted: deque[npt.NDArray[np.generic]] = deque()

    @property
    def depth(self) -> int:
        """How many frames may be in flight at once."""
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._submitted)

    def submit(self, tensor: npt.NDArray[np.generic], spec: InputSpec | None = None) -> None:
        """Start one frame; ``spec``, when given, is the input spec it was prepared for."""
        check_spec(self, spec)
        if self.in_flight >= self.depth:
            raise RuntimeError(f"{self.name}: {self.in_flight} frames in flight already")
        self._submitted.append(tensor)

    def collect(self) -> Inference:
        """The oldest submitted frame's result."""
        tensor = self._submitted.popleft()
        t0 = time.perf_counter()
        raw = self.invoke(tensor)
        return Inference(raw, self.output_spec, self.name, (time.perf_counter() - t0) * 1000.0)

    @property
    def name(self) -> str:
        return self.type_key

    @property
    def active_model(self) -> ModelFile:
        """The model running now (a supervisor's CPU twin while its worker is down)."""
        return self.model

    @abstractmethod
    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]: ...

    def stream(self, tensors: Iterable[npt.NDArray[np.generic]]) -> Iterator[Inference]:
        """Results for ``tensors``, in order, keeping up to ``depth`` frames in flight."""
        for tensor in tensors:
            self.submit(tensor)
            while self.in_flight >= self.depth:
                yield self.collect()
        while self.in_flight:
            yield self.collect()

    def infer(self, tensor: npt.NDArray[np.generic]) -> Inference:
        """One frame, synchronously (nothing else may be in flight)."""
        if self.in_flight:
            raise RuntimeError(f"{self.name}: infer() while {self.in_flight} frames are in flight")
        self.submit(tensor)
        return self.collect()

    def status(self) -> dict[str, object]:
        """Backend state for the health topic."""
        return {H.backend: self.name, H.fallback_reason: None, H.fallbacks: 0, H.worker_restarts: 0}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device; idempotent."""

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


B = TypeVar("B", bound=type[InferenceBackend])
BACKENDS: dict[str, type[InferenceBackend]] = {}


def register(cls: B) -> B:
    BACKENDS[cls.type_key] = cls
    return cls


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


class TFLiteBackend(InferenceBackend):
    """A backend built on a TFLite interpreter, with optional delegates."""

    def __init__(
        self,
        model: ModelFile,
        cfg: ModelConfig,
        delegates: list[Any] | None = None,
    ) -> None:
        super().__init__(model, cfg)
        runtime = get_runtime()
        self.runtime = runtime.name
        t0 = time.perf_counter()
        try:
            # Delegates prepare the graph here already, so an Edge TPU model that meets a
            # delegate without its custom op fails in the constructor, not at allocation.
            with native_log_to_debug():
                self._interp = runtime.Interpreter(
                    model_path=str(model.path),
                    num_threads=cfg.num_threads,
                    experimental_delegates=delegates or None,
                )
                self._interp.allocate_tensors()
        except ValueError as exc:
            raise ModelError(f"cannot load model {str(model.path)!r}: {exc}") from exc
        except RuntimeError as exc:
            if model.is_edgetpu and not delegates:
                raise ModelError(
                    f"{model.name} is compiled for the Edge TPU (custom op edgetpu-custom-op) "
                    "and cannot run on the CPU; give its CPU twin (model.cpu_path)"
                ) from exc
            raise ModelError(f"cannot prepare model {model.name}: {exc}") from exc
        self.load_ms = (time.perf_counter() - t0) * 1000.0
        self.input_spec, self.output_spec = self._check_io(cfg)
        self._in_index = self._interp.get_input_details()[0]["index"]
        self._out_index = self._interp.get_output_details()[0]["index"]
        self._closed = False

    def _check_io(self, cfg: ModelConfig) -> tuple[InputSpec, OutputSpec]:
        ins = self._interp.get_input_details()
        outs = self._interp.get_output_details()
        name = self.model.name
        if len(ins) != 1:
            raise ModelError(f"{name} has {len(ins)} inputs; an image classifier has one")
        shape = [int(d) for d in ins[0]["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ModelError(
                f"{name}: input shape {shape}, expected [1, height, width, 3] (NHWC RGB)"
            )
        in_dtype = np.dtype(ins[0]["dtype"])
        if in_dtype not in (np.uint8, np.int8, np.float32):
            raise ModelError(f"{name}: input type {in_dtype}, expected uint8, int8 or float32")
        if len(outs) != 1:
            raise ModelError(
                f"{name} has {len(outs)} outputs ({', '.join(o['name'] for o in outs)}); "
                "edged needs an image classifier with one output of shape [1, classes] "
                "(is this a detection model?)"
            )
        oshape = [int(d) for d in outs[0]["shape"]]
        classes = oshape[-1] if oshape else 0
        if classes < 2 or int(np.prod(oshape)) != classes:
            raise ModelError(f"{name}: output shape {oshape} is not a class vector [1, classes]")
        out_dtype = np.dtype(outs[0]["dtype"])
        if out_dtype not in (np.uint8, np.int8, np.float32, np.float16):
            raise ModelError(f"{name}: output type {out_dtype} is not a score vector")
        scale, zp = _quant(ins[0])
        mean, std = cfg.mean, cfg.std
        if (mean is None or std is None) and self.model.normalization is not None:
            mean, std = self.model.normalization
        spec = InputSpec(
            height=shape[1],
            width=shape[2],
            dtype=in_dtype,
            scale=scale,
            zero_point=zp,
            mean=mean,
            std=std,
        )
        oscale, ozp = _quant(outs[0])
        return spec, OutputSpec(classes, out_dtype, oscale, ozp)

    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        self._interp.set_tensor(self._in_index, tensor)
        self._interp.invoke()
        out: npt.NDArray[np.generic] = self._interp.get_tensor(self._out_index)
        return out.reshape(-1)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            del self._interp


BackendFactory = Callable[[ModelFile, ModelConfig], InferenceBackend]
