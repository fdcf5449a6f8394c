from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.infer.model import ModelError, inspect_model, parse_label_lines
from edged.preprocess import InputSpec, crop_box, to_model_input
from edged.preprocess.image import ImageError


def test_crop_box_center() -> None:
    assert crop_box(640, 480, 1.0) == (80, 0, 560, 480)
    assert crop_box(100, 100, 0.5) == (25, 25, 75, 75)
    with pytest.raises(ValueError):
        crop_box(10, 10, 0.0)


def frame(h: int = 60, w: int = 80, value: int = 100) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_uint8_identity_quantization_feeds_pixels() -> None:
    spec = InputSpec(32, 32, np.dtype(np.uint8), 0.0078125, 128, 127.5, 127.5)
    out = to_model_input(frame(), spec)
    assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8
    assert int(out[0, 0, 0, 0]) == 100


def test_int8_uses_tensor_quantization() -> None:
    # x = (p - 127) / 128 ; q = x / scale + zp
    spec = InputSpec(8, 8, np.dtype(np.int8), 0.0078, -1, 127.0, 128.0)
    out = to_model_input(frame(value=255), spec)
    expected = round((255 - 127) / 128 / 0.0078 - 1)
    assert out.dtype == np.int8 and int(out[0, 0, 0, 0]) == min(expected, 127)


def test_float_normalization_and_resize() -> None:
    spec = InputSpec(16, 16, np.dtype(np.float32), mean=127.0, std=128.0)
    out = to_model_input(frame(value=255), spec, crop="none")
    assert out.dtype == np.float32 and out[0, 3, 3, 1] == pytest.approx(1.0, abs=1e-6)


def test_bad_frame() -> None:
    spec = InputSpec(16, 16, np.dtype(np.uint8))
    with pytest.raises(ImageError, match="HxWx3"):
        to_model_input(np.zeros((10, 10), np.uint8), spec)


def test_label_formats() -> None:
    assert parse_label_lines(["cat", "dog", ""]) == ["cat", "dog"]
    assert parse_label_lines(["0 cat", "1  dog"]) == ["cat", "dog"]
    assert parse_label_lines(["0: cat", "2: bird"]) == ["cat", "1", "bird"]
    assert parse_label_lines(["3 little pigs", "wolf"]) == ["3 little pigs", "wolf"]


def test_inspect_rejects_non_models(tmp_path: Path) -> None:
    p = tmp_path / "m.tflite"
    p.write_bytes(b"")
    with pytest.raises(ModelError, match="not a TFLite model"):
        inspect_model(p)
    with pytest.raises(ModelError, match="does not exist"):
        inspect_model(tmp_path / "absent.tflite")
    p.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 8)
    with pytest.raises(ModelError, match="truncated or corrupt"):
        inspect_model(p)


def test_int8_x_minus_128_is_one_xor_and_matches_the_arithmetic() -> None:
    # the bundled model: scale 1/128, zero point -1, mean 127, std 128 -> exactly x - 128
    spec = InputSpec(4, 4, np.dtype(np.int8), 1 / 128, -1, 127.0, 128.0)
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    out = to_model_input(pixels, spec, crop="none")
    assert out.dtype == np.int8 and out.shape == (1, 4, 4, 3)
    assert (out[0].astype(int) == pixels.astype(int) - 128).all()


def test_a_frame_at_the_model_size_is_not_cropped_again() -> None:
    spec = InputSpec(8, 8, np.dtype(np.uint8))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = to_model_input(pixels, spec, crop="center", crop_fraction=0.875)
    assert (out[0] == pixels).all()
    larger = np.repeat(np.repeat(pixels, 2, axis=0), 2, axis=1)  # 16x16: cropped, then scaled
    assert to_model_input(larger, spec, crop="center", crop_fraction=0.5).shape == (1, 8, 8, 3)
