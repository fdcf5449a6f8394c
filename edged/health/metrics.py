"""Prometheus metrics of the daemon (``[metrics] listen``, off by default).

Counters and gauges are read at scrape time from one snapshot callable (the same figures as
the health message), so they cost nothing per frame; only the inference histogram is
observed per frame.  Labels stay bounded: the backend and model now running, the build, and
the command names, never a label per class or per frame.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edged import __version__, wire
from edged.serving import stop_server
from edged.wire import HEALTH_FIELDS

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Edge TPU inferences take ~2-10 ms, a Pi 4 CPU 20-200 ms, a Pi Zero up to seconds.
INFERENCE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
H = HEALTH_FIELDS
# counters: metric name, snapshot key (a health field), help text
_COUNTERS = (
    ("edged_frames_captured", H.frames_captured, "Frames read from the source."),
    ("edged_frames_processed", H.frames_processed, "Frames classified."),
    ("edged_frames_dropped", H.frames_dropped, "Frames dropped because inference was busy."),
    ("edged_frames_lost", H.frames_lost, "Frames whose inference failed."),
    ("edged_frames_skipped", H.frames_skipped, "Unreadable inputs skipped."),
    ("edged_events_published", H.events_published, "Events handed to the MQTT client."),
    ("edged_mqtt_reconnects", H.mqtt_reconnects, "Reconnections to the MQTT broker."),
    ("edged_mqtt_dropped", H.mqtt_dropped, "MQTT messages that could not be delivered."),
    ("edged_disk_write_bytes", H.disk_write_bytes, "Bytes the daemon wrote to disk."),
    ("edged_tpu_fallbacks", H.fallbacks, "Switches from the Edge TPU to the CPU."),
    ("edged_worker_restarts", H.worker_restarts, "Restarts of the inference worker process."),
)
# gauges: metric name, snapshot key (a health field), help text
_GAUGES = (
    ("edged_fps", H.fps, "Frames classified per second (10 s window)."),
    ("edged_cpu_temperature_celsius", H.cpu_temp_c, "CPU temperature."),
    ("edged_tpu_temperature_celsius", H.tpu_temp_c, "Edge TPU temperature."),
    ("edged_uptime_seconds", H.uptime_s, "Seconds since the daemon started."),
)
COMMANDS = (*wire.COMMANDS, "invalid")  # label values of edged_commands
C = wire.CAMERA_HEALTH_FIELDS
# per camera of [[cameras]] (label "camera": one value per configured camera, bounded)
_CAMERA_COUNTERS = (
    ("edged_camera_frames_processed", C.frames, "Frames of the camera classified."),
    ("edged_camera_frames_dropped", C.dropped, "Frames of the camera dropped (newest wins)."),
    ("edged_camera_reconnects", C.reconnects, "Times the camera's source came back."),
)
_CAMERA_GAUGES = (("edged_camera_fps", C.fps, "Frames of the camera classified per second."),)


class _SnapshotCollector(Collector):
    """Counters and gauges from ``read()``, a mapping with the health message's keys plus
    ``mqtt_connected`` and ``paused``."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        try:
            snap = self._read()
        except Exception:
            log.exception("metrics: reading the daemon's state failed")
            return
        for name, key, text in _COUNTERS:
            value = snap.get(key)
            if isinstance(value, int | float):
                yield CounterMetricFamily(name, text, value=value)
        for name, key, text in _GAUGES:
            value = snap.get(key)
            if isinstance(value, int | float):
                yield GaugeMetricFamily(name, text, value=value)
        yield GaugeMetricFamily(
            "edged_mqtt_connected",
            "1 while connected to the MQTT broker.",
            value=1 if snap.get("mqtt_connected") else 0,
        )
        yield GaugeMetricFamily(
            "edged_paused",
            "1 while classification is paused.",
            value=1 if snap.get(H.paused) else 0,
        )
        backend = GaugeMetricFamily(
            "edged_backend_info",
            "The backend and model now running (value 1).",
            labels=[H.backend, H.model],
        )
        backend.add_metric([str(snap.get(H.backend) or ""), str(snap.get(H.model) or "")], 1)
        yield backend
        cameras = snap.get(H.cameras)
        if isinstance(cameras, Mapping) and cameras:
            yield from _camera_families(cameras)


def _camera_families(cameras: Mapping[str, Any]) -> Iterator[Any]:
    """One sample per camera, labelled ``camera``."""
    kinds = [(CounterMetricFamily, f) for f in _CAMERA_COUNTERS] + [
        (GaugeMetricFamily, f) for f in _CAMERA_GAUGES
    ]
    for kind, (name, key, text) in kinds:
        family = kind(name, text, labels=["camera"])
        for camera, part in cameras.items():
            value = part.get(key) if isinstance(part, Mapping) else None
            if isinstance(value, int | float):
                family.add_metric([camera], value)
        yield family
    up = GaugeMetricFamily(
        "edged_camera_up", "1 while the camera classifies (state ok).", labels=["camera"]
    )
    for camera, part in cameras.items():
        ok = isinstance(part, Mapping) and part.get(C.state) == "ok"
        up.add_metric([camera], 1 if ok else 0)
    yield up


class Metrics:
    """The daemon's registry: build info, the snapshot collector, the inference histogram,
    commands by name and result, and the process's own CPU and memory."""

    def __init__(self, read: Callable[[], Mapping[str, Any]], runtime: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        build = InfoMetricFamily("edged_build", "edged version and runtime.")
        build.add_metric(
            [], {"version": __version__, "runtime": runtime, "python": platform.python_version()}
        )
        self.registry.register(_Static([build]))
        self.registry.register(_SnapshotCollector(read))
        self.inference = Histogram(
            "edged_inference_seconds",
            "Time of one inference (invoke), seconds.",
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "edged_commands",
            "Commands received on the cmd topic, by command and result.",
            ["cmd", "result"],
            registry=self.registry,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe_inference(self, ms: float) -> None:
        self.inference.observe(ms / 1000.0)

    def count_command(self, cmd: str, ok: bool) -> None:
        self.commands.labels(cmd if cmd in COMMANDS else "invalid", "ok" if ok else "error").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; the bound address."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        self._thread.name = "edged-metrics"
        bound = self._server.server_address
        log.info("metrics: serving http://%s:%d/metrics", host, bound[1])
        return host, int(bound[1])

    def close(self) -> None:
        stop_server(self._server, self._thread)
        self._server, self._thread = None, None


class _Static(Collector):
    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        yield from self._families
