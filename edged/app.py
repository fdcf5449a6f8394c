"""The device-level wiring: opens the shared inference stages (one per model), each
camera's pipeline, the publisher and remote operation, starts their threads, and stops
them within ``STOP_S``.  Nothing here formats a message or decides a policy: a camera's
pipeline is in ``pipeline/camera.py``, the shared inference stage in
``pipeline/inference.py``, the publish stage in ``pipeline/publishing.py``, health in
``health/``, payloads in ``wire.py``.

    capture/preprocess (one thread per camera) -> lanes (round-robin, newest wins)
        -> inference stage (one thread per interpreter, per model) -> publish stage
        -> publisher (spool, MQTT);  health and the watchdog beside them.

One stop event ends every thread."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edged import __version__
from edged.capture import FrameSource, open_source
from edged.config import Camera, Config, ModelConfig, read_secret
from edged.control.live import Live
from edged.control.reload import load_checked
from edged.control.remote import Remote
from edged.control.request import CommandError
from edged.engine import Engine, cpu_model
from edged.health import Notifier, Stats
from edged.health.report import HealthReporter
from edged.health.stats import StatsTotal
from edged.health.system import ProcessMeter
from edged.logsetup import set_context
from edged.pipeline.camera import CameraPipeline
from edged.pipeline.inference import InferenceStage, Sink, inline, open_stage_engines
from edged.pipeline.publishing import Beside, Publishing, spare_core
from edged.publish import MqttPublisher, Publisher
from edged.publish.collect import Collector
from edged.wire import HEALTH_FIELDS, Health, State, Suffix

log = logging.getLogger(__name__)

STOP_S = 1.2  # SIGTERM to exit, whatever the broker does (bench/stop.py)


class Daemon:
    """The edged daemon.  ``run()`` blocks until the stop event is set, every camera's
    source ends or each camera has classified ``max_frames`` frames; it returns the exit
    code."""

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
        self.camera_cfgs: list[Camera] = cfg.camera_list()
        self.multi = bool(cfg.cameras)  # [[cameras]]: per-camera topics and health
        self.camera_stats = [Stats() for _ in self.camera_cfgs]
        self.stats: Stats | StatsTotal = (
            StatsTotal(self.camera_stats) if self.multi else self.camera_stats[0]
        )
        self.run_id = str(uuid.uuid4())  # in every event and health report of this run
        self.health = HealthReporter(cfg.device.id, self.stats, self.run_id)
        self.exit_code = 0
        self._publisher = publisher
        self.live = Live(cfg, tuple(c.name for c in self.camera_cfgs))
        self.remote: Remote | None = None
        self.stages: dict[str, InferenceStage] = {}  # by model name ("" = [model])
        self.cameras: list[CameraPipeline] = []
        self._finished: set[str] = set()

    # -- what the rest of edged reads -------------------------------------------------------
    @property
    def engine(self) -> Engine | None:
        """The engine of [model] (or of the first camera's model)."""
        stage = self.stages.get("") or next(iter(self.stages.values()), None)
        return stage.engine if stage else None

    @property
    def source(self) -> FrameSource | None:
        return self.cameras[0].source if self.cameras else None

    # -- setup ------------------------------------------------------------------------------
    def _open(self, stack: contextlib.ExitStack) -> Publisher:
        """Stages, then sources, then the publisher; ``stack`` closes what opened when a
        later step fails (no worker process or shared memory is left behind)."""
        uses: dict[str, int] = {}
        for cam in self.camera_cfgs:
            names = {cam.model_name} | {r.model for r in cam.capture.regions if r.model}
            for name in names:
                uses[name] = uses.get(name, 0) + 1
        for name, count in uses.items():
            # an AI camera's CPU twin, for the one camera of [capture]
            model = cpu_model(self.cfg) if not name and not self.multi else self.cfg.model_for(name)
            engines = open_stage_engines(model, self.cfg.classify, count)
            stage = InferenceStage(name, engines, self.stop, self.live.paused, self._stage_finished)
            stack.callback(stage.close)
            self.stages[name] = stage
        sources = []
        for cam in self.camera_cfgs:
            engine = self.stages[cam.model_name].engine
            source = open_source(cam.capture, engine.capture_size(), engine.framing(), wait=True)
            stack.callback(source.close)
            sources.append(source)
        publisher = self._publisher
        if publisher is None:
            password = read_secret(self.cfg.mqtt.password_file, "mqtt_password")
            publisher = MqttPublisher(
                self.cfg.mqtt, self.cfg.device.id, password, spool_path=self._spool_path()
            )
        for cam, stats, source in zip(self.camera_cfgs, self.camera_stats, sources, strict=True):
            main = self.stages[cam.model_name]
            engine = main.engine
            stages: dict[str | None, InferenceStage] = {None: main}
            stages.update({r.name: self.stages[r.model] for r in cam.capture.regions if r.model})
            collector = None
            if cam.collect.dir:  # window: frames queued, in the backend, being published
                window = 2 * (self.cfg.pipeline.queue_size + engine.depth) + 8
                collector = Collector(
                    cam.collect, self.cfg.device.id, engine.model.name, window=window
                )
            live = self.live.camera(cam.name)
            publishing = Publishing(
                camera=cam.name,
                device=self.cfg.device.id,
                run_id=self.run_id,
                stats=stats,
                live=live,
                publisher=publisher,
                notifier=self.notifier,
                classify=cam.classify,
                publish=cam.publish,
                collector=collector,
                status_line=self._status_line,
            )
            pipeline = CameraPipeline(
                cam,
                source,
                stages,
                publishing,
                live,
                stats,
                health_stall_s=self.cfg.health.stall_s,
                max_frames=self.max_frames,
            )
            pipeline.attach(self.cfg.pipeline.queue_size)
            self.cameras.append(pipeline)
        return publisher

    def _spool_path(self) -> Path | None:
        if self.cfg.mqtt.spool_file:
            return Path(self.cfg.mqtt.spool_file)
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state) / "events.db" if state else None

    def run(self) -> int:
        with contextlib.ExitStack() as stack:
            publisher = self._open(stack)
            self._publisher = publisher
            self._log_start()
            remote = Remote(
                self.cfg,
                self.live,
                publisher,
                self,
                health=functools.partial(self.health_payload, publisher, ProcessMeter()),
                healthy=self._flowing,
            )
            remote.attach()
            remote.start(self.stop)
            cleanup = stack.pop_all()  # _shut_down closes them from here
        self.remote = remote
        for cam in self.cameras:
            cam.publishing.ha = remote.homeassistant
            if remote.metrics is not None:
                cam.observe = remote.metrics.observe_inference
        publisher.start()
        threads, beside = self._threads(publisher)
        # what start-up built lives as long as the daemon: collected once, then frozen, so
        # that no later collection visits it again
        gc.collect()
        gc.freeze()
        for t in threads:
            t.start()
        if any(c.source.stall_s is not None or c.source.absent() for c in self.cameras):
            # a camera that is away at start is waited for: the service is up meanwhile
            self.notifier.ready(self._status_line())
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self._shut_down(threads, beside, publisher, cleanup)
        return self.exit_code

    def _log_start(self) -> None:
        engine = self.engine
        assert engine is not None
        set_context(device=self.cfg.device.id, model=engine.model.name, backend=engine.backend.name)
        for stage in self.stages.values():
            e = stage.engine
            log.info(
                "edged %s: device %s, run %s, model %s (sha256 %s…), backend %s%s",
                __version__,
                self.cfg.device.id,
                self.run_id,
                e.model.name,
                e.model.sha256[:12],
                e.backend.name,
                f", {len(stage.engines)} interpreters" if len(stage.engines) > 1 else "",
            )
            if e.fallback_reason:
                log.warning("inference falls back to %s: %s", e.backend.name, e.fallback_reason)
        for cam in self.cameras:
            where = f"camera {cam.camera.name}: " if cam.camera.name else ""
            log.info("%ssource %s", where, cam.source.describe())

    def _threads(self, publisher: Publisher) -> tuple[list[threading.Thread], Beside | None]:
        """Capture threads, interpreter threads, the publish thread where a core is spare,
        and the health thread: started, and joined at stop, in this order."""
        multi = self.multi
        interpreters = sum(len(s.engines) for s in self.stages.values())
        threads_each = max(s.engine.cfg.num_threads for s in self.stages.values())
        # beside the interpreter: with one interpreter and a core it leaves free (a camera's
        # results must come one at a time, which one publish thread keeps so)
        beside = Beside() if interpreters == 1 and spare_core(threads_each) else None
        sink: Sink = beside if beside is not None else inline
        log.debug(
            "results are classified and published %s",
            "beside the next invoke (a core is spare)" if beside else "by the infer thread",
        )
        threads = [
            threading.Thread(
                target=self._camera_guard,
                args=(cam,),
                name=f"edged-capture-{cam.key}" if multi else "edged-capture",
                daemon=True,
            )
            for cam in self.cameras
        ]
        for stage in self.stages.values():
            for i in range(len(stage.engines)):
                name = "edged-infer" if interpreters == 1 else f"edged-infer-{stage.name}{i}"
                threads.append(
                    threading.Thread(
                        target=self._guard,
                        args=(self._infer, stage, i, sink, beside),
                        name=name,
                        daemon=True,
                    )
                )
        if beside is not None:
            threads.append(beside.thread(self._guard))
        threads.append(
            threading.Thread(
                target=self._guard, args=(self._health, publisher), name="edged-health", daemon=True
            )
        )
        return threads, beside

    def _infer(self, stage: InferenceStage, index: int, sink: Sink, beside: Beside | None) -> None:
        try:
            stage.run(index, sink)
        finally:
            if beside is not None:
                beside.end()

    def _stage_finished(self, stage: str, why: str) -> None:
        """A stage's lanes have all ended: once every stage has, the daemon stops."""
        self._finished.add(stage)
        if self._finished >= set(self.stages):
            log.info("%s", why)
            self.stop.set()

    def _shut_down(
        self,
        threads: list[threading.Thread],
        beside: Beside | None,
        publisher: Publisher,
        cleanup: contextlib.ExitStack,
    ) -> None:
        """Within STOP_S (1.2 s): the stages finish what they hold (every classified frame
        becomes an event or is counted), the publisher delivers what the broker acknowledges
        in time and keeps the rest in its spool."""
        deadline = time.monotonic() + STOP_S
        self.stop.set()
        self.notifier.stopping()
        for t in threads:  # in pipeline order: each drains into the next
            t.join(timeout=max(0.05, deadline - 0.8 - time.monotonic()))
        for cam in self.cameras:
            cam.source.close()
        if self.remote is not None:
            self.remote.close()
        # the whole window, however slowly the broker acknowledges: the last health then
        # counts every event it took (a frozen broker still ends this at the deadline)
        window = deadline - 0.4 - time.monotonic()
        publisher.flush(window, stall=max(0.3, window))
        self._publish_health(publisher)
        publisher.stop(timeout=max(0.2, deadline - 0.1 - time.monotonic()))
        cleanup.close()  # the stages' engines (a reload may have swapped them)
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
            sum(c.source.skipped for c in self.cameras),
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

    def _camera_guard(self, cam: CameraPipeline) -> None:
        """A camera's capture thread: its failure marks that camera down; the daemon
        stops (exit 1) only when every camera has failed."""
        try:
            cam.capture(self.stop)
        except Exception as exc:
            cam.fail(exc)
            if all(c.error is not None for c in self.cameras):
                log.exception("%s failed; stopping", threading.current_thread().name)
                self.exit_code = 1
                self.stop.set()
            else:
                log.exception("camera %s failed; the other cameras go on", cam.camera.label)

    # -- health and the watchdog ---------------------------------------------------------
    def _status_line(self) -> str:
        engine = self.engine
        name = engine.model.name if engine else "?"
        backend = engine.backend.name if engine else "?"
        line = f"backend={backend} model={name} fps={self.stats.fps():.1f}"
        sensor = self.source.status().get(HEALTH_FIELDS.sensor) if self.source else None
        if sensor and not self.multi:
            line += f" sensor={sensor}"
        if self.multi and self.cameras:
            up = sum(c.flowing() for c in self.cameras)
            line += f" cameras={up}/{len(self.cameras)}"
        waiting = [(c.camera.label, m) for c in self.cameras if (m := c.source.absent())]
        if waiting and not self.multi:
            line += f"; waiting: {waiting[0][1]}"
        elif waiting:
            line += "; waiting: " + "; ".join(f"{name}: {m}" for name, m in waiting)
        return line

    def _health(self, publisher: Publisher) -> None:
        interval = self.cfg.health.interval_s
        wd = self.notifier.watchdog_s
        stall = self._stall_s()
        tick = min(interval, wd / 2, stall / 2) if wd else min(interval, stall / 2)
        if any(c.source.stall_s is not None for c in self.cameras):
            tick = min(tick, 0.5)  # a source's state change is published at once
        next_health = time.monotonic()
        state = None
        while True:
            now = time.monotonic()
            if not self.notifier.ready_sent and any(c.source.progressing() for c in self.cameras):
                # a camera loading its network (minutes, the first time): up, and saying so
                self.notifier.ready(self._status_line())
            if not self.notifier.ready_sent and self.stats.uptime_s() >= stall:
                # Started, but no frame classified: systemd's start must not hang on a source
                # that delivers nothing; the watchdog and the health gate judge the frames.
                log.warning("no frame classified %g s after start; reporting ready", stall)
                self.notifier.ready(self._status_line())
            if wd and self._flowing():
                self.notifier.watchdog()
            was = state
            state = tuple((c.source_state(), c.error) for c in self.cameras)
            if now >= next_health or state != was:
                self._publish_health(publisher)
                self.notifier.status(self._status_line())
                next_health = now + interval
            if self.stop.wait(min(tick, max(0.05, next_health - time.monotonic()))):
                return

    def _stall_s(self) -> float:
        """No frame for this long stops the watchdog pings (the longest a camera may be
        away by its own ``stall_s``)."""
        return max((c.stall_s for c in self.cameras), default=self.cfg.health.stall_s)

    def _flowing(self) -> bool:
        """Frames flow from at least one camera (or classification is paused on purpose,
        or a camera waits for a device that is not there, which no restart brings): the
        watchdog's test.  A device judges by its healthy cameras; with every camera down it
        is unhealthy."""
        if self.live.paused.is_set():
            return True
        if not self.cameras:
            return self.stats.idle_for() < self.cfg.health.stall_s
        return any(c.flowing() or c.source.absent() is not None for c in self.cameras)

    def health_payload(self, publisher: Publisher, process: ProcessMeter | None = None) -> Health:
        """``process``: a reader's own meter (the status page, metrics), so that
        its cpu_percent window does not cut the health topic's."""
        if not self.multi:
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
        return self.health.report(
            self.engine,
            publisher,
            sum(c.source.skipped for c in self.cameras),
            state=self._health_state(),
            source_live=any(c.source.live for c in self.cameras),
            paused=self.live.paused.is_set(),
            process=process,
            cameras={c.key: c.health() for c in self.cameras},
            source_dropped=sum(c.source.dropped for c in self.cameras),
        )

    def _health_state(self) -> str:
        if self.exit_code:
            return "fault"
        if self.stats.last_frame_at is None:
            return "starting"
        if not self.multi:
            live = self.source is not None and self.source.live
            return "stalled" if live and not self._flowing() else "ok"
        return "ok" if self._flowing() else "stalled"

    def _publish_health(self, publisher: Publisher) -> None:
        payload = self.health_payload(publisher).to_json()
        publisher.publish(Suffix.HEALTH, payload, retain=True)

    # -- commands (edged.control.controller.Target) ---------------------------------------
    def effective_config(self) -> Config:
        return self.live.settings

    def _pipeline(self, camera: str | None) -> CameraPipeline:
        if camera is None:
            return self.cameras[0]
        for cam in self.cameras:
            if cam.camera.name == camera:
                return cam
        names = ", ".join(c.key for c in self.cameras if c.camera.name) or "none"
        raise CommandError(f"no camera {camera!r}; cameras: {names}")

    def apply_settings(self, sections: dict[str, BaseModel], camera: str | None = None) -> None:
        """New ``classify`` / ``publish`` sections, validated; they take effect from the
        next frame and last until the daemon stops.  ``camera``: only that camera's."""
        if camera is not None:
            cam = self._pipeline(camera)
            if "classify" in sections:
                cam.publishing.classify = sections["classify"]  # type: ignore[assignment]
            if "publish" in sections:
                cam.publishing.publish = sections["publish"]  # type: ignore[assignment]
            return
        settings = self.live.settings.model_copy(update=sections)
        self.live.settings = settings
        for cam, camera_cfg in zip(self.cameras, settings.camera_list(), strict=True):
            if "classify" in sections:
                cam.publishing.classify = camera_cfg.classify
            if "publish" in sections:
                cam.publishing.publish = camera_cfg.publish

    def set_paused(self, paused: bool) -> bool:
        was = self.live.paused.is_set()
        if paused:
            self.live.paused.set()
        else:
            self.live.paused.clear()
        if was != paused:
            log.info("classification %s", "paused" if paused else "resumed")
        return was

    def snapshot(self, camera: str | None = None) -> tuple[bytes, State | None] | None:
        cam = self._pipeline(camera) if self.cameras else None
        if cam is None:
            return None
        frame, last = cam.live.current_frame(), cam.live.last
        if frame is None or frame.image is None:
            return None
        from edged.web.overlay import encode_jpeg  # Pillow's JPEG encoder, on demand

        return encode_jpeg(frame.image), None if last is None else cam.publishing.state(last)

    def reload_model(self, model: ModelConfig, timeout: float = 30.0) -> dict[str, Any]:
        """Load ``model`` beside the running one (one engine per interpreter of [model]'s
        stage), classify a test frame with it, and only then hand it to the interpreters'
        threads, which swap between two frames."""
        stage = self.stages.get("")
        if stage is None:
            raise CommandError("no camera uses [model]: nothing to reload")
        frame = self.live.camera().current_frame()
        engines: list[Engine] = []
        try:
            for _ in stage.engines:
                engine, check = load_checked(
                    model.model_copy(update={"num_threads": stage.engine.cfg.num_threads})
                    if len(stage.engines) > 1
                    else model,
                    self.live.settings.classify,
                    None if frame is None else frame.image,
                )
                engines.append(engine)
        except BaseException:
            for e in engines:
                e.close()
            raise
        if not stage.swap(engines, timeout):
            raise CommandError("the pipeline did not take the new model; the old one stays")
        self.live.settings = self.live.settings.model_copy(update={"model": engines[0].cfg})
        top = check.top1
        return {
            "model": engines[0].model.name,
            "sha256": engines[0].model.sha256,
            "backend": engines[0].backend.name,
            "test_label": top.label if top else None,
        }


__all__ = ["HEALTH_FIELDS", "Daemon", "spare_core"]
