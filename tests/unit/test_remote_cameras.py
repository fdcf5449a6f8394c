"""Commands with a camera: a camera-scoped `set` and a camera's snapshot."""

from __future__ import annotations

import json

import pytest

from edged.config import parse_config
from edged.control.request import CommandError, parse_request

CFG = parse_config(
    {
        "classify": {"top_k": 5},
        "cameras": [{"name": "hall"}, {"name": "gate", "classify": {"top_k": 2}}],
    }
)


def _request(**data: object) -> bytes:
    return json.dumps(data).encode()


def test_set_for_one_camera_starts_from_that_cameras_sections() -> None:
    req = parse_request(_request(cmd="set", camera="gate", classify={"min_score": 0.3}), CFG)
    assert req.camera == "gate"
    classify = req.sections["classify"]
    assert (classify.top_k, classify.min_score) == (2, 0.3)  # type: ignore[attr-defined]
    req = parse_request(_request(cmd="set", classify={"min_score": 0.3}), CFG)
    assert req.camera is None and req.sections["classify"].top_k == 5  # type: ignore[attr-defined]


def test_snapshot_takes_a_camera() -> None:
    assert parse_request(_request(cmd="snapshot", camera="hall"), CFG).camera == "hall"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"cmd": "snapshot", "camera": "porch"}, "no camera 'porch'; cameras: hall, gate"),
        ({"cmd": "snapshot", "camera": 3}, "no camera 3"),
        ({"cmd": "pause", "camera": "hall"}, "pause: takes no camera"),
    ],
)
def test_a_bad_camera_is_refused_naming_the_cameras(data: dict[str, object], words: str) -> None:
    with pytest.raises(CommandError, match=words):
        parse_request(_request(**data), CFG)


def test_a_capture_config_has_no_cameras_to_name() -> None:
    with pytest.raises(CommandError, match="the config has no"):
        parse_request(_request(cmd="snapshot", camera="hall"), parse_config({}))
