"""Wires the stages together: capture+preprocess -> infer -> classify -> publish, with health
and the watchdog beside them.  One stop event ends every thread.  Nothing here formats a
message or decides a policy: those live in their stage (``publish/``, ``health/``,
``wire.py``) and in the :class:`~edged.engine.Engine`."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edged import __version__
from edged.capture import FrameSource, open_source
from edged.capture.regions import regions_of
from edged.capture.static import StaticScene
from edged.config import Config, read_secret
from edged.engine import Engine, Result, Work, open_engine
from edged.health import Notifier, Stats
from edged.health.report import HealthReporter
from edged.logsetup import set_context
from edged.preprocess.image import ImageError
from edged.publish import MqttPublisher, Publisher
from edged.publish.collect import Collector
from edged.publish.events import PublishPolicy, build_event
from edged.wire import Health, Suffix

log = logging.getLogger(__name__)


class Daemon:
    """The edged daemon.  ``run()`` blocks until the stop event is set, the source ends or
    ``max_frames`` frames have been classified; it returns the exit code."""

    def __init__(
        self,
        cfg: Config,
        *,
        max_frames: int | None = None,
        stop: threading.Event | None = None,
        notifier: Notifier | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.cfg = cfg
        self.max_frames = max_frames
        self.stop = stop or threading.Event()
        self.notifier = notifier or Notifier()
        self.stats = Stats()
        self.health = HealthReporter(cfg.device.id, self.stats)
        self.exit_code = 0
        self.engine: Engine | None = None
        self.source: FrameSource | None = None
        self._publisher = publisher
        self._seq = 0
        self.collector: Collector | None = None

    # -- setup ---------------------------------------------------------------------------
    def _open(self) -> tuple[Engine, FrameSource, Publisher]:
        """Engine, source and publisher, in that order; a failure at any step closes what
        the earlier steps opened (no worker process or shared memory is left behind)."""
        with contextlib.ExitStack() as stack:
            engine = open_engine(self.cfg.model, self.cfg.classify)
            stack.callback(engine.close)
            source = open_source(self.cfg.capture, engine.capture_size())
            stack.callback(source.close)
            if self.cfg.collect.dir:  # window: frames queued, in the backend, being published
                window = 2 * (self.cfg.pipeline.queue_size + engine.depth) + 8
                self.collector = Collector(
                    self.cfg.collect, self.cfg.device.id, engine.model.name, window=window
                )
            publisher = self._publisher
            if publisher is None:
                password = read_secret(self.cfg.mqtt.password_file, "mqtt_password")
                publisher = MqttPublisher(
                    self.cfg.mqtt, self.cfg.device.id, password, spool_path=self._spool_path()
                )
            stack.pop_all()  # run() owns them from here
        return engine, source, publisher

    def _spool_path(self) -> Path | None:
        if self.cfg.mqtt.spool_file:
            return Path(self.cfg.mqtt.spool_file)
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state) / "mqtt-spool.jsonl" if state else None

    def run(self) -> int:
        engine, source, publisher = self._open()
        self.engine, self.source, self._publisher = engine, source, publisher
        set_context(device=self.cfg.device.id, model=engine.model.name, backend=engine.backend.name)
        log.info(
            "edged %s: device %s, model %s (sha256 %s…), backend %s, source %s",
            __version__,
            self.cfg.device.id,
            engine.model.name,
            engine.model.sha256[:12],
            engine.backend.name,
            source.describe(),
        )
        if engine.fallback_reason:
            log.warning(
                "inference falls back to %s: %s", engine.backend.name, engine.fallback_reason
            )
        # None marks the end of the frames
        parts = max(1, len(self.cfg.capture.regions))  # one work item per region
        work: queue.Queue[Work | None] = queue.Queue(maxsize=self.cfg.pipeline.queue_size * parts)
        results: queue.Queue[Result | None] = queue.Queue(maxsize=1024)
        publisher.start()
        threads = [
            threading.Thread(
                target=self._guard,
                args=(self._capture, source, engine, work),
                name="edged-capture",
                daemon=True,
            ),
            threading.Thread(
                target=self._guard,
                args=(self._infer, engine, work, results),
                name="edged-infer",
                daemon=True,
            ),
            threading.Thread(
                target=self._guard,
                args=(self._publish, publisher, results),
                name="edged-publish",
                daemon=True,
            ),
            threading.Thread(
                target=self._guard, args=(self._health, publisher), name="edged-health", daemon=True
            ),
        ]
        for t in threads:
            t.start()
        if source.stall_s is not None:
            # a camera that is away at start is waited for: the service is up meanwhile
            self.notifier.ready(self._status_line())
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self.stop.set()
            self.notifier.stopping()
            for t in threads:
                t.join(timeout=3.0)
            source.close()
            self._publish_health(publisher)
            publisher.stop(timeout=5.0)
            engine.close()
            if self.max_frames is not None and publisher.lost_events:
                # a bounded run is a job with a result: events that went nowhere fail it
                log.error(
                    "%d event(s) were neither delivered nor kept (set mqtt.spool_file to keep "
                    "them for the next start)",
                    publisher.lost_events,
                )
                self.exit_code = self.exit_code or 1
            log.info(
                "stopped: %d frames processed, %d dropped, %d skipped inputs, %d events",
                self.stats.frames_processed,
                self.stats.frames_dropped,
                source.skipped,
                self.stats.events_published,
            )
        return self.exit_code

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s failed; stopping", threading.current_thread().name)
            self.exit_code = 1
            self.stop.set()

    # -- stages --------------------------------------------------------------------------
    def _capture(self, source: FrameSource, engine: Engine, work: queue.Queue[Work | None]) -> None:
        cfg = self.cfg.capture
        static = StaticScene(cfg.static_threshold, cfg.static_max_s) if cfg.skip_static else None
        # regions the CPU crops; a source that crops on the device names its one region
        crops = [] if source.cropped_region else regions_of(cfg.regions)
        for frame in source.frames(self.stop):
            self.stats.frames_captured += 1
            if static is not None and not static.changed(frame.image):
                self.stats.record_static()
                continue
            if self.collector is not None:
                self.collector.hold(frame.number, frame.image)
            parts: list[tuple[str | None, npt.NDArray[np.uint8]]] = [
                (r.name, r.crop(frame.image)) for r in crops
            ]
            for region, image in parts or [(source.cropped_region, frame.image)]:
                try:
                    prepared = engine.prepare(image)
                except ImageError as exc:
                    source.skipped += 1
                    log.warning("frame %d from %s skipped: %s", frame.number, frame.source, exc)
                    break
                if not self._hand_over(work, Work(frame.number, frame.source, prepared, region)):
                    return
        self._put(work, None)

    def _hand_over(self, work: queue.Queue[Work | None], item: Work) -> bool:
        """Queue a frame (or one region of it) for inference; False once stopping."""
        source = self.source
        if source is None or not source.live:
            return self._put(work, item)
        while True:  # the newest frame wins; a stale one is dropped and counted
            try:
                work.put_nowait(item)
                return True
            except queue.Full:
                try:
                    work.get_nowait()
                    self.stats.frames_dropped += 1
                except queue.Empty:
                    pass

    def _put(self, q: queue.Queue[Any], item: object) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _infer(
        self, engine: Engine, work: queue.Queue[Work | None], results: queue.Queue[Result | None]
    ) -> None:
        """Keeps up to ``engine.depth`` frames in flight (two in a worker process, so it
        starts the next frame while this thread reads the last result), in order."""
        pending: deque[Work] = deque()
        ended = False
        while not self.stop.is_set():
            while not ended and len(pending) < engine.depth:
                try:  # wait for a frame only when none is in flight
                    item = work.get_nowait() if pending else work.get(timeout=0.2)
                except queue.Empty:
                    break
                if item is None:
                    ended = True
                    break
                try:
                    engine.submit(item.input)
                except (RuntimeError, ValueError) as exc:
                    self._lost(item, exc)
                    continue
                pending.append(item)
            if not pending:
                if ended:
                    self._put(results, None)
                    return
                continue
            item = pending.popleft()
            try:
                outcome = engine.collect()
            except (RuntimeError, ValueError) as exc:
                self._lost(item, exc)
                continue
            self.stats.record_inference(outcome.ms)
            self._put(results, Result(item.number, item.source, outcome, item.region))
            if self.max_frames is not None and self.stats.frames_processed >= self._limit():
                self._put(results, None)
                return

    def _limit(self) -> int:
        """``max_frames`` counts frames; each region of a frame is one inference."""
        assert self.max_frames is not None
        return self.max_frames * max(1, len(self.cfg.capture.regions))

    def _lost(self, item: Work, exc: Exception) -> None:
        self.stats.frames_lost += 1
        log.error("inference failed on frame %d: %s", item.number, exc)

    def _publish(self, publisher: Publisher, results: queue.Queue[Result | None]) -> None:
        cfg = self.cfg
        engine = self.engine
        assert engine is not None
        policies: dict[str | None, PublishPolicy] = {}  # one per region
        while not self.stop.is_set():
            try:
                item = results.get(timeout=0.2)
            except queue.Empty:
                publisher.poll()  # e.g. send what waited for a reconnect
                continue
            if item is None:
                log.info(
                    "frame source finished" if self.max_frames is None else "frame limit reached"
                )
                self.stop.set()
                return
            outcome = item.outcome
            if not self.notifier.ready_sent:
                self.notifier.ready(self._status_line())
            if self.collector is not None:
                self.collector.offer(item.number, item.source, outcome.classification)
            policy = policies.get(item.region)
            if policy is None:
                policy = policies[item.region] = PublishPolicy(
                    cfg.publish.policy,
                    cfg.publish.interval_s,
                    cfg.publish.min_score,
                    cfg.publish.confirm_frames,
                )
            if not policy.should_publish(outcome.classification, time.monotonic()):
                continue
            self._seq += 1
            event = build_event(
                device=cfg.device.id,
                seq=self._seq,
                frame=item.number,
                source=item.source,
                result=outcome.classification,
                model=engine.model.name,
                backend=outcome.backend,
                inference_ms=outcome.ms,
                region=item.region,
                confirmed_label=policy.confirmed,
            )
            publisher.publish(Suffix.EVENTS, event.to_json(), qos=cfg.mqtt.qos)
            self.stats.events_published += 1

    def _status_line(self) -> str:
        engine = self.engine
        name = engine.model.name if engine else "?"
        backend = engine.backend.name if engine else "?"
        return f"backend={backend} model={name} fps={self.stats.fps():.1f}"

    def _health(self, publisher: Publisher) -> None:
        interval = self.cfg.health.interval_s
        wd = self.notifier.watchdog_s
        tick = min(interval, wd / 2) if wd else interval
        if self.source is not None and self.source.stall_s is not None:
            tick = min(tick, 0.5)  # a source's state change is published at once
        next_health = time.monotonic()
        state = None
        while True:
            now = time.monotonic()
            if wd and self.stats.idle_for() < self._stall_s():
                self.notifier.watchdog()
            was, state = state, self.source.status().get("source_state") if self.source else None
            if now >= next_health or state != was:
                self._publish_health(publisher)
                self.notifier.status(self._status_line())
                next_health = now + interval
            if self.stop.wait(min(tick, max(0.05, next_health - time.monotonic()))):
                return

    def _stall_s(self) -> float:
        """No frame for this long stops the watchdog pings.  A source that reconnects by
        itself may be away for its own, longer ``stall_s`` first."""
        own = self.source.stall_s if self.source is not None else None
        return max(self.cfg.health.stall_s, own or 0.0)

    def health_payload(self, publisher: Publisher) -> Health:
        source = self.source
        return self.health.report(
            self.engine, publisher, source.skipped if source else 0, source=source
        )

    def _publish_health(self, publisher: Publisher) -> None:
        payload = self.health_payload(publisher).to_json()
        publisher.publish(Suffix.HEALTH, payload, qos=1, retain=True)
