"""Image preprocessing shared by the daemon, ``edged classify`` and ``edged eval``.

Pure functions over numpy arrays and Pillow images: nothing here touches a device.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from edged.tensor import InputSpec

CropMode = Literal["center", "none"]
ImageSource = str | Path | bytes

RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}


class ImageError(ValueError):
    """An image file that cannot be read or decoded."""


def load_image(
    source: ImageSource, min_size: tuple[int, int] | None = None
) -> npt.NDArray[np.uint8]:
    """Decode an image file (a path, or its bytes) to an HxWx3 uint8 RGB array, or raise
    :class:`ImageError`.

    With ``min_size`` (width, height), a JPEG is decoded at the smallest DCT scale (1/2, 1/4,
    1/8) that keeps both sides at least that large: far less work and memory for a small
    model input (a 24-megapixel photo decodes to 3 megapixels or less).
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if min_size is not None and im.format == "JPEG":
                im.draft("RGB", min_size)
            im.load()
            # convert() copies even when the mode is already RGB
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise ImageError(f"cannot decode image {name!r}: {exc}") from exc


def decode_size(
    spec: InputSpec, crop: CropMode = "center", crop_fraction: float = 1.0
) -> tuple[int, int]:
    """The smallest (width, height) an image may be decoded at and still give the model full
    resolution: the input size, enlarged by the center crop's share of the image."""
    fraction = crop_fraction if crop == "center" else 1.0
    return math.ceil(spec.width / fraction), math.ceil(spec.height / fraction)


def prepare(
    source: ImageSource,
    spec: InputSpec,
    crop: CropMode = "center",
    crop_fraction: float = 1.0,
    resample: str = "bilinear",
) -> npt.NDArray[np.generic]:
    """An image file (path or bytes) as the 1xHxWx3 tensor ``spec`` wants.

    The one way from a file to a model input: the daemon's replay source (decode with
    :func:`decode_size`, then :func:`to_model_input`), ``edged classify`` and ``edged eval``
    all give a model the same numbers for the same file.
    """
    frame = load_image(source, decode_size(spec, crop, crop_fraction))
    return to_model_input(frame, spec, crop, crop_fraction, resample)


def crop_box(width: int, height: int, fraction: float) -> tuple[int, int, int, int]:
    """Box (left, top, right, bottom) of the centered square covering ``fraction`` of the
    shorter side."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"crop fraction {fraction} is outside (0, 1]")
    side = max(1, round(min(width, height) * fraction))
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def _quantize_params(spec: InputSpec) -> tuple[float, float] | None:
    """(multiplier, offset) so that ``tensor = pixel * multiplier + offset``; None = raw
    (uint8 pixels unchanged, or for int8 ``pixel - 128``, one XOR with 0x80)."""
    if spec.quantized:
        if spec.mean is None or spec.std is None:
            return None
        if spec.scale <= 0:
            raise ValueError("quantized input without a scale")
        mult = 1.0 / (spec.std * spec.scale)
        offset = spec.zero_point - spec.mean * mult
        # within one step of the identity (uint8) or of x - 128 (int8): no arithmetic
        raw = 0.0 if spec.dtype == np.uint8 else -128.0
        if max(abs(offset - raw), abs(255 * (mult - 1) + offset - raw)) <= 1.0:
            return None
        return mult, offset
    mean = 127.5 if spec.mean is None else spec.mean
    std = 127.5 if spec.std is None else spec.std
    return 1.0 / std, -mean / std


def to_model_input(
    frame: npt.NDArray[np.uint8],
    spec: InputSpec,
    crop: CropMode = "center",
    crop_fraction: float = 1.0,
    resample: str = "bilinear",
) -> npt.NDArray[np.generic]:
    """Crop, resize and convert an HxWx3 uint8 RGB frame to a 1xHxWx3 model input.

    A frame already at the model's input size is taken as framed by its source (the Pi
    camera's ISP crops with ``ScalerCrop`` and scales): it is neither cropped nor resized.
    """
    if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
        raise ImageError(
            f"expected an HxWx3 uint8 RGB frame, got shape={frame.shape} dtype={frame.dtype}"
        )
    if frame.shape[2] == 4:
        frame = frame[:, :, :3]
    h, w = frame.shape[:2]
    target = (spec.width, spec.height)
    if (w, h) != target:
        im = Image.fromarray(frame)
        box = crop_box(w, h, crop_fraction) if crop == "center" else (0, 0, w, h)
        if (box[2] - box[0], box[3] - box[1]) == target:
            im = im.crop(box)
        else:
            im = im.resize(target, RESAMPLE[resample], box=box, reducing_gap=3.0)
        pixels = np.asarray(im)
    else:
        pixels = frame
    params = _quantize_params(spec)
    if params is None:
        if spec.dtype == np.uint8:
            out = pixels
        else:  # int8: pixel - 128 is the pixel with its top bit flipped
            out = np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)
    else:
        mult, offset = params
        x = pixels.astype(np.float32) * np.float32(mult) + np.float32(offset)
        if spec.quantized:
            info = np.iinfo(np.int8 if spec.dtype == np.int8 else np.uint8)
            out = np.clip(np.rint(x), info.min, info.max).astype(spec.dtype)
        else:
            out = x.astype(spec.dtype)
    return out[np.newaxis, ...]
