"""Counters and latency windows of one daemon run.  Each counter has one writer thread."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from edged.wire import Percentiles


class Stats:
    def __init__(self, window: int = 256) -> None:
        self.started = time.monotonic()
        self.frames_captured = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.frames_lost = 0  # in flight when an inference failed
        self.events_created = 0  # events handed to the publisher (the last seq)
        self.events_filtered = 0  # classified frames the publish policy held back
        self.last_frame_at: float | None = None  # monotonic time of the last processed frame
        self.frames_static = 0  # not classified: unchanged since the last classified frame
        self.last_static_at: float | None = None  # (capture thread) the last such frame
        self._latency: deque[float] = deque(maxlen=window)
        self._done: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def record_inference(self, ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._latency.append(ms)
            self._done.append(now)
        self.frames_processed += 1
        self.last_frame_at = now

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def fps(self, horizon_s: float = 10.0) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._done if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        # the intervals since the first frame of the window (n frames span n - 1 of them,
        # and the time since the last one), so that the rate falls when frames stop
        span = max(now - recent[0], 1e-6)
        return (len(recent) - 1) / span if now - recent[-1] < horizon_s else 0.0

    def latency_values(self) -> list[float]:
        with self._lock:
            return list(self._latency)

    def latency_ms(self) -> Percentiles:
        with self._lock:
            values = np.fromiter(self._latency, dtype=np.float64)
        if values.size == 0:
            return Percentiles(p50=None, p95=None)
        p50, p95 = np.percentile(values, [50, 95])
        return Percentiles(p50=round(float(p50), 2), p95=round(float(p95), 2))

    def record_static(self) -> None:
        """A frame skipped as unchanged: progress all the same (the source is alive)."""
        self.frames_static += 1
        self.last_static_at = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last processed (or skipped as unchanged) frame; since start
        when none yet."""
        seen = [t for t in (self.last_frame_at, self.last_static_at) if t is not None]
        return time.monotonic() - max(seen, default=self.started)


class StatsTotal:
    """The device's counters: its cameras' :class:`Stats` added up (read-only)."""

    def __init__(self, cameras: list[Stats]) -> None:
        self.cameras = cameras
        self.started = min((s.started for s in cameras), default=time.monotonic())

    @property
    def frames_captured(self) -> int:
        return sum(s.frames_captured for s in self.cameras)

    @property
    def frames_processed(self) -> int:
        return sum(s.frames_processed for s in self.cameras)

    @property
    def frames_dropped(self) -> int:
        return sum(s.frames_dropped for s in self.cameras)

    @property
    def frames_lost(self) -> int:
        return sum(s.frames_lost for s in self.cameras)

    @property
    def frames_static(self) -> int:
        return sum(s.frames_static for s in self.cameras)

    @property
    def events_created(self) -> int:
        return sum(s.events_created for s in self.cameras)

    @property
    def events_filtered(self) -> int:
        return sum(s.events_filtered for s in self.cameras)

    @property
    def last_frame_at(self) -> float | None:
        seen = [s.last_frame_at for s in self.cameras if s.last_frame_at is not None]
        return max(seen, default=None)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def fps(self, horizon_s: float = 10.0) -> float:
        return sum(s.fps(horizon_s) for s in self.cameras)

    def latency_ms(self) -> Percentiles:
        values: list[float] = []
        for s in self.cameras:
            values.extend(s.latency_values())
        if not values:
            return Percentiles(p50=None, p95=None)
        p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
        return Percentiles(p50=round(float(p50), 2), p95=round(float(p95), 2))

    def idle_for(self) -> float:
        return min((s.idle_for() for s in self.cameras), default=0.0)
