"""The shared inference stage: one model on one device, serving every camera (and region)
that uses it.  Cameras put prepared frames into their lane of :class:`~edged.pipeline.
lanes.Lanes`; each interpreter has a thread that takes them round-robin, keeps up to the
backend's ``depth`` in flight (an Edge TPU worker: two) and hands each result back to the
camera it came from (its :class:`Route`).  The stage knows nothing of cameras beyond the
name each frame carries.

An Edge TPU (or any supervised worker) is one interpreter: the device is opened once.  A CPU
model may have several interpreters (``model.interpreters``), each with ``num_threads``; a
camera then has one frame in flight at a time, so its results keep their order."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edged.config import ClassifyConfig, ModelConfig
from edged.engine import Engine, Work, open_engine
from edged.infer.base import Inference
from edged.infer.runtime import release_freed_memory
from edged.infer.supervisor import Supervisor
from edged.logsetup import set_context
from edged.pipeline.lanes import Empty, Lanes

log = logging.getLogger(__name__)


class Route(Protocol):
    """What the stage calls back on the camera a frame came from."""

    def collected(self, item: Work, inference: Inference) -> bool:
        """In the interpreter's thread, as the result is read: count it; False when the
        camera wants no more results (its frame limit was reached)."""
        ...

    def publish(self, item: Work, inference: Inference, engine: Engine) -> None:
        """Classify and publish (in the interpreter's thread, or beside it)."""
        ...

    def lost(self, item: Work, exc: Exception) -> None: ...


Sink = Callable[["Route", Work, Inference, Engine], None]


def inline(route: Route, item: Work, inference: Inference, engine: Engine) -> None:
    """The sink that publishes in the interpreter's thread itself."""
    route.publish(item, inference, engine)


@dataclass(frozen=True)
class Slot:
    """One frame taken from a lane, in flight in an interpreter."""

    camera: str
    item: Work


def pool_size(cfg: ModelConfig, cameras: int, cores: int | None = None) -> tuple[int, int]:
    """``(interpreters, num_threads)`` for a CPU model that ``cameras`` cameras share.

    One camera keeps one interpreter with ``num_threads`` (as ever).  Several get one
    interpreter each, up to one per core, and, unless ``num_threads`` is set, the cores
    divided among them: on 2 cores, two 1-thread interpreters (bench/cameras.py measures
    it against one 2-thread interpreter)."""
    cores = cores or len(os.sched_getaffinity(0))
    threads_set = "num_threads" in cfg.model_fields_set
    if cfg.interpreters:
        k = cfg.interpreters
    elif cameras <= 1:
        return 1, cfg.num_threads
    else:
        k = max(1, min(cameras, cores // (cfg.num_threads if threads_set else 1)))
    if threads_set or k == 1:
        return k, cfg.num_threads
    return k, max(1, cores // k)


class InferenceStage:
    """One model on one device.  ``name`` is the [models.NAME] key ("" = [model])."""

    def __init__(
        self,
        name: str,
        engines: list[Engine],
        stop: threading.Event,
        paused: threading.Event,
        on_finished: Callable[[str, str], None],
    ) -> None:
        if not engines:
            raise ValueError("a stage needs at least one engine")
        self.name = name
        self.engines = engines
        self.stop = stop
        self.paused = paused
        self._on_finished = on_finished
        self.lanes: Lanes[Work | None] = Lanes()
        self._routes: dict[str, Route] = {}
        self._next: list[Engine | None] = [None] * len(engines)
        self._retired: list[Engine | None] = [None] * len(engines)  # swapped out, not closed
        self._swapped = threading.Condition()
        self.ages: deque[float] = deque(maxlen=8192)  # seconds from source to interpreter
        self.reason = "frame source finished"
        self._done = False
        self._sink: Sink | None = None  # the interpreters' sink, once they run

    @property
    def engine(self) -> Engine:
        """The first interpreter's engine (for what all of them share: model, labels)."""
        return self.engines[0]

    @property
    def depth(self) -> int:
        return sum(e.depth for e in self.engines)

    @property
    def ahead(self) -> int:
        """How many cameras reading files may hold a frame for their coming turns: as many
        as the frames in flight, whose time covers the reading of the next ones, so the
        device does not wait for a frame.  One more would only add a turn to every frame's
        age (bench/cameras.py many: the same total, p95 age 8.3 ms against 5.4 ms)."""
        return self.depth

    def shared(self) -> bool:
        return len(self._routes) > 1

    def attach(self, camera: str, route: Route, capacity: int) -> None:
        """A camera's lane; ``capacity`` frames (or regions) may wait in it."""
        in_flight = self.engine.depth if len(self.engines) == 1 else 1
        self.lanes.add(camera, capacity, in_flight)
        self._routes[camera] = route

    # -- the interpreters' threads --------------------------------------------------------
    def run(self, index: int, sink: Sink) -> None:
        """Interpreter ``index``'s loop; ``sink`` publishes a result (here or beside)."""
        engine = self.engines[index]
        self._sink = sink
        pending: deque[Slot] = deque()
        while not self.stop.is_set() or pending:  # at stop, the frames in flight finish
            if self._next[index] is not None:
                engine = self._swap(index, engine, pending, sink)
            while not self.stop.is_set() and len(pending) < engine.depth:
                try:  # wait for a frame only when none is in flight
                    camera, item, queued = self.lanes.get(None if pending else 0.2)
                except Empty:
                    break
                if item is None or self.paused.is_set():
                    self.lanes.done(camera)  # paused: frames reach the page, none is classified
                    continue
                route = self._routes[camera]
                if item.input is None:  # the camera's sensor classified it: no invoke here
                    while pending:  # results keep their order
                        self._collect(engine, pending.popleft(), sink)
                    self._sensor(engine, Slot(camera, item), sink)
                    continue
                try:
                    prepared = item.input
                    if prepared.spec != engine.backend.input_spec and item.image is not None:
                        prepared = engine.prepare(item.image)
                        item = Work(
                            item.number,
                            item.source,
                            prepared,
                            region=item.region,
                            image=item.image,
                            sensor=item.sensor,
                            ts=item.ts,
                        )
                    engine.submit(prepared)
                except (RuntimeError, ValueError) as exc:
                    self.lanes.done(camera)
                    route.lost(item, exc)
                    continue
                # the frame's age: from the source when it says, else from its lane
                self.ages.append(time.time() - item.ts if item.ts else time.monotonic() - queued)
                pending.append(Slot(camera, item))
            if not pending:
                if self.lanes.finished():
                    self._finish()
                    return
                continue
            self._collect(engine, pending.popleft(), sink)

    def _collect(
        self,
        engine: Engine,
        slot: Slot,
        sink: Sink,
    ) -> None:
        route = self._routes[slot.camera]
        try:
            try:
                inference = engine.collect_raw()
            except (RuntimeError, ValueError) as exc:
                route.lost(slot.item, exc)
                return
            if route.collected(slot.item, inference):
                sink(route, slot.item, inference, engine)
        finally:
            self.lanes.done(slot.camera)

    def _sensor(self, engine: Engine, slot: Slot, sink: Sink) -> None:
        """A frame the camera's sensor classified goes straight to classification."""
        try:
            self._sensor_result(engine, slot, sink)
        finally:
            self.lanes.done(slot.camera)

    def _sensor_result(self, engine: Engine, slot: Slot, sink: Sink) -> None:
        if slot.item.sensor is None:
            return
        route = self._routes[slot.camera]
        inference = engine.sensor_inference(slot.item.sensor)
        if route.collected(slot.item, inference):
            sink(route, slot.item, inference, engine)

    # -- the cameras' threads -------------------------------------------------------------
    def sensor_here(self, camera: str, item: Work) -> bool:
        """A frame the camera's sensor classified, handed to the sink in the calling (the
        camera's) thread when nothing of that camera waits or is in flight here: its
        results keep their order, and no interpreter's thread is woken for a frame that
        needs no invoke.  False: the caller queues it like any frame (the interpreters are
        not running yet, or are paused or stopping, or the camera has frames here)."""
        sink = self._sink
        if sink is None or self.paused.is_set() or self.stop.is_set():
            return False
        if not self.lanes.idle(camera):
            return False
        self._sensor_result(self.engine, Slot(camera, item), sink)
        return True

    def _finish(self) -> None:
        with self._swapped:
            if self._done:
                return
            self._done = True
        self._on_finished(self.name, self.reason)

    # -- reload ---------------------------------------------------------------------------
    def swap(self, engines: list[Engine], timeout: float) -> bool:
        """Hand ``engines`` (one per interpreter) to the interpreters' threads, which swap
        between two frames (finishing those in flight on the old model); the old engines are
        closed once every thread has taken its new one.  False when an interpreter did not
        take its engine within ``timeout`` (the pipeline ended or is stuck): the engines not
        taken are closed, and the threads that took theirs go back to the old model, so
        that a stage never runs two models."""
        n = len(self.engines)
        if len(engines) != n:
            raise ValueError(f"{len(engines)} engines for {n} interpreters")
        with self._swapped:
            self._retired = [None] * n
            self._next = list(engines)
            self._swapped.wait_for(
                lambda: all(e is None for e in self._next) or self.stop.is_set(), timeout
            )
            late = [e for e in self._next if e is not None]
            self._next = [None] * n
            if late:
                back = [i for i, e in enumerate(self._retired) if e is not None]
                for i in back:
                    self._next[i], self._retired[i] = self._retired[i], None
                self._swapped.wait_for(
                    lambda: all(self._next[i] is None for i in back) or self.stop.is_set(),
                    timeout,
                )
                if not self.stop.is_set() and any(self._next[i] is not None for i in back):
                    log.warning("model reload: an interpreter did not go back to the old model")
            retired = [e for e in self._retired if e is not None]
            self._retired = [None] * n
        for e in late + retired:
            e.close()
        release_freed_memory()
        return not late

    def _swap(
        self,
        index: int,
        engine: Engine,
        pending: deque[Slot],
        sink: Sink,
    ) -> Engine:
        while pending:
            self._collect(engine, pending.popleft(), sink)
        with self._swapped:
            new = self._next[index]
            assert new is not None
            self._next[index] = None
            self.engines[index] = new
            self._retired[index] = engine  # closed by swap() once every thread has swapped
            self._swapped.notify_all()
        set_context(model=new.model.name, backend=new.backend.name)
        log.info("model %s (%s) now running", new.model.name, new.backend.name)
        return new

    def close(self) -> None:
        with self._swapped:  # and any engine a stuck reload left untaken
            extra = [e for e in self._next + self._retired if e is not None]
            self._next = [None] * len(self.engines)
            self._retired = [None] * len(self.engines)
        for engine in self.engines + extra:
            engine.close()


def open_stage_engines(
    cfg: ModelConfig, classify: ClassifyConfig, cameras: int, **kwargs: Any
) -> list[Engine]:
    """The engines of one stage: the first tells whether the model runs on a device (one
    interpreter) or on the CPU (a pool, :func:`pool_size`).  A failure closes what opened."""
    k, threads = pool_size(cfg, cameras)
    if k > 1 or threads != cfg.num_threads:
        cfg = cfg.model_copy(update={"num_threads": threads})
    engines = [open_engine(cfg, classify, **kwargs)]
    try:
        if isinstance(engines[0].backend, Supervisor):
            k = 1  # an Edge TPU (or a CPU worker process): opened once
        engines += [open_engine(cfg, classify, **kwargs) for _ in range(k - 1)]
    except BaseException:
        for e in engines:
            e.close()
        raise
    if len(engines) > 1:
        log.info(
            "model %s: %d interpreters of %d thread(s) for %d cameras",
            engines[0].model.name,
            len(engines),
            threads,
            cameras,
        )
    return engines
