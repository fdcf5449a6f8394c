"""Keeps inference going through faults of the worker process.

The Edge TPU backend runs in a worker process (and the CPU too with ``model.isolate_cpu``).
When an inference fails, the worker dies (abort, segfault, kill) or an inference exceeds
``model.inference_timeout_s``, the supervisor kills the worker and runs the frames that were
in flight there, then the following ones, on the CPU twin in this process (loaded at start,
so the switch is immediate), in order.  It starts a new worker (for the Edge TPU: re-probes
it) in the background with exponential backoff up to ``model.reprobe_max_s``.  After
``RESTART_LIMIT`` worker faults within ``RESTART_WINDOW_S`` it stays on the CPU, and says so
in the health topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np
import numpy.typing as npt

from edged.config import ModelConfig
from edged.infer.base import Inference, InferenceBackend
from edged.infer.model import ModelError, ModelFile
from edged.infer.worker import WorkerBackend, WorkerFault

log = logging.getLogger(__name__)

RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
FIRST_REPROBE_S = 1.0


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
    ) -> None:
        """``worker`` runs ``worker_model`` on a backend of type ``kind`` (None: it could
        not start, for ``reason``); ``cpu`` is the in-process fallback."""
        super().__init__(worker_model, cfg)
        self.worker_model = worker_model
        self.kind = kind
        self._what = "Edge TPU" if kind == "edgetpu" else f"{kind} worker"
        self._worker = worker
        self._cpu = cpu
        self.fallback_reason = reason
        self.fallbacks = 1 if worker is None else 0
        self.worker_restarts = 0
        self._restarts: deque[float] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # frames submitted and not yet collected, oldest first, each with the worker it went
        # to (None: it runs on the CPU at collect)
        self._pending: deque[tuple[npt.NDArray[np.generic], WorkerBackend | None]] = deque()
        self._reprobe: threading.Thread | None = None
        self.gave_up = False
        primary = worker or cpu
        if primary is None:
            raise ModelError("no inference backend could be started")
        self.input_spec = primary.input_spec
        self.output_spec = primary.output_spec
        if worker is None:
            self._start_reprobe()

    @property
    def name(self) -> str:
        return self.kind if self._worker is not None else "cpu"

    @property
    def active_model(self) -> ModelFile:
        active = self._worker or self._cpu
        return active.model if active else self.worker_model

    @property
    def worker_pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None else None

    @property
    def depth(self) -> int:
        active = self._worker or self._cpu
        return active.depth if active is not None else 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return self.infer(tensor).raw

    def submit(self, tensor: npt.NDArray[np.generic]) -> None:
        worker = self._worker
        if worker is not None:
            try:
                worker.submit(tensor)
            except WorkerFault as fault:
                self._fall_back(worker, fault.reason)
            else:
                self._pending.append((tensor, worker))
                return
        self._pending.append((tensor, None))

    def collect(self) -> Inference:
        tensor, worker = self._pending.popleft()
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
        if tensor.shape != (1, spec.height, spec.width, 3) or tensor.dtype != spec.dtype:
            name = self.worker_model.name
            raise RuntimeError(f"frame prepared for {name} does not fit the CPU twin")
        return cpu.infer(tensor)

    def _fall_back(self, worker: WorkerBackend, reason: str) -> None:
        with self._lock:
            if self._worker is worker:
                self._worker = None
            elif worker.closed:
                return  # a later frame of a worker already given up: counted once
        worker.close()
        self.fallbacks += 1
        self.fallback_reason = reason
        log.warning(
            "%s fault (%s): continuing on the CPU in-process%s",
            self._what,
            reason,
            f" with {self._cpu.model.name}" if self._cpu else "",
        )
        if self._cpu is not None:
            self.input_spec = self._cpu.input_spec
            self.output_spec = self._cpu.output_spec
        now = time.monotonic()
        self._restarts.append(now)
        while now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= RESTART_LIMIT:
            self.gave_up = True
            self.fallback_reason = (
                f"{reason}; the {self._what} failed {len(self._restarts)} times within "
                f"{RESTART_WINDOW_S:g} s, staying on the CPU"
            )
            log.error("%s", self.fallback_reason)
            return
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
        delay = FIRST_REPROBE_S
        while not self._stop.wait(delay):
            try:
                worker = WorkerBackend(self.worker_model, self.cfg, self.kind)
            except (WorkerFault, ModelError, OSError) as exc:
                delay = min(delay * 2, self.cfg.reprobe_max_s)
                log.info("%s still unavailable (%s); next try in %g s", self._what, exc, delay)
                continue
            if self._stop.is_set():
                worker.close()
                return
            with self._lock:
                self._worker = worker
            self.worker_restarts += 1
            self.input_spec, self.output_spec = worker.input_spec, worker.output_spec
            log.warning("back on the %s after: %s", self._what, self.fallback_reason)
            self.fallback_reason = None
            return

    def status(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "fallback_reason": self.fallback_reason,
            "fallbacks": self.fallbacks,
            "worker_restarts": self.worker_restarts,
            "worker_pid": self.worker_pid,
        }

    def close(self) -> None:
        self._stop.set()
        if self._reprobe is not None:
            self._reprobe.join(timeout=5.0)
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
        if self._cpu is not None:
            self._cpu.close()
