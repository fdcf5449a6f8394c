"""edged.train's parts: dataset rules, the head's maths, its int8 form and the model surgery."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edged.infer.bundled import default_model_path
from edged.infer.model import inspect_model
from edged.train import head as heads
from edged.train.dataset import DatasetError, check_label, label_lines, order_classes, scan
from edged.train.pipeline import IntHead, folds
from edged.train.tflite import BaseModel, BaseModelError, op_names, read_model


@pytest.fixture(scope="module")
def base() -> BaseModel:
    return BaseModel(default_model_path().read_bytes(), "bundled")


def blobs(n: int, classes: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features like a ReLU6 + mean pool: one bump per class plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 3, (classes, dim)).astype(np.float32)
    y = np.arange(n) % classes
    x = np.clip(centres[y] + rng.normal(0, 0.6, (n, dim)), 0, 6).astype(np.float32)
    return x, y.astype(np.int64)


def test_labels_order_and_file_lines() -> None:
    assert order_classes(["squirrel", "background", "blue tit"]) == [
        "blue tit",
        "squirrel",
        "background",
    ]  # a background at index 0 would be hidden like ImageNet's
    assert label_lines(["blue tit", "café"]) == ["blue tit", "café"]
    # labels that would read back as "index label" lines are written with their index
    assert label_lines(["1 apple", "2 pear"]) == ["0 1 apple", "1 2 pear"]
    assert check_label("garage door open") is None and check_label("Kohlmeise ü") is None
    assert check_label("a/b") == "contains a slash"
    assert check_label(" x") == "has leading or trailing spaces"
    assert check_label("a\tb") is not None


def test_scan_ignores_loose_and_hidden_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for cls in ("b", "a"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "1.jpg").write_bytes(b"x")
        (tmp_path / cls / ".thumbs").mkdir()  # hidden: not a nested class folder
    (tmp_path / "a" / "1.json").write_text("{}")  # a [collect] sidecar beside its frame
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".cache").mkdir()
    with caplog.at_level(logging.WARNING):
        ds = scan(tmp_path)
    assert ds.classes == ["a", "b"] and [p.name for p in ds.files["a"]] == ["1.jpg"]
    assert "notes.txt" in caplog.text
    with pytest.raises(DatasetError, match="no class folders"):
        scan(tmp_path / "a")


def test_softmax_regression_separates_and_l2_shrinks(tmp_path: Path) -> None:
    x, y = blobs(120, 4, 64)
    strong, _ = heads.fit(x, y, 4, 1.0)
    weak, _ = heads.fit(x, y, 4, 1e-3)
    assert (weak.predict(x) == y).mean() == 1.0
    assert np.linalg.norm(strong.weights) < np.linalg.norm(weak.weights)
    # warm start from a neighbouring solution lands on the same optimum, faster
    warm, _ = heads.fit(x, y, 4, 1e-3, init=strong)
    assert warm.iterations <= weak.iterations
    np.testing.assert_allclose(warm.logits(x), weak.logits(x), atol=0.15)


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


def test_folds_are_stratified_and_disjoint() -> None:
    labels = [0] * 25 + [1] * 30
    method, split = folds(labels, 2, 0.2, seed=0)
    assert method.startswith("stratified split") and len(split) == 1
    train, val = split[0]
    assert sorted([*train, *val]) == list(range(55))
    assert np.bincount(np.asarray(labels)[val]).tolist() == [5, 6]
    method, split = folds([0] * 8 + [1] * 30, 2, 0.2, seed=0)
    assert method.startswith("5-fold") and len(split) == 5
    held = np.concatenate([v for _, v in split])
    assert sorted(held) == list(range(38))  # every image held out exactly once
    for train, val in split:
        assert not set(train) & set(val)
        assert set(np.asarray([0] * 8 + [1] * 30)[val]) == {0, 1}


def test_model_surgery_keeps_the_base_and_swaps_the_head(base: BaseModel, tmp_path: Path) -> None:
    features = base.feature_model()
    assert op_names(features)[-1] == "MEAN"
    fm = read_model(features)
    assert list(fm.subgraphs[0].tensors[fm.subgraphs[0].outputs[0]].shape) == [1, 1280]
    with pytest.raises(BaseModelError, match="no recognisable final classifier"):
        BaseModel(features, "cut")
    x, y = blobs(40, 2, 1280)
    qh = heads.quantize(heads.fit(x, y, 2, 0.1)[0], 0.0235, -128, x)
    assert op_names(base.head_model(qh)) == ["FULLY_CONNECTED", "SOFTMAX"]
    out = tmp_path / "two.tflite"
    out.write_bytes(base.with_head(qh, ["yes", "no"]))
    model = inspect_model(out)
    assert model.embedded_labels == ("yes", "no")
    assert model.normalization is None  # no metadata given: none written
    assert out.stat().st_size < default_model_path().stat().st_size
