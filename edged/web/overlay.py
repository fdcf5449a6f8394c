"""The live frame as JPEG with the current top-k drawn over it.  Runs only when a viewer
asks for a frame, never in the pipeline."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

MIN_WIDTH = 480  # model-sized frames (224 px) are scaled up so the text stays readable


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_jpeg(
    image: npt.NDArray[np.uint8],
    top_k: Sequence[Mapping[str, Any]],
    *,
    ambiguous: bool = False,
    paused: bool = False,
    quality: int = 80,
) -> bytes:
    """``image`` (HxWx3 RGB) with one line per class (``label score``) in the top-left."""
    img = Image.fromarray(np.ascontiguousarray(image), "RGB")
    if img.width < MIN_WIDTH:
        scale = MIN_WIDTH / img.width
        img = img.resize((MIN_WIDTH, max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    size = max(12, img.width // 32)
    font = _font(size)
    lines = [f"{c.get('label')}  {float(c.get('score') or 0.0):.2f}" for c in top_k]
    if ambiguous:
        lines.append("(ambiguous)")
    if paused:
        lines.insert(0, "PAUSED")
    draw = ImageDraw.Draw(img, "RGBA")
    pad = size // 3
    y = pad
    for i, line in enumerate(lines):
        box = draw.textbbox((pad, y), line, font=font)
        draw.rectangle(
            (box[0] - pad, box[1] - pad // 2, box[2] + pad, box[3] + pad // 2), fill=(0, 0, 0, 150)
        )
        colour = (255, 220, 0, 255) if i == 0 else (255, 255, 255, 255)
        draw.text((pad, y), line, font=font, fill=colour)
        y = int(box[3]) + pad
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int = 90) -> bytes:
    """The frame as it is, JPEG-encoded (the snapshot command)."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()
