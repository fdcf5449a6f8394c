"""What the running pipeline shares with remote operation (status page, snapshot, commands,
metrics): plain references written by one pipeline thread each, read when someone asks.
Keeping them costs the pipeline one attribute store per frame."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from edged.capture.base import Frame, PixelDemand
from edged.config import Config
from edged.engine import Result


@dataclass(frozen=True)
class LastResult:
    """The latest classification, as the publish stage saw it."""

    result: Result
    wall: float  # time.time() when it reached the publish stage

    @property
    def ts(self) -> str:
        """RFC 3339 UTC, as in every payload (formatted only when someone asks)."""
        when = datetime.fromtimestamp(self.wall, UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


LOOK_S = 5.0  # how long frames keep their pixels after someone asked for a current one
FRESH_S = 1.0  # how long an asker waits for a frame with its pixels


class CameraLive:
    """One camera's latest frame and classification.

    A camera whose sensor classifies may leave a frame's pixels in its buffer when nothing
    needs them (its ``demand``, :class:`~edged.capture.base.PixelDemand`): ``frame`` is then
    the newest frame that has them, and :meth:`current_frame` asks for pixels and waits for
    the next frame that has them."""

    def __init__(self) -> None:
        self.frame: Frame | None = None  # written by the camera's capture thread
        self.last: LastResult | None = None  # written by its publish stage
        self.demand: PixelDemand | None = None  # set by the pipeline (None: every frame)
        self.behind = False  # newer frames than ``frame`` came without their pixels
        self._fresh = threading.Condition()
        self._waiting = 0

    def show(self, frame: Frame) -> None:
        """The capture thread's newest frame."""
        if frame.image is None:
            self.behind = True
            return
        self.frame = frame
        self.behind = False
        if self._waiting:
            with self._fresh:
                self._fresh.notify_all()

    def current_frame(self, look_s: float = LOOK_S, timeout: float = FRESH_S) -> Frame | None:
        """The newest frame with its pixels: asks for pixels for ``look_s`` seconds and,
        when newer frames came without theirs, waits at most ``timeout`` for the next one
        (then returns the newest held, older, or None)."""
        demand = self.demand
        if demand is None:
            return self.frame
        demand.ask(look_s)
        held = self.frame
        if not self.behind and held is not None:
            return held
        with self._fresh:
            self._waiting += 1
            try:
                self._fresh.wait_for(lambda: self.frame is not held, timeout)
            finally:
                self._waiting -= 1
        return self.frame


class Live:
    """``cameras`` by name (None: the one camera of a [capture] config), in config order;
    ``frame`` and ``last`` are the first camera's."""

    def __init__(self, cfg: Config, cameras: tuple[str | None, ...] = (None,)) -> None:
        self.settings = cfg  # the configuration in effect, run-time changes included
        self.cameras: dict[str | None, CameraLive] = {name: CameraLive() for name in cameras}
        self.paused = threading.Event()

    def camera(self, name: str | None = None) -> CameraLive:
        """The camera ``name`` (None: the first); KeyError naming the cameras there are."""
        if name is None:
            return next(iter(self.cameras.values()))
        try:
            return self.cameras[name]
        except KeyError:
            names = ", ".join(str(n) for n in self.cameras if n is not None) or "none"
            raise KeyError(f"no camera {name!r}; cameras: {names}") from None

    @property
    def frame(self) -> Frame | None:
        return self.camera().frame

    @frame.setter
    def frame(self, frame: Frame | None) -> None:
        self.camera().frame = frame

    @property
    def last(self) -> LastResult | None:
        return self.camera().last

    @last.setter
    def last(self, last: LastResult | None) -> None:
        self.camera().last = last
