"""Frame sources.  One file per backend, registered by the config's ``type``."""

from __future__ import annotations

from typing import Any

from edged.capture import imx500, picamera2, replay, stream, v4l2
from edged.capture.base import SOURCES, Frame, FrameSource, Framing
from edged.capture.regions import capture_size, regions_of

__all__ = [
    "SOURCES",
    "Frame",
    "FrameSource",
    "Framing",
    "imx500",
    "open_source",
    "picamera2",
    "replay",
    "stream",
    "v4l2",
]


def open_source(
    cfg: Any, input_size: tuple[int, int], framing: Framing | None = None
) -> FrameSource:
    """Build the source named by ``cfg.type``; ``input_size`` is the (width, height) the
    preprocessing needs (the model input, enlarged by the center crop).  With regions the
    source is asked for a frame in which the smallest region still covers it.  ``framing``
    (the model's size and center crop) goes to a source that frames on the device."""
    cls = SOURCES.get(cfg.type)
    if cls is None:
        raise ValueError(f"capture type {cfg.type!r} is unknown; valid: {', '.join(SOURCES)}")
    regions = regions_of(cfg.regions)
    if not (cls.crops_one_region and len(regions) == 1):
        input_size = capture_size(input_size, regions)  # every region covers the input
    if framing is not None and cls.frames_on_device and not regions:
        return cls(cfg, input_size, framing=framing)  # type: ignore[call-arg]
    return cls(cfg, input_size)  # type: ignore[call-arg]
