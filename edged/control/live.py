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


class Live:
    def __init__(self, cfg: Config) -> None:
        self.settings = cfg  # the configuration in effect, run-time changes included
        self.frame: Frame | None = None  # written by the capture thread
        self.last: LastResult | None = None  # written by the publish thread
        self.paused = threading.Event()
