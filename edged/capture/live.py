"""What the PyAV sources (network streams, V4L2 cameras) share: a reader thread that keeps
only the newest decoded frame, reconnects with exponential backoff and jitter, and reports
its state for the health message.

The reader decodes as fast as the camera sends; the pipeline takes the newest frame when it
is ready for one.  A frame replaced before it was taken is counted in ``dropped``.  States:
``connecting`` (before the first frame), ``streaming``, ``reconnecting`` (the source was
lost, or a connection attempt failed for a reason that may pass) and ``failed`` (the last
attempt failed for a reason retrying alone will not fix: refused credentials, no such
stream, not a video).  A failed source is still retried, at the longest backoff, so a fixed
camera comes back without a restart.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.capture import sockets
from edged.capture.base import Frame, FrameSource
from edged.wire import HEALTH_FIELDS as H

log = logging.getLogger(__name__)

CONNECTING = "connecting"
STREAMING = "streaming"
RECONNECTING = "reconnecting"
FAILED = "failed"

# this many undecodable packets in a row end the connection (then it is reopened)
MAX_BAD_PACKETS = 50


class SourceError(Exception):
    """A connection attempt or a stream failed.  ``permanent``: retrying alone will not fix
    it (the message says what will)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Backoff:
    """Exponential backoff with jitter: attempt n waits between half and all of
    ``min(max_s, min_s * 2**n)``, so a fleet of cameras does not reconnect in step."""

    def __init__(
        self, min_s: float, max_s: float, rng: Callable[[], float] = random.random
    ) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        ceiling = min(self.max_s, self.min_s * 2.0**self.attempt)
        self.attempt += 1
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.attempt = 0


def covering_size(width: int, height: int, want: tuple[int, int]) -> tuple[int, int]:
    """The size to scale a ``width`` x ``height`` frame to: as small as possible while both
    sides stay at least ``want`` (width, height), keeping the aspect ratio; never larger
    than the frame."""
    scale = max(want[0] / width, want[1] / height)
    if scale >= 1.0:
        return width, height
    return max(want[0], round(width * scale)), max(want[1], round(height * scale))


class LiveSource(FrameSource):
    """A PyAV input read by a thread of its own.  Subclasses open the container."""

    live = True

    def __init__(
        self,
        name: str,
        input_size: tuple[int, int],
        *,
        reconnect_min_s: float,
        reconnect_max_s: float,
        stall_s: float,
    ) -> None:
        super().__init__()
        self.name = name
        self.want = input_size
        self.stall_s = stall_s
        self.state = CONNECTING
        self.reconnects = 0
        self.corrupt = 0  # packets the decoder rejected, frames it could only conceal
        self.error: str | None = None  # why the source is not streaming, for health
        self.backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self.frame_size: tuple[int, int] | None = None
        self._cond = threading.Condition()
        self._latest: tuple[npt.NDArray[np.uint8], float] | None = None
        self._decoded: deque[float] = deque(maxlen=64)
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._ever_streamed = False
        # socket inodes before the current connection was opened (see interrupt_port)
        self._sockets_before: set[int] | None = None

    # -- for subclasses ------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> Any:
        """Open and return a PyAV input container; raise SourceError or av.FFmpegError."""

    def explain(self, exc: Exception) -> SourceError:
        """Turn a PyAV error into a SourceError with a clear message."""
        return SourceError(str(exc))

    def redact(self, text: str) -> str:
        return text

    def interrupt_port(self) -> int | None:
        """The TCP port the source connects to, if it reads from the network: a stop shuts
        those connections down to wake a read blocked in FFmpeg (see sockets.py)."""
        return None

    # -- the reader thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                self._read_once()
                problem = SourceError("the stream ended")
            except SourceError as exc:
                problem = exc
            except Exception as exc:  # av.FFmpegError, OSError: what PyAV raises
                problem = self.explain(exc)
            if self._halt.is_set():
                return
            self._set_lost(problem)
            delay = self.backoff.max_s if problem.permanent else self.backoff.next()
            if self._halt.wait(delay):
                return

    def _set_lost(self, problem: SourceError) -> None:
        message = self.redact(str(problem))
        state = FAILED if problem.permanent else RECONNECTING
        if state == FAILED:
            if message != self.error:
                log.error("%s: %s; retrying every %g s", self.name, message, self.backoff.max_s)
        elif self.state == STREAMING:
            log.warning("%s lost: %s; reconnecting", self.name, message)
        elif message != self.error:
            log.warning("%s: %s; retrying with backoff", self.name, message)
        self.error = message
        self.state = state

    def _read_once(self) -> None:
        if self.interrupt_port() is not None:
            self._sockets_before = set(sockets.socket_inodes().values())
        if self._halt.is_set():
            return
        container = self.connect()
        try:
            if not container.streams.video:
                formats = getattr(container.format, "name", "?")
                raise SourceError(
                    f"no video stream in it (FFmpeg reads it as {formats!r})", permanent=True
                )
            stream = container.streams.video[0]
            bad = 0
            for packet in container.demux(stream):
                if self._halt.is_set():
                    return
                try:
                    frames = packet.decode()
                except Exception as exc:  # av.InvalidDataError and kin: a corrupt packet
                    self.corrupt += 1
                    bad += 1
                    if bad == 1 or bad % 10 == 0:
                        log.warning(
                            "%s: undecodable packet skipped: %s", self.name, self.redact(str(exc))
                        )
                    if bad >= MAX_BAD_PACKETS:
                        raise SourceError(f"{bad} undecodable packets in a row") from exc
                    continue
                bad = 0
                for vf in frames:
                    if vf.is_corrupt:  # concealed damage: not worth classifying
                        self.corrupt += 1
                        if self.corrupt == 1 or self.corrupt % 100 == 0:
                            log.warning(
                                "%s: corrupt frame skipped (%d so far)", self.name, self.corrupt
                            )
                        continue
                    self._deliver(vf)
        finally:
            container.close()
            self._sockets_before = None

    def _deliver(self, vf: Any) -> None:
        size = (int(vf.width), int(vf.height))
        if size != self.frame_size:
            if self.frame_size is not None:
                log.info(
                    "%s: resolution changed from %dx%d to %dx%d",
                    self.name,
                    *self.frame_size,
                    *size,
                )
            self.frame_size = size
        width, height = covering_size(size[0], size[1], self.want)
        if (width, height) == size:
            image = vf.to_ndarray(format="rgb24")
        else:
            image = vf.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        image = np.ascontiguousarray(image, dtype=np.uint8)
        now = time.monotonic()
        if self.state != STREAMING:
            if self._ever_streamed:
                self.reconnects += 1
            self._ever_streamed = True
            log.info("%s: streaming %dx%d", self.name, *size)
            self.state = STREAMING
            self.error = None
            self.backoff.reset()
        self._decoded.append(now)
        with self._cond:
            if self._latest is not None:
                self.dropped += 1
            self._latest = (image, time.time())
            self._cond.notify()

    # -- the pipeline's side -------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edged-source", daemon=True)
            self._thread.start()

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        self.start()
        number = 0
        while not stop.is_set() and not self._halt.is_set():
            with self._cond:
                if self._latest is None:
                    self._cond.wait(0.2)
                item, self._latest = self._latest, None
            if item is None:
                continue
            number += 1
            yield Frame(number, item[0], self.name, item[1])

    def fps(self, horizon_s: float = 5.0) -> float:
        now = time.monotonic()
        recent = [t for t in list(self._decoded) if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def status(self) -> dict[str, Any]:
        """Its fields of the health report."""
        return {
            H.source_state: self.state,
            H.source_reconnects: self.reconnects,
            H.source_fps: round(self.fps(), 2),
            H.source_dropped: self.dropped,
            H.source_corrupt: self.corrupt,
            H.source_error: self.error,
        }

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._halt.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            return
        # A read blocked in FFmpeg would only end at its read timeout: shut its connection
        # down so that it returns now and the reader closes the container itself.  Again
        # while waiting, in case the reader was just opening one.
        port = self.interrupt_port()
        deadline = time.monotonic() + 2.0
        while thread.is_alive() and time.monotonic() < deadline:
            before = self._sockets_before
            if port is not None and before is not None:
                sockets.shutdown_new_connections(before, port)
            thread.join(timeout=0.1)
        if thread.is_alive():
            # the thread is a daemon: a stop does not wait for it longer than this
            log.warning("%s: the reader did not stop within 2 s", self.name)
