"""One camera's pipeline: its source, the capture thread (capture -> skip unchanged ->
collect -> preprocess -> its lane of the shared inference stage), its publish stage, its
counters and ``seq``, and its part of the health report.  A camera's failure stays here:
a source that goes away reconnects by itself (its state shows in health), and a capture
thread that fails marks this camera down, not the others."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from edged.capture import FrameSource
from edged.capture.base import PixelDemand
from edged.capture.regions import regions_of
from edged.capture.static import StaticScene
from edged.config import Camera
from edged.control.live import CameraLive
from edged.engine import Engine, Work
from edged.health import Stats
from edged.infer.base import Inference
from edged.pipeline.inference import InferenceStage
from edged.pipeline.publishing import Publishing
from edged.preprocess.image import ImageError
from edged.wire import HEALTH_FIELDS, CameraHealth

log = logging.getLogger(__name__)

DOWN_STATES = ("reconnecting", "failed")


class CameraPipeline:
    """``stages`` by region name (None: the whole frame, and every region that names no
    model of its own); ``key`` names its lanes."""

    def __init__(
        self,
        camera: Camera,
        source: FrameSource,
        stages: dict[str | None, InferenceStage],
        publishing: Publishing,
        live: CameraLive,
        stats: Stats,
        *,
        health_stall_s: float,
        max_frames: int | None = None,
    ) -> None:
        self.camera = camera
        self.key = camera.name or ""
        self.source = source
        self.stages = stages
        self.publishing = publishing
        self.live = live
        self.stats = stats
        self.health_stall_s = health_stall_s
        self.parts = max(1, len(camera.capture.regions))  # one inference per region
        self.limit = None if max_frames is None else max_frames * self.parts
        self.error: str | None = None  # why its capture thread failed
        self.ended = False  # its source finished
        self.observe: Callable[[float], None] | None = None  # the metrics' histogram
        self._closed = False
        if source.pixels_on_demand and not camera.capture.skip_static and not publishing.collector:
            # nothing needs every frame's pixels: those the sensor classified keep theirs in
            # the camera's buffer unless someone asks for a current frame (live.current_frame)
            source.demand = live.demand = PixelDemand()

    @property
    def main(self) -> InferenceStage:
        return self.stages[None]

    def distinct_stages(self) -> list[InferenceStage]:
        return list({id(s): s for s in self.stages.values()}.values())

    def attach(self, queue_size: int) -> None:
        for stage in self.distinct_stages():
            stage.attach(self.key, self, queue_size * self.parts)

    # -- the capture thread ---------------------------------------------------------------
    def capture(self, stop: threading.Event) -> None:
        try:
            self._capture(stop)
        finally:
            for stage in self.distinct_stages():
                stage.lanes.end(self.key)

    def _capture(self, stop: threading.Event) -> None:
        cfg = self.camera.capture
        source = self.source
        static = StaticScene(cfg.static_threshold, cfg.static_max_s) if cfg.skip_static else None
        # regions the CPU crops; a source that crops on the device names its one region
        crops = [] if source.cropped_region else regions_of(cfg.regions)
        collector = self.publishing.collector
        live = self.live
        for frame in source.frames(stop):
            self.stats.frames_captured += 1
            live.show(frame)  # what the status page and a snapshot show
            image = frame.image
            if image is not None:
                if static is not None and not static.changed(image):
                    self.stats.record_static()
                    continue
                if collector is not None:
                    collector.hold(frame.number, image)
            if frame.sensor is not None:  # classified on the camera's sensor: no invoke here
                item = Work(
                    frame.number,
                    frame.source,
                    None,
                    source.cropped_region,
                    image,
                    frame.sensor,
                    frame.ts,
                )
                if self._closed:
                    return
                if not self.main.sensor_here(self.key, item) and not self._hand_over(
                    self.main, item, stop
                ):
                    return
                continue
            assert image is not None  # only a frame the sensor classified may have no pixels
            parts: list[tuple[str | None, npt.NDArray[np.uint8]]] = [
                (r.name, r.crop(image)) for r in crops
            ] or [(source.cropped_region, image)]
            for region, part in parts:
                stage = self.stages.get(region) or self.main
                engine = stage.engine  # the model now running (a reload swaps it)
                try:
                    prepared = engine.prepare(part)
                except ImageError as exc:
                    source.skipped += 1
                    log.warning("frame %d from %s skipped: %s", frame.number, frame.source, exc)
                    break
                item = Work(
                    frame.number, frame.source, prepared, region=region, image=part, ts=frame.ts
                )
                if not self._hand_over(stage, item, stop):
                    return
            if not source.live and not self._wait_turn(stop):
                return
        self.ended = True

    def _wait_turn(self, stop: threading.Event) -> bool:
        """A camera reading files, sharing its stage: read the next frame only when its turn
        is near (:meth:`Lanes.wait_turn`), so that it is fresh when classified."""
        stage = self.main
        if not stage.shared():
            return True
        while not stop.is_set():
            if stage.lanes.wait_turn(self.key, stage.ahead, timeout=0.2):
                return not self._closed
        return False

    def _hand_over(self, stage: InferenceStage, item: Work, stop: threading.Event) -> bool:
        """Queue a frame (or one region of it) for inference; False once stopping."""
        if self._closed:
            return False
        if self.source.live:  # the newest frame wins; a stale one is dropped and counted
            self.stats.frames_dropped += stage.lanes.put_newest(self.key, item)
            return True
        while not stop.is_set():
            if stage.lanes.put(self.key, item, timeout=0.2):
                return not self._closed
        return False

    # -- called by the stages (Route) -----------------------------------------------------
    def collected(self, item: Work, inference: Inference) -> bool:
        if self._closed:
            return False  # past the frame limit: in flight when it was reached
        self.stats.record_inference(inference.ms)
        if self.observe is not None:
            self.observe(inference.ms)
        if self.limit is not None and self.stats.frames_processed >= self.limit:
            self._closed = True
            for stage in self.distinct_stages():
                stage.reason = "frame limit reached"
                stage.lanes.close(self.key)
        return True

    def publish(self, item: Work, inference: Inference, engine: Engine) -> None:
        self.publishing.result(item, inference, engine)

    def lost(self, item: Work, exc: Exception) -> None:
        self.publishing.lost(item, exc)

    def fail(self, exc: BaseException) -> None:
        """Its capture thread failed: this camera is down, the others go on."""
        self.error = f"{type(exc).__name__}: {exc}"
        for stage in self.distinct_stages():
            stage.lanes.close(self.key)

    # -- state ----------------------------------------------------------------------------
    @property
    def stall_s(self) -> float:
        """No frame for this long = stalled.  A source that reconnects by itself may be away
        for its own, longer ``stall_s`` first."""
        return max(self.health_stall_s, self.source.stall_s or 0.0)

    def flowing(self) -> bool:
        """Frames flow (or the source's slow start-up advances: an AI camera loading its
        network): the watchdog's test, camera by camera."""
        return self.error is None and (
            self.stats.idle_for() < self.stall_s or self.source.progressing()
        )

    def source_state(self) -> object:
        return self.source.status().get(HEALTH_FIELDS.source_state)

    def state(self) -> str:
        status = self.source.status()
        if self.error is not None or status.get(HEALTH_FIELDS.source_state) in DOWN_STATES:
            return "down"
        if self.stats.last_frame_at is None:
            return "starting"
        if self.source.live and not self.flowing():
            return "stalled"
        return "ok"

    def health(self) -> CameraHealth:
        status = self.source.status()
        stage = self.main
        last = self.stats.last_frame_at
        return CameraHealth(
            state=self.state(),
            error=self.error or status.get(HEALTH_FIELDS.source_error),
            fps=round(self.stats.fps(), 2),
            frames=self.stats.frames_processed,
            dropped=self.stats.frames_dropped + self.source.dropped,
            source_state=status.get(HEALTH_FIELDS.source_state),
            reconnects=status.get(HEALTH_FIELDS.source_reconnects),
            last_frame_age_s=None if last is None else round(time.monotonic() - last, 2),
            model=stage.engine.model.name,
            backend=stage.engine.backend.name,
            inference_ms=self.stats.latency_ms(),
        )
