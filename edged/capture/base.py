"""The frame source interface and its registry."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One RGB frame (HxWx3 uint8) with its number and origin."""

    number: int
    image: npt.NDArray[np.uint8]
    source: str
    ts: float


class FrameSource(ABC):
    """Yields frames until exhausted or the stop event is set.

    ``live`` sources (cameras, paced replay) never wait for inference: the pipeline keeps
    only the newest frame.  Other sources get backpressure, so every frame is classified.
    """

    type_key: ClassVar[str]
    live: bool = False

    def __init__(self) -> None:
        self.skipped = 0  # unreadable inputs, counted and logged
        self.closed = False

    @abstractmethod
    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return self.type_key


S = TypeVar("S", bound=type[FrameSource])
SOURCES: dict[str, type[FrameSource]] = {}


def register(cls: S) -> S:
    SOURCES[cls.type_key] = cls
    return cls
