"""The health report (``{prefix}/{device}/health``): pipeline counters, the backend's state,
the process and the machine's readings, as a :class:`edged.wire.Health`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from edged import __version__
from edged.health.devices import scan_edge_tpus, tpu_temperature_c
from edged.health.stats import Stats, StatsTotal
from edged.health.system import ProcessMeter, cpu_temp_c, throttled
from edged.wire import HEALTH_FIELDS as H
from edged.wire import CameraHealth, Health, TpuInfo, utc_now

if TYPE_CHECKING:
    from edged.capture import FrameSource
    from edged.engine import Engine
    from edged.publish import Publisher


class HealthReporter:
    """Builds health reports for one daemon.  Edge TPUs are found through sysfs and /dev
    only (:func:`scan_edge_tpus`), never through libedgetpu, which must stay out of the
    daemon process."""

    def __init__(self, device: str, stats: Stats | StatsTotal, run_id: str | None = None) -> None:
        self.device = device
        self.run_id = run_id
        self.stats = stats
        self._process = ProcessMeter()

    def report(
        self,
        engine: Engine | None,
        publisher: Publisher,
        frames_skipped: int = 0,
        source: FrameSource | None = None,
        *,
        state: str | None = None,
        source_live: bool | None = None,
        paused: bool = False,
        process: ProcessMeter | None = None,
        cameras: dict[str, CameraHealth] | None = None,
        source_dropped: int = 0,
    ) -> Health:
        """``source`` adds its own drops and fields (state, reconnects, fps of a camera
        that reconnects by itself).  ``process``: another reader's own meter, so that
        its cpu_percent window (the time since its last call) does not cut this one's.
        ``cameras``: each camera's part, with [[cameras]] (``source_dropped`` then adds up
        their sources' drops, and ``source`` is None)."""
        stats = self.stats
        if process is not None:  # another reader's own handle (status page, metrics)
            cpu: float | None = round(process.cpu_percent(), 1)
            rss = process.rss_mb()
        else:
            cpu = round(self._process.cpu_percent(), 1)
            rss = self._process.rss_mb()
        written = (process or self._process).disk_write_bytes()
        backend: dict[str, Any] = engine.backend.status() if engine else {"backend": None}
        backend[H.model] = engine.model.name if engine else None
        backend[H.model_sha256] = engine.model.sha256 if engine else None
        if source is not None:  # a camera that classifies on its sensor speaks for itself
            backend.update(source.inference_status())
        return Health(
            device=self.device,
            version=__version__,
            run_id=self.run_id,
            ts=utc_now(),
            uptime_s=round(stats.uptime_s(), 1),
            state=state,
            source_live=source_live,
            **backend,
            tpus=[TpuInfo(type=t.type, path=t.path) for t in scan_edge_tpus()],
            tpu_temp_c=tpu_temperature_c(),
            fps=round(stats.fps(), 2),
            inference_ms=stats.latency_ms(),
            frames_captured=stats.frames_captured,
            frames_processed=stats.frames_processed,
            frames_dropped=stats.frames_dropped
            + (source.dropped if source else 0)
            + source_dropped,
            frames_lost=stats.frames_lost,
            frames_skipped=frames_skipped,
            frames_static=stats.frames_static,
            **(source.status() if source else {}),
            events_published=publisher.published,
            events_waiting=publisher.backlog,
            events_resent=publisher.resent,
            events_evicted=publisher.evicted,
            events_filtered=stats.events_filtered,
            spool=publisher.spool_kind,
            mqtt_reconnects=publisher.reconnects,
            mqtt_dropped=publisher.dropped,
            cpu_percent=cpu,
            rss_mb=round(rss, 1) if rss is not None else None,
            disk_write_bytes=written,
            cpu_temp_c=cpu_temp_c(),
            throttled=throttled(),
            pid=os.getpid(),
            paused=paused,
            cameras=cameras,
        )
