"""Keeps inference going through faults of the worker process.

The Edge TPU backend runs in a worker process (and the CPU too with ``model.isolate_cpu``).
When an inference fails, the worker dies (abort, segfault, kill) or an inference exceeds
``model.inference_timeout_s``, the supervisor kills the worker and runs the frames that were
in flight there, then the following ones, on the CPU twin in this process (loaded at start,
so the switch is immediate), in order.  It starts a new worker (for the Edge TPU: re-probes
it) in the background with exponential backoff up to ``model.reprobe_max_s``.  After
``restart_limit`` worker faults within ``restart_window_s`` it stays on the CPU, and says so
in the health topic.

Which backend runs a frame, and the input and output specs that go with it, change together:
they are one immutable :class:`Active` record, replaced under a lock.  A frame carries the
spec it was prepared for, and runs only on a backend with that spec, so a swap between
preprocessing and inference never feeds a tensor to the wrong model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edged.config import ModelConfig
from edged.infer.base import Inference, InferenceBackend, OutputSpec
from edged.infer.model import ModelError, ModelFile
from edged.infer.worker import WorkerBackend, WorkerFault
from edged.tensor import InputSpec
from edged.wire import HEALTH_FIELDS as H

log = logging.getLogger(__name__)

RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
FIRST_REPROBE_S = 1.0


@dataclass(frozen=True)
class Timings:
    """How the supervisor paces itself.  Defaults are the module's constants, read when a
    ``Timings`` is made; tests pass short ones."""

    restart_limit: int = field(default_factory=lambda: RESTART_LIMIT)
    restart_window_s: float = field(default_factory=lambda: RESTART_WINDOW_S)
    first_reprobe_s: float = field(default_factory=lambda: FIRST_REPROBE_S)


@dataclass(frozen=True)
class Active:
    """The worker frames go to now (None: the CPU twin in-process) and its specs."""

    worker: WorkerBackend | None
    input_spec: InputSpec
    output_spec: OutputSpec


class Supervisor(InferenceBackend):
    type_key = "auto"

    def __init__(
        self,
        worker_model: ModelFile,
        cfg: ModelConfig,
        worker: WorkerBackend | None,
        cpu: InferenceBackend | None,
        reason: str | None = None,
        kind: str = "edgetpu",
        *,
        timings: Timings | None = None,
    ) -> None:
        """``worker`` runs ``worker_model`` on a backend of type ``kind`` (None: it could
        not start, for ``reason``); ``cpu`` is the in-process fallback."""
        super().__init__(worker_model, cfg)
        self.timings = timings or Timings()
        self._changed = threading.Condition()
        self.worker_model = worker_model
        self.kind = kind
        self._what = "Edge TPU" if kind == "edgetpu" else f"{kind} worker"
        self._cpu = cpu
        self.fallback_reason = reason
        self.fallbacks = 1 if worker is None else 0
        self.worker_restarts = 0
        self._restarts: deque[float] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # frames submitted and not yet collected, oldest first, each with the worker it went
        # to (None: it runs on the CPU at collect)
        self._pending: deque[
            tuple[npt.NDArray[np.generic], InputSpec | None, WorkerBackend | None]
        ] = deque()
        self._reprobe: threading.Thread | None = None
        self.gave_up = False
        primary = worker or cpu
        if primary is None:
            raise ModelError("no inference backend could be started")
        self._active = Active(worker, primary.input_spec, primary.output_spec)
        if worker is None:
            self._start_reprobe()

    @property
    def active(self) -> Active:
        """What runs frames now, with its specs (one consistent snapshot)."""
        return self._active

    @property
    def input_spec(self) -> InputSpec:  # type: ignore[override]
        return self._active.input_spec

    @property
    def output_spec(self) -> OutputSpec:  # type: ignore[override]
        return self._active.output_spec

    @property
    def cpu(self) -> InferenceBackend | None:
        """The in-process fallback, if there is one."""
        return self._cpu

    @property
    def name(self) -> str:
        return self.kind if self._active.worker is not None else "cpu"

    @property
    def active_model(self) -> ModelFile:
        active = self._active.worker or self._cpu
        return active.model if active else self.worker_model

    @property
    def worker_pid(self) -> int | None:
        worker = self._active.worker
        return worker.pid if worker is not None else None

    @property
    def depth(self) -> int:
        active = self._active.worker or self._cpu
        return active.depth if active is not None else 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return self.infer(tensor).raw

    def submit(self, tensor: npt.NDArray[np.generic], spec: InputSpec | None = None) -> None:
        """A frame prepared for ``spec`` goes to the worker only if that is the worker's
        spec; one prepared for the CPU twin (just before the worker came back) runs there."""
        worker = self._active.worker
        if worker is not None and (spec is None or spec == worker.input_spec):
            try:
                worker.submit(tensor)
            except WorkerFault as fault:
                self._fall_back(worker, fault.reason)
            else:
                self._pending.append((tensor, spec, worker))
                return
        self._pending.append((tensor, spec, None))

    def collect(self) -> Inference:
        tensor, prepared_for, worker = self._pending.popleft()
        if worker is not None:
            try:
                return worker.collect()
            except WorkerFault as fault:
                self._fall_back(worker, fault.reason)
        cpu = self._cpu
        if cpu is None:
            raise RuntimeError(
                f"the {self._what} failed ({self.fallback_reason}) and there is no "
                "CPU twin to fall back to (model.cpu_path)"
            )
        spec = cpu.input_spec
        if (prepared_for is not None and prepared_for != spec) or (
            tensor.shape != (1, spec.height, spec.width, 3) or tensor.dtype != spec.dtype
        ):
            name = self.worker_model.name
            raise RuntimeError(f"frame prepared for {name} does not fit the CPU twin")
        return cpu.infer(tensor)

    def _fall_back(self, worker: WorkerBackend, reason: str) -> None:
        with self._lock:
            if self._active.worker is worker:
                cpu = self._cpu
                self._active = (
                    Active(None, cpu.input_spec, cpu.output_spec)
                    if cpu is not None
                    else Active(None, self._active.input_spec, self._active.output_spec)
                )
            elif worker.closed:
                return  # a later frame of a worker already given up: counted once
            self.fallbacks += 1
            self.fallback_reason = reason
        worker.close()
        log.warning(
            "%s fault (%s): continuing on the CPU in-process%s",
            self._what,
            reason,
            f" with {self._cpu.model.name}" if self._cpu else "",
        )
        now = time.monotonic()
        self._restarts.append(now)
        while now - self._restarts[0] > self.timings.restart_window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.timings.restart_limit:
            self.gave_up = True
            self.fallback_reason = (
                f"{reason}; the {self._what} failed {len(self._restarts)} times within "
                f"{self.timings.restart_window_s:g} s, staying on the CPU"
            )
            log.error("%s", self.fallback_reason)
            self._notify()
            return
        self._notify()
        self._start_reprobe()

    def _start_reprobe(self) -> None:
        if self._stop.is_set() or self.gave_up:
            return
        if self._reprobe is not None and self._reprobe.is_alive():
            return
        self._reprobe = threading.Thread(
            target=self._reprobe_loop, name=f"edged-{self.kind}-reprobe", daemon=True
        )
        self._reprobe.start()

    def _reprobe_loop(self) -> None:
        delay = self.timings.first_reprobe_s
        while not self._stop.wait(delay):
            try:
                worker = WorkerBackend(self.worker_model, self.cfg, self.kind)
            except (WorkerFault, ModelError, OSError) as exc:
                delay = min(delay * 2, self.cfg.reprobe_max_s)
                log.info("%s still unavailable (%s); next try in %g s", self._what, exc, delay)
                continue
            # the status (restarts, reason) changes with the swap, so that whoever sees the
            # new worker also sees it counted
            with self._lock:
                stopped = self._stop.is_set()
                if not stopped:
                    reason, self.fallback_reason = self.fallback_reason, None
                    self.worker_restarts += 1
                    self._active = Active(worker, worker.input_spec, worker.output_spec)
            if stopped:
                worker.close()
                return
            log.warning("back on the %s after: %s", self._what, reason)
            self._notify()
            return

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Supervisor], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds (checked after every fall-back and every
        return to the worker) or ``timeout`` seconds pass; its last value."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def status(self) -> dict[str, object]:
        return {
            H.backend: self.name,
            H.fallback_reason: self.fallback_reason,
            H.fallbacks: self.fallbacks,
            H.worker_restarts: self.worker_restarts,
            H.worker_pid: self.worker_pid,
        }

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        if self._reprobe is not None:
            self._reprobe.join(timeout=5.0)
        with self._lock:
            worker = self._active.worker
            self._active = Active(None, self._active.input_spec, self._active.output_spec)
        if worker is not None:
            worker.close()
        if self._cpu is not None:
            self._cpu.close()
