"""The AI camera's config keys and its network files, read without a camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.config import ConfigError, Imx500CaptureConfig, parse_config
from edged.infer.imx500 import NetworkError, inspect_network, softmax
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
