"""Skip unchanged scenes: a frame whose small greyscale thumbnail differs from the last
classified frame's by less than a threshold is not classified.

The thumbnail is a strided 64x48 sample of the green channel (the bulk of luma), read from
the frame without copying it: about ten microseconds per frame, against milliseconds for
preprocessing and inference (bench/cameras.py measures both).  The reference is the last
*classified* frame, so a slow drift adds up until it counts as a change.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

THUMB_W, THUMB_H = 64, 48


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """A THUMB_H x THUMB_W greyscale sample (0..255) of an HxWx3 (or HxW) frame."""
    h, w = image.shape[:2]
    sy, sx = max(1, h // THUMB_H), max(1, w // THUMB_W)
    grid = image[: sy * THUMB_H : sy, : sx * THUMB_W : sx]
    if grid.ndim == 3:
        grid = grid[..., 1]
    return grid.astype(np.int16)


class StaticScene:
    """``changed(frame)`` is False for a frame to skip.  ``skipped`` counts them."""

    def __init__(
        self, threshold: float, max_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.max_s = max_s
        self.skipped = 0
        self.last_difference: float | None = None
        self._clock = clock
        self._reference: npt.NDArray[np.int16] | None = None
        self._classified_at = float("-inf")

    def changed(self, image: npt.NDArray[np.uint8]) -> bool:
        thumb = thumbnail(image)
        now = self._clock()
        ref = self._reference
        if ref is not None and ref.shape == thumb.shape:
            self.last_difference = float(np.abs(thumb - ref).mean()) / 255.0
            if self.last_difference < self.threshold and now - self._classified_at < self.max_s:
                self.skipped += 1
                return False
        self._reference = thumb
        self._classified_at = now
        return True
