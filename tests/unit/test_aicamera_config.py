"""The AI camera's config keys, its network files read without a camera, and the
classification of its tensors (labels, background, allow/deny)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edged.classify import Classifier
from edged.config import ClassifyConfig, ConfigError, Imx500CaptureConfig, ModelConfig, parse_config
from edged.engine import Engine, open_engine
from edged.infer.imx500 import NetworkError, inspect_network, softmax
from edged.tensor import SensorOutput
from tests.aicamera import imx500_sim

write_rpk = imx500_sim.write_rpk  # a file writer; nothing is simulated here


def test_imx500_keys_parsed_with_defaults() -> None:
    cfg = parse_config(
        {"capture": {"type": "imx500", "network": "/usr/share/imx500-models/net.rpk"}}
    ).capture
    assert isinstance(cfg, Imx500CaptureConfig)
    assert cfg.fps == 30.0 and cfg.upload_timeout_s == 600.0 and cfg.cpu_model == ""


@pytest.mark.parametrize(
    ("capture", "message"),
    [
        ({}, "network"),
        ({"network": "model.tflite"}, "is not an IMX500 network package (.rpk)"),
        ({"network": "n.rpk", "retry_min_s": 30, "retry_max_s": 10}, "retry_max_s 10"),
        ({"network": "n.rpk", "upload_s": 3}, "upload_s"),
        ({"network": "n.rpk", "tensor_timeout_s": 0}, "tensor_timeout_s"),
    ],
)
def test_bad_imx500_keys_named(capture: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"capture": {"type": "imx500", **capture}})
    assert message in str(err.value)


def test_unknown_capture_type_lists_imx500() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"capture": {"type": "imx501"}})
    assert "'imx500'" in str(err.value)


def test_network_file_read_without_a_camera(tmp_path: Path) -> None:
    labels = [f"class {i}" for i in range(10)]
    net = inspect_network(write_rpk(tmp_path / "n.rpk", width=260, height=256, labels=labels))
    assert net.input_size == (260, 256)
    assert net.labels == tuple(labels) and not net.softmax and net.task == "classification"
    assert len(net.sha256) == 64


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("not rpk", "is not an IMX500 network package"),
        ("detector", "is a 'object detection' network; edged needs a classifier"),
        ("truncated", "without its footer"),
    ],
)
def test_bad_network_files_named(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "n.rpk"
    if case == "not rpk":
        path.write_bytes(b"TFL3" + bytes(100))
    elif case == "detector":
        write_rpk(path, task="object detection")
    elif case == "truncated":
        path.write_bytes(write_rpk(path).read_bytes()[:1000])
    with pytest.raises(NetworkError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inspect_network(path)


def test_softmax_is_a_distribution_that_keeps_the_order() -> None:
    logits = np.array([2.0, -1.0, 0.5, 7.0], np.float32)
    p = softmax(logits)
    assert p.sum() == pytest.approx(1.0) and list(np.argsort(p)) == list(np.argsort(logits))


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    e = open_engine(ModelConfig(num_threads=1), ClassifyConfig(top_k=3))
    yield e
    e.close()


def sensor(scores: np.ndarray, labels: tuple[str, ...] | None = None) -> SensorOutput:
    return SensorOutput(scores.astype(np.float32), labels, "test", "n.rpk", "imx500", 2.0)


def test_1001_output_network_takes_the_cpu_models_1000_labels_behind_background(
    engine: Engine,
) -> None:
    scores = np.zeros(1001, np.float32)
    scores[0], scores[968] = 0.5, 0.4  # background, then "espresso" (967 + 1)
    out = sensor(scores)
    top = engine.classify(engine.sensor_inference(out), out).classification.top_k
    assert top[0].label == "espresso" and top[0].id == 968  # background never reported


def test_network_labels_win_and_a_wrong_count_is_a_lost_frame_not_a_crash(
    engine: Engine,
) -> None:
    out = sensor(np.array([0.1, 0.7, 0.2]), ("cat", "dog", "bird"))
    result = engine.classify(engine.sensor_inference(out), out)
    assert [c.label for c in result.classification.top_k] == ["dog", "bird", "cat"]
    assert result.backend == "imx500" and result.ms == 2.0
    bad = sensor(np.array([0.1, 0.7, 0.2]), ("cat",))
    with pytest.raises(ValueError, match=r"has 1 labels but n\.rpk outputs 3 classes"):
        engine.classify(engine.sensor_inference(bad), bad)


def test_allow_and_deny_apply_to_the_sensors_labels(engine: Engine) -> None:
    out = sensor(np.array([0.1, 0.7, 0.2]), ("cat", "dog", "bird"))
    engine.classifier = Classifier(engine.labels, ClassifyConfig(deny=["dog"], top_k=3))
    try:
        top = engine.classify(engine.sensor_inference(out), out).classification.top_k
    finally:
        engine.classifier = Classifier(engine.labels, ClassifyConfig(top_k=3))
    assert [c.label for c in top] == ["bird", "cat"]
