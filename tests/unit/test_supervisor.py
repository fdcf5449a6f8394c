"""The supervisor's routing, with stand-in backends (no worker process): a frame runs only
on a backend whose input spec it was prepared for, and its timings are parameters."""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edged.config import ModelConfig
from edged.infer.base import Inference, InferenceBackend, OutputSpec
from edged.infer.bundled import default_model_path
from edged.infer.model import ModelFile, inspect_model
from edged.infer.supervisor import Supervisor, Timings
from edged.infer.worker import WorkerFault
from edged.tensor import InputSpec


@functools.cache
def bundled_model() -> ModelFile:
    return inspect_model(default_model_path())


TPU_SPEC = InputSpec(224, 224, np.dtype(np.uint8), 1 / 128, 128)
CPU_SPEC = InputSpec(224, 224, np.dtype(np.int8), 1 / 128, 0)
OUT = OutputSpec(10, np.dtype(np.uint8), 1 / 256, 0)


class StandIn(InferenceBackend):
    """Records what it ran; ``fail`` makes the next submit raise a worker fault."""

    type_key = "stand-in"

    def __init__(self, name: str, spec: InputSpec) -> None:
        super().__init__(bundled_model(), ModelConfig())
        self._name = name
        self.input_spec, self.output_spec = spec, OUT
        self.ran: list[npt.NDArray[Any]] = []
        self.fail = False
        self.closed = False
        self.pid = 1234

    @property
    def name(self) -> str:
        return self._name

    def submit(self, tensor: npt.NDArray[np.generic], spec: InputSpec | None = None) -> None:
        if self.fail:
            raise WorkerFault("stand-in died")
        super().submit(tensor, spec)

    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        self.ran.append(tensor)
        return np.zeros(10, np.uint8)

    def collect(self) -> Inference:
        result = super().collect()
        return Inference(result.raw, result.spec, self._name, result.ms)

    def close(self) -> None:
        self.closed = True


def tensor(spec: InputSpec) -> npt.NDArray[np.generic]:
    return np.zeros((1, spec.height, spec.width, 3), spec.dtype)


def make(timings: Timings | None = None) -> tuple[Supervisor, StandIn, StandIn]:
    worker, cpu = StandIn("edgetpu", TPU_SPEC), StandIn("cpu", CPU_SPEC)
    sup = Supervisor(worker.model, ModelConfig(), worker=worker, cpu=cpu, timings=timings)  # type: ignore[arg-type]
    return sup, worker, cpu


def test_a_frame_runs_where_its_spec_fits() -> None:
    sup, worker, cpu = make()
    try:
        # the stand-in plays the WorkerBackend (see make())
        assert sup.input_spec == TPU_SPEC
        assert sup.active.worker is worker  # type: ignore[comparison-overlap]
        sup.submit(tensor(TPU_SPEC), TPU_SPEC)
        assert sup.collect().backend == "edgetpu"
        # prepared for the CPU twin (e.g. just before the worker came back): runs there
        sup.submit(tensor(CPU_SPEC), CPU_SPEC)
        assert sup.collect().backend == "cpu"
        assert len(worker.ran) == 1 and len(cpu.ran) == 1
    finally:
        sup.close()


def test_fault_swaps_backend_and_specs_together() -> None:
    sup, worker, _ = make(Timings(first_reprobe_s=3600.0))
    try:
        worker.fail = True
        sup.submit(tensor(TPU_SPEC), TPU_SPEC)
        active = sup.active
        assert active.worker is None and active.input_spec == CPU_SPEC
        assert sup.input_spec == CPU_SPEC and sup.name == "cpu"
        with pytest.raises(RuntimeError, match="does not fit the CPU twin"):
            sup.collect()  # a TPU frame is never fed to a model it was not made for
        sup.submit(tensor(CPU_SPEC), CPU_SPEC)
        assert sup.collect().backend == "cpu"
    finally:
        sup.close()


def test_restart_limit_and_window_are_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    monkeypatch.setattr(Supervisor, "_start_reprobe", lambda self: started.set())
    sup, worker, _ = make(Timings(restart_limit=1, restart_window_s=0.5))
    try:
        worker.fail = True
        sup.submit(tensor(TPU_SPEC), TPU_SPEC)
        assert sup.gave_up and "1 times within 0.5 s" in str(sup.fallback_reason)
        assert not started.is_set()  # gave up: no re-probe
    finally:
        sup.close()
