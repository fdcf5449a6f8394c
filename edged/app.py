"""Wires the stages together: capture+preprocess -> infer -> classify -> publish, with health
and the watchdog beside them.  One stop event ends every thread.  Nothing here formats a
message or decides a policy: those live in their stage (``publish/``, ``health/``,
``wire.py``) and in the :class:`~edged.engine.Engine`."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from edged import __version__
from edged.capture import FrameSource, open_source
from edged.capture.regions import regions_of
from edged.capture.static import StaticScene
from edged.classify import Classifier
from edged.config import Config, ModelConfig, read_secret
from edged.control.live import LastResult, Live
from edged.control.reload import load_checked
from edged.control.remote import Remote
from edged.control.request import CommandError
from edged.engine import Engine, Result, Work, open_engine
from edged.handoff import Empty, Handoff
from edged.health import Notifier, Stats
from edged.health.report import HealthReporter
from edged.health.system import ProcessMeter
from edged.infer.base import Inference
from edged.logsetup import set_context
from edged.preprocess.image import ImageError
from edged.publish import MqttPublisher, Publisher
from edged.publish.collect import Collector
from edged.publish.events import PublishPolicy, classified_fields, event_json
from edged.wire import HEALTH_FIELDS, Health, State, Suffix

log = logging.getLogger(__name__)

STOP_S = 1.2  # SIGTERM to exit, whatever the broker does (bench/stop.py)


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
        self.run_id = str(uuid.uuid4())  # in every event and health report of this run
        self.health = HealthReporter(cfg.device.id, self.stats, self.run_id)
        self.exit_code = 0
        self.engine: Engine | None = None
        self.source: FrameSource | None = None
        self._publisher = publisher
        self.live = Live(cfg)
        self.remote: Remote | None = None
        self._next_engine: Engine | None = None  # handed from a reload to the infer thread
        self._swapped = threading.Condition()
        self.collector: Collector | None = None

    # -- setup ---------------------------------------------------------------------------
    def _open(self) -> tuple[Engine, FrameSource, Publisher]:
        """Engine, source and publisher, in that order; a failure at any step closes what
        the earlier steps opened (no worker process or shared memory is left behind)."""
        with contextlib.ExitStack() as stack:
            engine = open_engine(self.cfg.model, self.cfg.classify)
            stack.callback(engine.close)
            source = open_source(
                self.cfg.capture, engine.capture_size(), engine.framing(), wait=True
            )
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
        return Path(state) / "events.db" if state else None

    def run(self) -> int:
        engine, source, publisher = self._open()
        self.engine, self.source, self._publisher = engine, source, publisher
        set_context(device=self.cfg.device.id, model=engine.model.name, backend=engine.backend.name)
        log.info(
            "edged %s: device %s, run %s, model %s (sha256 %s…), backend %s, source %s",
            __version__,
            self.cfg.device.id,
            self.run_id,
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
        work: Handoff[Work | None] = Handoff(self.cfg.pipeline.queue_size * parts)
        remote = Remote(
            self.cfg,
            self.live,
            publisher,
            self,
            health=functools.partial(self.health_payload, publisher, ProcessMeter()),
            healthy=self._flowing,
        )
        remote.attach()
        try:
            remote.start(self.stop)
        except BaseException:
            source.close()
            engine.close()
            raise
        self.remote = remote
        publisher.start()
        publishing = _Publishing(self, publisher)
        spare = spare_core(self.cfg.model.num_threads)
        sink: _Sink = _Beside(publishing) if spare else publishing
        log.debug(
            "results are classified and published %s",
            "beside the next invoke (a core is spare)" if spare else "by the infer thread",
        )
        threads = [
            threading.Thread(
                target=self._guard,
                args=(self._capture, source, engine, work),
                name="edged-capture",
                daemon=True,
            ),
            threading.Thread(
                target=self._guard,
                args=(self._infer, engine, work, sink),
                name="edged-infer",
                daemon=True,
            ),
            *([sink.thread(self._guard)] if isinstance(sink, _Beside) else []),
            threading.Thread(
                target=self._guard, args=(self._health, publisher), name="edged-health", daemon=True
            ),
        ]
        # what start-up built lives as long as the daemon: collected once, then frozen, so
        # that no later collection visits it again
        gc.collect()
        gc.freeze()
        for t in threads:
            t.start()
        if source.stall_s is not None or source.absent() is not None:
            # a camera that is away at start is waited for: the service is up meanwhile
            self.notifier.ready(self._status_line())
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self._shut_down(threads, source, engine, publisher)
        return self.exit_code

    def _shut_down(
        self,
        threads: list[threading.Thread],
        source: FrameSource,
        engine: Engine,
        publisher: Publisher,
    ) -> None:
        """Within STOP_S (1.2 s): the stages finish what they hold (every classified frame
        becomes an event or is counted), the publisher delivers what the broker acknowledges
        in time and keeps the rest in its spool."""
        deadline = time.monotonic() + STOP_S
        self.stop.set()
        self.notifier.stopping()
        for t in threads:  # in pipeline order: each drains into the next
            t.join(timeout=max(0.05, deadline - 0.8 - time.monotonic()))
        source.close()
        if self.remote is not None:
            self.remote.close()
        # the whole window, however slowly the broker acknowledges: the last health then
        # counts every event it took (a frozen broker still ends this at the deadline)
        window = deadline - 0.4 - time.monotonic()
        publisher.flush(window, stall=max(0.3, window))
        self._publish_health(publisher)
        publisher.stop(timeout=max(0.2, deadline - 0.1 - time.monotonic()))
        (self.engine or engine).close()  # a reload may have swapped it
        if self.max_frames is not None and publisher.lost_events:
            # a bounded run is a job with a result: events that went nowhere fail it
            log.error(
                "%d event(s) were neither delivered nor kept (set mqtt.spool_file to keep "
                "them for the next start)",
                publisher.lost_events,
            )
            self.exit_code = self.exit_code or 1
        stats = self.stats
        log.info(
            "stopped: %d frames processed (%d dropped, %d lost, %d skipped inputs); %d events "
            "(%d acknowledged, %d waiting in the spool, %d evicted, %d given up), %d held back "
            "by the publish policy",
            stats.frames_processed,
            stats.frames_dropped,
            stats.frames_lost,
            source.skipped,
            stats.events_created,
            publisher.published,
            publisher.backlog,
            publisher.evicted,
            publisher.dropped,
            stats.events_filtered,
        )

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s failed; stopping", threading.current_thread().name)
            self.exit_code = 1
            self.stop.set()

    # -- stages --------------------------------------------------------------------------
    def _capture(self, source: FrameSource, engine: Engine, work: Handoff[Work | None]) -> None:
        cfg = self.cfg.capture
        static = StaticScene(cfg.static_threshold, cfg.static_max_s) if cfg.skip_static else None
        # regions the CPU crops; a source that crops on the device names its one region
        crops = [] if source.cropped_region else regions_of(cfg.regions)
        for frame in source.frames(self.stop):
            self.stats.frames_captured += 1
            self.live.frame = frame  # what the status page and a snapshot show
            if static is not None and not static.changed(frame.image):
                self.stats.record_static()
                continue
            if self.collector is not None:
                self.collector.hold(frame.number, frame.image)
            engine = self.engine or engine  # the model now running (a reload swaps it)
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
                item = Work(frame.number, frame.source, prepared, region=region, image=image)
                if not self._hand_over(source, work, item):
                    return
        self._put(work, None)

    def _hand_over(self, source: FrameSource, work: Handoff[Work | None], item: Work) -> bool:
        """Queue a frame (or one region of it) for inference; False once stopping."""
        if not source.live:
            return self._put(work, item)
        # the newest frame wins; a stale one is dropped and counted
        self.stats.frames_dropped += work.put_newest(item)
        return True

    def _put(self, work: Handoff[Work | None], item: Work | None) -> bool:
        while not self.stop.is_set():
            if work.put(item, timeout=0.2):
                return True
        return False

    def _infer(self, engine: Engine, work: Handoff[Work | None], publishing: _Sink) -> None:
        """Keeps up to ``engine.depth`` frames in flight (two in a worker process, so it
        starts the next frame while this thread reads the last result), in order, and hands
        each result on as it comes (see :class:`_Publishing` and :class:`_Beside`)."""
        try:
            self._infer_frames(engine, work, publishing)
        finally:
            publishing.end()

    def _infer_frames(self, engine: Engine, work: Handoff[Work | None], publishing: _Sink) -> None:
        pending: deque[Work] = deque()
        ended = False
        while not self.stop.is_set() or pending:  # at stop, the frames in flight finish
            if self._next_engine is not None:
                engine = self._swap(engine, pending, publishing)
            while not ended and not self.stop.is_set() and len(pending) < engine.depth:
                try:  # wait for a frame only when none is in flight
                    item = work.get_nowait() if pending else work.get(timeout=0.2)
                except Empty:
                    break
                if item is None:
                    ended = True
                    break
                if self.live.paused.is_set():
                    continue  # paused: frames still reach the status page, none is classified
                try:
                    if item.input.spec != engine.backend.input_spec and item.image is not None:
                        item = Work(item.number, item.source, engine.prepare(item.image))
                    engine.submit(item.input)
                except (RuntimeError, ValueError) as exc:
                    self._lost(item, exc)
                    continue
                pending.append(item)
            if not pending:
                if ended:
                    publishing.finished("frame source finished")
                    return
                continue
            self._collect(engine, pending.popleft(), publishing)
            if self.max_frames is not None and self.stats.frames_processed >= self._limit():
                publishing.finished("frame limit reached")
                return

    def _limit(self) -> int:
        """``max_frames`` counts frames; each region of a frame is one inference."""
        assert self.max_frames is not None
        return self.max_frames * max(1, len(self.cfg.capture.regions))

    def _collect(self, engine: Engine, item: Work, publishing: _Sink) -> None:
        try:
            inference = engine.collect_raw()
        except (RuntimeError, ValueError) as exc:
            self._lost(item, exc)
            return
        self.stats.record_inference(inference.ms)
        metrics = self.remote.metrics if self.remote else None
        if metrics is not None:
            metrics.observe_inference(inference.ms)
        publishing.result(item, inference, engine)

    def _swap(self, engine: Engine, pending: deque[Work], publishing: _Sink) -> Engine:
        """In the infer thread, between frames: finish the frames in flight on the old
        model (none is lost, events keep their order), then run the new one."""
        while pending:
            self._collect(engine, pending.popleft(), publishing)
        with self._swapped:
            new, self._next_engine = self._next_engine, None
            assert new is not None
            self.engine = new
            self._swapped.notify_all()
        engine.close()
        set_context(model=new.model.name, backend=new.backend.name)
        log.info("model %s (%s) now running", new.model.name, new.backend.name)
        return new

    def _lost(self, item: Work, exc: Exception) -> None:
        self.stats.frames_lost += 1
        log.error("inference failed on frame %d: %s", item.number, exc)

    def _status_line(self) -> str:
        engine = self.engine
        name = engine.model.name if engine else "?"
        backend = engine.backend.name if engine else "?"
        line = f"backend={backend} model={name} fps={self.stats.fps():.1f}"
        missing = self.source.absent() if self.source is not None else None
        return f"{line}; waiting: {missing}" if missing else line

    def _health(self, publisher: Publisher) -> None:
        interval = self.cfg.health.interval_s
        wd = self.notifier.watchdog_s
        stall = self._stall_s()
        tick = min(interval, wd / 2, stall / 2) if wd else min(interval, stall / 2)
        if self.source is not None and self.source.stall_s is not None:
            tick = min(tick, 0.5)  # a source's state change is published at once
        next_health = time.monotonic()
        state = None
        while True:
            now = time.monotonic()
            if not self.notifier.ready_sent and self.stats.uptime_s() >= stall:
                # Started, but no frame classified: systemd's start must not hang on a source
                # that delivers nothing; the watchdog and the health gate judge the frames.
                log.warning("no frame classified %g s after start; reporting ready", stall)
                self.notifier.ready(self._status_line())
            if wd and self._flowing():
                self.notifier.watchdog()
            was, state = (
                state,
                self.source.status().get(HEALTH_FIELDS.source_state) if self.source else None,
            )
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

    def _flowing(self) -> bool:
        """Frames flow (or classification is paused on purpose, or the source waits for a
        device that is not there, which no restart brings): the watchdog's test."""
        if self.live.paused.is_set() or self.stats.idle_for() < self._stall_s():
            return True
        return self.source is not None and self.source.absent() is not None

    def health_payload(self, publisher: Publisher, process: ProcessMeter | None = None) -> Health:
        """``process``: a reader's own meter (the status page, metrics), so that
        its cpu_percent window does not cut the health topic's."""
        source = self.source
        return self.health.report(
            self.engine,
            publisher,
            source.skipped if source else 0,
            source=source,
            state=self._health_state(),
            source_live=source.live if source else None,
            paused=self.live.paused.is_set(),
            process=process,
        )

    def _health_state(self) -> str:
        if self.exit_code:
            return "fault"
        if self.stats.last_frame_at is None:
            return "starting"
        live = self.source is not None and self.source.live
        return "stalled" if live and not self._flowing() else "ok"

    def _publish_health(self, publisher: Publisher) -> None:
        payload = self.health_payload(publisher).to_json()
        publisher.publish(Suffix.HEALTH, payload, retain=True)

    # -- commands (edged.control.controller.Target) ---------------------------------------
    def effective_config(self) -> Config:
        return self.live.settings

    def apply_settings(self, sections: dict[str, BaseModel]) -> None:
        """New ``classify`` / ``publish`` sections, validated; they take effect from the
        next frame and last until the daemon stops."""
        settings = self.live.settings.model_copy(update=sections)
        engine = self.engine
        if "classify" in sections and engine is not None:
            engine.classifier = Classifier(engine.labels, settings.classify)
        self.live.settings = settings

    def set_paused(self, paused: bool) -> bool:
        was = self.live.paused.is_set()
        if paused:
            self.live.paused.set()
        else:
            self.live.paused.clear()
        if was != paused:
            log.info("classification %s", "paused" if paused else "resumed")
        return was

    def snapshot(self) -> tuple[bytes, State | None] | None:
        frame, last = self.live.frame, self.live.last
        if frame is None:
            return None
        from edged.web.overlay import encode_jpeg  # Pillow's JPEG encoder, on demand

        return encode_jpeg(frame.image), None if last is None else self._ha_state(last)

    def _ha_state(self, last: LastResult, confirmed: str | None = None) -> State:
        outcome = last.result.outcome
        return State(
            device=self.cfg.device.id,
            ts=last.ts,
            frame=last.result.number,
            region=last.result.region,
            confirmed_label=confirmed,
            **classified_fields(
                outcome.classification,
                model=last.result.model,
                backend=outcome.backend,
                inference_ms=outcome.ms,
            ),
        )

    def reload_model(self, model: ModelConfig, timeout: float = 30.0) -> dict[str, Any]:
        """Load ``model`` beside the running one, classify a test frame with it, and only
        then hand it to the infer thread, which swaps between two frames."""
        frame = self.live.frame
        engine, check = load_checked(
            model, self.live.settings.classify, None if frame is None else frame.image
        )
        with self._swapped:
            self._next_engine = engine
            self._swapped.wait_for(lambda: self._next_engine is None or self.stop.is_set(), timeout)
            if self._next_engine is engine:  # the pipeline ended or is stuck
                self._next_engine = None
                engine.close()
                raise CommandError("the pipeline did not take the new model; the old one stays")
        self.live.settings = self.live.settings.model_copy(update={"model": engine.cfg})
        top = check.top1
        return {
            "model": engine.model.name,
            "sha256": engine.model.sha256,
            "backend": engine.backend.name,
            "test_label": top.label if top else None,
        }


class _Publishing:
    """The publish stage, run on each result as it comes: the policy per region, Home
    Assistant's state, the collector, and the event handed to the publisher (which only
    appends it to its spool: the broker is never waited for here).  The infer thread runs it
    itself where the interpreter takes every core; elsewhere :class:`_Beside` runs it."""

    def __init__(self, daemon: Daemon, publisher: Publisher) -> None:
        self.daemon = daemon
        self.publisher = publisher
        self.settings = daemon.live.settings.publish
        self.policies: dict[str | None, PublishPolicy] = {}  # one per region
        self.ha = daemon.remote.homeassistant if daemon.remote else None

    def finished(self, why: str) -> None:
        log.info("%s", why)
        self.daemon.stop.set()

    def end(self) -> None:
        """No more results (nothing to do: each was published when it came)."""

    def result(self, item: Work, inference: Inference, engine: Engine) -> None:
        """Classify a frame's raw output and publish it."""
        try:
            outcome = engine.classify(inference)
        except (RuntimeError, ValueError) as exc:
            self.daemon._lost(item, exc)
            return
        self(Result(item.number, item.source, outcome, item.region, engine.model.name))

    def __call__(self, item: Result) -> None:
        daemon = self.daemon
        outcome = item.outcome
        if not daemon.notifier.ready_sent:
            daemon.notifier.ready(daemon._status_line())
        now = time.monotonic()
        last = LastResult(item, time.time())
        daemon.live.last = last
        if daemon.collector is not None:
            daemon.collector.offer(item.number, item.source, outcome.classification)
        settings = daemon.live.settings.publish
        if settings is not self.settings:  # changed by a `set` command
            self.settings = settings
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
            item.region or "", policy.confirmed, outcome.classification.ambiguous, now
        ):  # Home Assistant's state follows the confirmed label, region by region
            ha.publish_state(daemon._ha_state(last, policy.confirmed))
        stats = daemon.stats
        if not publish:
            stats.events_filtered += 1
            return
        stats.events_created += 1
        payload = event_json(
            device=daemon.cfg.device.id,
            run_id=daemon.run_id,
            seq=stats.events_created,
            frame=item.number,
            source=item.source,
            result=outcome.classification,
            model=item.model,
            backend=outcome.backend,
            inference_ms=outcome.ms,
            region=item.region,
            confirmed_label=policy.confirmed,
        )
        self.publisher.publish(Suffix.EVENTS, payload)
        log.debug("event seq %d (frame %d) spooled", stats.events_created, item.number)


def spare_core(interpreter_threads: int) -> bool:
    """Whether this process may use more cores than the interpreter's threads take."""
    return len(os.sched_getaffinity(0)) > interpreter_threads


class _Beside:
    """Classification and the publish stage in a thread of their own (``edged-publish``),
    beside the next ``invoke()``: used where the interpreter's threads leave a core free, so
    that the infer thread returns to the model as soon as it has read the output.  Where
    they take every core, :class:`_Publishing` runs in the infer thread instead (a thread
    beside would only compete with the interpreter's).  Results keep their order; none is
    dropped: the infer thread waits while ``SLOTS`` results wait here."""

    SLOTS = 4

    def __init__(self, publishing: _Publishing) -> None:
        self.publishing = publishing
        self._results: Handoff[tuple[Work, Inference, Engine] | None] = Handoff(self.SLOTS)
        self._thread: threading.Thread | None = None

    def thread(self, guard: Callable[..., None]) -> threading.Thread:
        self._thread = threading.Thread(
            target=guard, args=(self._run,), name="edged-publish", daemon=True
        )
        return self._thread

    def finished(self, why: str) -> None:
        self.publishing.finished(why)

    def result(self, item: Work, inference: Inference, engine: Engine) -> None:
        self._put((item, inference, engine))

    def end(self) -> None:
        """No more results: the thread ends once it has published those it holds."""
        self._put(None)

    def _put(self, entry: tuple[Work, Inference, Engine] | None) -> None:
        while not self._results.put(entry, timeout=0.2):
            if self._thread is None or not self._thread.is_alive():
                if entry is None:
                    return
                raise RuntimeError("the publish thread has stopped")

    def _run(self) -> None:
        while (entry := self._results.get()) is not None:
            self.publishing.result(*entry)


_Sink = _Publishing | _Beside
