"""Turn an RGB frame into the tensor a model expects (crop, resize, normalize, quantize)."""

from edged.preprocess.image import crop_box, load_image, to_model_input
from edged.tensor import InputSpec

__all__ = ["InputSpec", "crop_box", "load_image", "to_model_input"]
