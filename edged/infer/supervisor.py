"""Keeps inference going through Edge TPU faults.

The Edge TPU backend runs in a worker process.  When an inference fails, the worker dies
(abort, segfault, kill) or an inference exceeds ``model.inference_timeout_s``, the supervisor
kills the worker, runs the frames that were in flight there and the following ones on the
CPU twin (loaded at start, so the switch is immediate), in order, and re-probes the Edge TPU
in the background with exponential backoff up to ``model.reprobe_max_s``.  After
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
        tpu_model: ModelFile,
        cfg: ModelConfig,
        tpu: WorkerBackend | None,
        cpu: InferenceBackend | None,
        reason: str | None = None,
    ) -> None:
        super().__init__(tpu_model, cfg)
        self.tpu_model = tpu_model
        self._tpu = tpu
        self._cpu = cpu
        self.fallback_reason = reason
        self.fallbacks = 1 if tpu is None else 0
        self.worker_restarts = 0
        self._restarts: deque[float] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # frames submitted and not yet collected, oldest first, each with the worker it went
        # to (None: it runs on the CPU at collect)
        self._pending: deque[tuple[npt.NDArray[np.generic], WorkerBackend | None]] = deque()
        self._reprobe: threading.Thread | None = None
        self.gave_up = False
        primary = tpu or cpu
        if primary is None:
            raise ModelError("no inference backend could be started")
        self.input_spec = primary.input_spec
        self.output_spec = primary.output_spec
        if tpu is None:
            self._start_reprobe()

    @property
    def name(self) -> str:
        return "edgetpu" if self._tpu is not None else "cpu"

    @property
    def active_model(self) -> ModelFile:
        active = self._tpu or self._cpu
        return active.model if active else self.tpu_model

    @property
    def worker_pid(self) -> int | None:
        tpu = self._tpu
        return tpu.pid if tpu is not None else None

    @property
    def depth(self) -> int:
        active = self._tpu or self._cpu
        return active.depth if active is not None else 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return self.infer(tensor).raw

    def submit(self, tensor: npt.NDArray[np.generic]) -> None:
        tpu = self._tpu
        if tpu is not None:
            try:
                tpu.submit(tensor)
            except WorkerFault as fault:
                self._fall_back(tpu, fault.reason)
            else:
                self._pending.append((tensor, tpu))
                return
        self._pending.append((tensor, None))

    def collect(self) -> Inference:
        tensor, tpu = self._pending.popleft()
        if tpu is not None:
            try:
                return tpu.collect()
            except WorkerFault as fault:
                self._fall_back(tpu, fault.reason)
        cpu = self._cpu
        if cpu is None:
            raise RuntimeError(
                f"the Edge TPU failed ({self.fallback_reason}) and there is no "
                "CPU twin to fall back to (model.cpu_path)"
            )
        spec = cpu.input_spec
        if tensor.shape != (1, spec.height, spec.width, 3) or tensor.dtype != spec.dtype:
            raise RuntimeError("frame prepared for the Edge TPU model does not fit the CPU twin")
        return cpu.infer(tensor)

    def _fall_back(self, tpu: WorkerBackend, reason: str) -> None:
        with self._lock:
            if self._tpu is tpu:
                self._tpu = None
            elif tpu.closed:
                return  # a later frame of a worker already given up: counted once
        tpu.close()
        self.fallbacks += 1
        self.fallback_reason = reason
        log.warning(
            "Edge TPU fault (%s): continuing on the CPU%s",
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
                f"{reason}; the Edge TPU worker failed {len(self._restarts)} times within "
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
            target=self._reprobe_loop, name="edged-tpu-reprobe", daemon=True
        )
        self._reprobe.start()

    def _reprobe_loop(self) -> None:
        delay = FIRST_REPROBE_S
        while not self._stop.wait(delay):
            try:
                worker = WorkerBackend(self.tpu_model, self.cfg, "edgetpu")
            except (WorkerFault, ModelError, OSError) as exc:
                delay = min(delay * 2, self.cfg.reprobe_max_s)
                log.info("Edge TPU still unavailable (%s); next try in %g s", exc, delay)
                continue
            if self._stop.is_set():
                worker.close()
                return
            with self._lock:
                self._tpu = worker
            self.worker_restarts += 1
            self.input_spec, self.output_spec = worker.input_spec, worker.output_spec
            log.warning("back on the Edge TPU after: %s", self.fallback_reason)
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
            tpu, self._tpu = self._tpu, None
        if tpu is not None:
            tpu.close()
        if self._cpu is not None:
            self._cpu.close()
