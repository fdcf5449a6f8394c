"""``edged train --recipe deep`` end to end on photos cut from edged/samples: fine-tune the
last blocks in PyTorch, convert to int8 through edged.train.convert, and run the result with
the daemon's own classifier.  Needs the ``learn`` extra (PyTorch, litert-torch); without it
the test skips and names what is missing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edged.train import TrainOptions, train
from edged.train.deep import DeepParams, missing
from edged.train.tflite import op_names
from tests.integration.test_train import CLASSES, make_dataset
from tests.support import run_edged

ABSENT = missing()
pytestmark = pytest.mark.skipif(
    bool(ABSENT),
    reason=f"the deep recipe needs the learn extra: {', '.join(ABSENT)} not installed "
    "(pip install torch==2.13.0 and then -e '.[learn]', or make venv-learn)",
)
TWO = dict(list(CLASSES.items())[::2])  # two classes: the cat and the rocket


def test_deep_recipe_writes_a_drop_in_int8_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.integration.test_train.CLASSES", TWO)
    data, out = tmp_path / "data", tmp_path / "deep.tflite"
    held = make_dataset(data, per_class=8)
    params = DeepParams(epochs=2, views=2, calibration=8)
    report = train(TrainOptions(data, out, recipe="deep", deep=params, threads=1, seed=0))

    assert report["recipe"] == "deep"
    classes = sorted(TWO)
    assert report["classes"] == classes
    val = report["validation"]
    # 20 % of 8 photos per class held out: 2 per class, scored by the int8 model
    assert val["images"] == 4
    matrix = np.asarray(val["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == 4
    assert val["accuracy_int8"] == pytest.approx(np.trace(matrix) / 4)
    assert report["deep"]["epochs"] == 2 and report["deep"]["threads"] == 1
    assert report["deep"]["nice"] >= 10
    assert 0 < report["deep"]["peak_rss_bytes"] < 3_000_000_000

    # a full-integer drop-in: int8 image in, int8 softmax out, labels embedded
    blob = out.read_bytes()
    ops = set(op_names(blob))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= ops
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops
    with zipfile.ZipFile(out) as zf:
        assert zf.read("labels.txt").decode().splitlines() == classes
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["recipe"] == "deep" and manifest["sha256"] == report["sha256"]

    # the daemon's classifier runs it as is, with the labels from the model
    done = run_edged("classify", "--model", str(out), "--json", *(str(p) for p in held.values()))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 2
    for row in rows:
        assert row["label"] in classes
        assert [k["label"] for k in row["top_k"]] == sorted(
            classes, key=lambda c: c != row["label"]
        )
