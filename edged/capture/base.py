"""The frame source interface and its registry."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import numpy.typing as npt

from edged.tensor import SensorOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Framing:
    """How the model frames its input: its (width, height), and the share of the shorter
    side its center crop keeps (1.0 = none).  A source that can crop and scale on the device
    (picamera2: the ISP's ScalerCrop) delivers frames framed so, and the CPU does nothing."""

    size: tuple[int, int]
    crop_fraction: float = 1.0


@dataclass(frozen=True)
class Frame:
    """One RGB frame (HxWx3 uint8) with its number and origin; ``sensor`` is the class
    vector a camera computed itself (the IMX500), when it did.  ``image`` is None only on
    such a frame, when nothing needed its pixels (see :class:`PixelDemand`)."""

    number: int
    image: npt.NDArray[np.uint8] | None
    source: str
    ts: float
    sensor: SensorOutput | None = None


class PixelDemand:
    """Whether the frames a camera's sensor classified need their pixels: copying the ISP's
    frame out of the camera's buffer is a large part of such a frame's cost, for nothing
    when no one looks.  Someone who wants a current frame (the status page, a snapshot, a
    model reload's test frame) calls :meth:`ask`, and the frames come with their pixels
    for the next ``for_s`` seconds.  Frames classified on the CPU always have them."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._until = float("-inf")

    def wanted(self) -> bool:
        return bool(self._clock() < self._until)

    def ask(self, for_s: float) -> None:
        self._until = max(self._until, self._clock() + for_s)


class FrameSource(ABC):
    """Yields frames until exhausted or the stop event is set.

    ``live`` sources (cameras, paced replay) never wait for inference: the pipeline keeps
    only the newest frame.  Other sources get backpressure, so every frame is classified.
    """

    type_key: ClassVar[str]
    live: bool = False
    # A source that can be away for a while and come back by itself (a network stream, a USB
    # camera) sets how long it may be away before the systemd watchdog stops being fed.
    stall_s: float | None = None
    # A source that crops its one region on the device (picamera2's ScalerCrop) names it:
    # its frames are that region already.
    cropped_region: str | None = None
    # ... and such a source class wants the model's input size, not one enlarged for regions
    crops_one_region: ClassVar[bool] = False
    # ... and such a source class can also take the model's center crop (``framing=``)
    frames_on_device: ClassVar[bool] = False
    # A source class that can start without its device and wait for it (``wait=``)
    waits_for_device: ClassVar[bool] = False
    # A source class whose sensor classifies can leave the pixels of such frames uncopied
    # while ``demand`` (set by the pipeline when nothing else needs every frame's pixels)
    # does not want them; with no ``demand``, every frame has its pixels
    pixels_on_demand: ClassVar[bool] = False

    def __init__(self) -> None:
        self.skipped = 0  # unreadable inputs, counted and logged
        self.dropped = 0  # frames the source replaced by newer ones before they were taken
        self.closed = False
        self.demand: PixelDemand | None = None

    @abstractmethod
    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return self.type_key

    def status(self) -> dict[str, Any]:
        """Fields this source adds to the health message (none by default)."""
        return {}

    def inference_status(self) -> dict[str, Any]:
        """Health fields that replace the engine's (backend, fallback_reason, model...),
        from a source that classifies on its own sensor (none by default)."""
        return {}

    def progressing(self) -> bool:
        """Slow start-up work (a firmware upload) is making progress: the service is
        ready and its watchdog is fed although no frame comes yet."""
        return False

    def absent(self) -> str | None:
        """What is missing while the source waits for its device (no camera); else None.
        Meanwhile the service is up and not stalled: restarting cannot bring a device."""
        return None


S = TypeVar("S", bound=type[FrameSource])
SOURCES: dict[str, type[FrameSource]] = {}


def register(cls: S) -> S:
    SOURCES[cls.type_key] = cls
    return cls
