"""What the running pipeline shares with remote operation (status page, snapshot, commands,
metrics): plain references written by one pipeline thread each, read when someone asks.
Keeping them costs the pipeline one attribute store per frame."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from edged.capture.base import Frame
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


class CameraLive:
    """One camera's latest frame and classification."""

    def __init__(self) -> None:
        self.frame: Frame | None = None  # written by the camera's capture thread
        self.last: LastResult | None = None  # written by its publish stage


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
