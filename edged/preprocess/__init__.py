"""Turn an image into the tensor a model expects (decode, crop, resize, normalize, quantize).

:func:`prepare` is the one entry point from a file (path or bytes) to a model input; the
daemon's capture stage uses its two halves, :func:`load_image` at :func:`decode_size`, then
:func:`to_model_input`.
"""

from edged.preprocess.image import (
    ImageError,
    ImageSource,
    crop_box,
    decode_size,
    load_image,
    prepare,
    to_model_input,
)
from edged.tensor import InputSpec

__all__ = [
    "ImageError",
    "ImageSource",
    "InputSpec",
    "crop_box",
    "decode_size",
    "load_image",
    "prepare",
    "to_model_input",
]
