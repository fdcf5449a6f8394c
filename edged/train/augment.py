"""Random views of a photo for the ``deep`` recipe: a mirror image, a random crop and a small
change of colour, drawn per view from a seeded generator.

Pure numpy: a view is drawn (:func:`draw`) as a small record, then applied to a decoded
frame (:func:`apply`) before the daemon's own preprocessing (center crop, resize,
normalization), so that a trained model sees its photos as the daemon will show them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Augmentation:
    """What the views vary: ``crop`` the share of the frame's area a crop keeps (low, high),
    at the frame's aspect ratio; ``colour`` the largest change of brightness, contrast and
    saturation (0.1 = ±10 %); ``flip`` a left-right mirror half of the time."""

    crop: tuple[float, float] = (0.6, 1.0)
    colour: float = 0.1
    flip: bool = True

    def __post_init__(self) -> None:
        low, high = self.crop
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"augmentation crop {self.crop!r}: the kept share of the area must satisfy "
                "0 < low <= high <= 1 (for example (0.6, 1.0))"
            )
        if not 0.0 <= self.colour < 1.0:
            raise ValueError(
                f"augmentation colour {self.colour!r}: the change must be in [0, 1) "
                "(for example 0.1 for ±10 %)"
            )

    def describe(self) -> dict[str, object]:
        return {"flip": self.flip, "crop_area": list(self.crop), "colour": self.colour}


DEFAULT = Augmentation()


@dataclass(frozen=True)
class View:
    """One random view: the crop (its share of the area, and where it sits: 0 = left/top,
    1 = right/bottom), the mirror, and the colour factors (1 = unchanged)."""

    area: float
    x: float
    y: float
    flip: bool
    brightness: float
    contrast: float
    saturation: float


IDENTITY = View(1.0, 0.5, 0.5, False, 1.0, 1.0, 1.0)


def draw(rng: np.random.Generator, aug: Augmentation = DEFAULT) -> View:
    """A random view within ``aug``'s limits."""
    c = aug.colour
    low, high = aug.crop
    return View(
        area=float(rng.uniform(low, high)),
        x=float(rng.uniform(0.0, 1.0)),
        y=float(rng.uniform(0.0, 1.0)),
        flip=bool(aug.flip and rng.random() < 0.5),
        brightness=float(rng.uniform(1.0 - c, 1.0 + c)),
        contrast=float(rng.uniform(1.0 - c, 1.0 + c)),
        saturation=float(rng.uniform(1.0 - c, 1.0 + c)),
    )


def crop_box(width: int, height: int, view: View) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of ``view``'s crop of a width x height frame."""
    side = math.sqrt(view.area)
    w = min(width, max(1, round(width * side)))
    h = min(height, max(1, round(height * side)))
    left = round((width - w) * view.x)
    top = round((height - h) * view.y)
    return left, top, left + w, top + h


def apply(frame: Frame, view: View) -> Frame:
    """``frame`` (HxWx3 uint8 RGB) seen through ``view``."""
    h, w = frame.shape[:2]
    left, top, right, bottom = crop_box(w, h, view)
    out = frame[top:bottom, left:right]
    if view.flip:
        out = out[:, ::-1]
    if (view.brightness, view.contrast, view.saturation) == (1.0, 1.0, 1.0):
        return np.ascontiguousarray(out)
    x = out.astype(np.float32) * np.float32(view.brightness)
    grey = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    x = grey[..., None] + (x - grey[..., None]) * np.float32(view.saturation)
    mean = np.float32(grey.mean())
    x = mean + (x - mean) * np.float32(view.contrast)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
