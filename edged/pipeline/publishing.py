"""A camera's publish stage, run on each of its results as it comes: the publish policy per
region, Home Assistant's state, the collector, and the event handed to the publisher (which
only appends it to its spool: the broker is never waited for here).

An interpreter's thread runs it itself where the interpreters take every core; elsewhere
:class:`Beside` runs it in a thread of its own, beside the next ``invoke()``."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from edged.classify import Classifier
from edged.config import ClassifyConfig, PublishConfig
from edged.control.live import CameraLive, LastResult
from edged.engine import Engine, Outcome, Result, Work
from edged.handoff import Handoff
from edged.health import Notifier, Stats
from edged.infer.base import Inference
from edged.publish import Publisher
from edged.publish.collect import Collector
from edged.publish.events import PublishPolicy, classified_fields, event_json
from edged.publish.homeassistant import HomeAssistant
from edged.wire import State, Suffix, camera_suffix

log = logging.getLogger(__name__)


class Publishing:
    """One camera's publish stage.  ``camera`` is None for the one camera of a [capture]
    config: its topics and events then carry no camera, as ever.  Its results come one at
    a time (a lock keeps it so where several stages serve one camera's regions)."""

    def __init__(
        self,
        *,
        camera: str | None,
        device: str,
        run_id: str,
        stats: Stats,
        live: CameraLive,
        publisher: Publisher,
        notifier: Notifier,
        classify: ClassifyConfig,
        publish: PublishConfig,
        collector: Collector | None = None,
        homeassistant: HomeAssistant | None = None,
        status_line: Callable[[], str] = lambda: "",
    ) -> None:
        self.camera = camera
        self.device = device
        self.run_id = run_id
        self.stats = stats
        self.live = live
        self.publisher = publisher
        self.notifier = notifier
        self.classify = classify  # replaced by a `set` command
        self.publish = publish
        self.collector = collector
        self.ha = homeassistant
        self._status_line = status_line
        self._events = camera_suffix(camera, Suffix.EVENTS)
        self._policy_for: PublishConfig | None = None
        self.policies: dict[str | None, PublishPolicy] = {}  # one per region
        self._classifier: Classifier | None = None
        self._lock = threading.Lock()

    def classifier(self, engine: Engine) -> Classifier:
        """This camera's classifier for ``engine``'s labels (built again after a reload or
        a `set` of its classify keys)."""
        c = self._classifier
        if c is None or c.labels is not engine.labels or c.cfg is not self.classify:
            if engine.classifier.cfg == self.classify:
                c = engine.classifier  # the same filters: the engine's own
            else:
                c = Classifier(engine.labels, self.classify)
            self._classifier = c
        return c

    def result(self, item: Work, inference: Inference, engine: Engine) -> None:
        """Classify a frame's raw output and publish it."""
        with self._lock:
            try:
                outcome = engine.classify(inference, item.sensor, self.classifier(engine))
            except (RuntimeError, ValueError) as exc:
                self.lost(item, exc)
                return
            model = item.sensor.model if item.sensor is not None else engine.model.name
            self(Result(item.number, item.source, outcome, item.region, model))

    def lost(self, item: Work, exc: Exception) -> None:
        self.stats.frames_lost += 1
        where = f" of camera {self.camera}" if self.camera else ""
        log.error("inference failed on frame %d%s: %s", item.number, where, exc)

    def __call__(self, item: Result) -> None:
        outcome = item.outcome
        if not self.notifier.ready_sent:
            self.notifier.ready(self._status_line())
        now = time.monotonic()
        last = LastResult(item, time.time())
        self.live.last = last
        if self.collector is not None:
            self.collector.offer(
                item.number, item.source, outcome.classification, region=item.region
            )
        settings = self.publish
        if settings is not self._policy_for:  # changed by a `set` command
            self._policy_for = settings
            self.policies.clear()
        policy = self.policies.get(item.region)
        if policy is None:
            policy = self.policies[item.region] = PublishPolicy(
                settings.policy,
                settings.interval_s,
                settings.min_score,
                settings.confirm_frames,
            )
        publish = policy.should_publish(outcome.classification, now)
        ha = self.ha
        if ha is not None and ha.throttle.due(
            f"{self.camera or ''}/{item.region or ''}",
            policy.confirmed,
            outcome.classification.ambiguous,
            now,
        ):  # Home Assistant's state follows the confirmed label, region by region
            ha.publish_state(self.state(last, policy.confirmed))
        stats = self.stats
        if not publish:
            stats.events_filtered += 1
            return
        stats.events_created += 1
        payload = event_json(
            device=self.device,
            run_id=self.run_id,
            seq=stats.events_created,
            frame=item.number,
            source=item.source,
            result=outcome.classification,
            model=item.model,
            backend=outcome.backend,
            inference_ms=outcome.ms,
            region=item.region,
            confirmed_label=policy.confirmed,
            camera=self.camera,
        )
        self.publisher.publish(self._events, payload)
        log.debug("event seq %d (frame %d) spooled", stats.events_created, item.number)

    def state(self, last: LastResult, confirmed: str | None = None) -> State:
        """Home Assistant's state of ``last`` (and the snapshot's caption)."""
        outcome: Outcome = last.result.outcome
        extra: dict[str, Any] = {"camera": self.camera} if self.camera else {}
        return State(
            device=self.device,
            ts=last.ts,
            frame=last.result.number,
            region=last.result.region,
            confirmed_label=confirmed,
            **extra,
            **classified_fields(
                outcome.classification,
                model=last.result.model,
                backend=outcome.backend,
                inference_ms=outcome.ms,
            ),
        )


def spare_core(interpreter_threads: int) -> bool:
    """Whether this process may use more cores than the interpreters' threads take."""
    return len(os.sched_getaffinity(0)) > interpreter_threads


Sink = Callable[[Any, Work, Inference, Engine], None]


class Beside:
    """Classification and the publish stage in a thread of their own (``edged-publish``),
    beside the next ``invoke()``: used where the interpreters' threads leave a core free, so
    that the interpreter's thread returns to the model as soon as it has read the output.
    Results keep their order; none is dropped: the interpreter's thread waits while
    ``SLOTS`` results wait here."""

    SLOTS = 4

    def __init__(self) -> None:
        self._results: Handoff[tuple[Any, Work, Inference, Engine] | None] = Handoff(self.SLOTS)
        self._thread: threading.Thread | None = None

    def thread(self, guard: Callable[..., None]) -> threading.Thread:
        self._thread = threading.Thread(
            target=guard, args=(self._run,), name="edged-publish", daemon=True
        )
        return self._thread

    def __call__(self, route: Any, item: Work, inference: Inference, engine: Engine) -> None:
        self._put((route, item, inference, engine))

    def end(self) -> None:
        """No more results: the thread ends once it has published those it holds."""
        self._put(None)

    def _put(self, entry: tuple[Any, Work, Inference, Engine] | None) -> None:
        while not self._results.put(entry, timeout=0.2):
            if self._thread is None or not self._thread.is_alive():
                if entry is None:
                    return
                raise RuntimeError("the publish thread has stopped")

    def _run(self) -> None:
        while (entry := self._results.get()) is not None:
            route, item, inference, engine = entry
            route.publish(item, inference, engine)
