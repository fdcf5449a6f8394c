"""edged.train's parts: dataset rules and the head's maths (its int8 form in the runtime and
the model surgery on the bundled model are in tests/integration/test_train_surgery.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edged.train import head as heads
from edged.train.dataset import DatasetError, check_label, label_lines, order_classes, scan
from edged.train.pipeline import folds


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
