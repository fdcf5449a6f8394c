"""edged.train on the bundled model: the int8 head in the runtime, and the model surgery
(cutting the classifier off, writing a new head in).  Each step unpacks or packs the whole
5 MB flatbuffer through its object API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.infer.bundled import default_model_path
from edged.infer.model import inspect_model
from edged.train import head as heads
from edged.train.pipeline import IntHead
from edged.train.tflite import BaseModel, BaseModelError, op_names, read_model


@pytest.fixture(scope="module")
def base() -> BaseModel:
    return BaseModel(default_model_path().read_bytes(), "bundled")


def test_quantized_head_in_the_runtime_agrees_with_the_float_head(base: BaseModel) -> None:
    c = base.classifier
    assert (c.feature_size, c.base_classes) == (1280, 1000)
    rng = np.random.default_rng(1)
    # int8 features as the base produces them, three classes apart
    q = rng.integers(-128, -60, (90, c.feature_size)).astype(np.int8)
    y = np.arange(90) % 3
    for k in range(3):
        q[y == k, k * 100 : k * 100 + 100] += 60
    x = heads.dequantize_features(q, c.feature_scale, c.feature_zero_point)
    head, _ = heads.fit(x, y, 3, 0.01)
    qh = heads.quantize(head, c.feature_scale, c.feature_zero_point, x)
    assert qh.weights.dtype == np.int8 and np.abs(qh.weights).max() == 127
    np.testing.assert_allclose(qh.weight_scales, np.abs(head.weights).max(axis=1) / 127, rtol=1e-6)
    assert qh.bias.dtype == np.int32 and -128 <= qh.logit_zero_point <= 127
    runtime = IntHead(base, qh)
    scores = runtime.scores(q)
    assert scores.shape == (90, 3) and scores.dtype == np.int8
    assert (runtime.predict(q) == head.predict(x)).mean() == 1.0
    probs = (scores.astype(np.float32) + 128) / 256  # the softmax output's fixed quantization
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.03)


def test_model_surgery_keeps_the_base_and_swaps_the_head(base: BaseModel, tmp_path: Path) -> None:
    features = base.feature_model()
    assert op_names(features)[-1] == "MEAN"
    fm = read_model(features)
    assert list(fm.subgraphs[0].tensors[fm.subgraphs[0].outputs[0]].shape) == [1, 1280]
    with pytest.raises(BaseModelError, match="no recognisable final classifier"):
        BaseModel(features, "cut")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 6, (40, 1280)).astype(np.float32)
    y = np.arange(40) % 2
    qh = heads.quantize(heads.fit(x, y, 2, 0.1)[0], 0.0235, -128, x)
    assert op_names(base.head_model(qh)) == ["FULLY_CONNECTED", "SOFTMAX"]
    out = tmp_path / "two.tflite"
    out.write_bytes(base.with_head(qh, ["yes", "no"]))
    model = inspect_model(out)
    assert model.embedded_labels == ("yes", "no")
    assert model.normalization is None  # no metadata given: none written
    assert out.stat().st_size < default_model_path().stat().st_size
