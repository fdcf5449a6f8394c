"""Regions of interest: named rectangles in fractions of the frame, each classified alone.

Pure arithmetic over arrays; the picamera2 source may instead crop one region on the ISP
(``ScalerCrop``), and then hands over frames that are that region already.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edged.config import RegionConfig


@dataclass(frozen=True)
class Region:
    name: str
    x: float
    y: float
    width: float
    height: float

    @classmethod
    def from_config(cls, cfg: RegionConfig) -> Region:
        return cls(cfg.name, cfg.x, cfg.y, cfg.width, cfg.height)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in pixels of a ``width`` x ``height`` frame; at least
        one pixel each way."""
        left = min(width - 1, round(self.x * width))
        top = min(height - 1, round(self.y * height))
        right = max(left + 1, min(width, round((self.x + self.width) * width)))
        bottom = max(top + 1, min(height, round((self.y + self.height) * height)))
        return left, top, right, bottom

    def crop(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The region of ``image`` (a view, no copy)."""
        left, top, right, bottom = self.box(image.shape[1], image.shape[0])
        return image[top:bottom, left:right]


def regions_of(configs: Sequence[RegionConfig]) -> list[Region]:
    return [Region.from_config(c) for c in configs]


def capture_size(want: tuple[int, int], regions: Sequence[Region]) -> tuple[int, int]:
    """The frame size at which every region still covers ``want`` (width, height) pixels,
    so that no region is upscaled before the model sees it."""
    if not regions:
        return want
    fx = min(r.width for r in regions)
    fy = min(r.height for r in regions)
    return math.ceil(want[0] / fx), math.ceil(want[1] / fy)
