"""[[cameras]]: names, the keys of [capture], per-camera sections and models, and the one
camera that a [capture] config stands for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edged.config import ConfigError, load_config, parse_config


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {loc: msg for loc, msg, _ in info.value.problems}


def test_capture_alone_is_one_camera_without_a_name() -> None:
    cfg = parse_config({"capture": {"type": "replay", "fps": 5.0}, "classify": {"top_k": 3}})
    (camera,) = cfg.camera_list()
    assert camera.name is None and camera.capture is cfg.capture
    assert camera.classify is cfg.classify and camera.model is cfg.model


def test_no_capture_at_all_is_still_the_default_replay_camera() -> None:
    (camera,) = parse_config({}).camera_list()
    assert camera.name is None and camera.capture.type == "replay"


def test_cameras_take_the_capture_keys_and_override_sections() -> None:
    cfg = parse_config(
        {
            "classify": {"top_k": 5, "min_score": 0.2},
            "publish": {"policy": "on_change"},
            "collect": {"dir": "/tmp/c", "ambiguous": True},
            "models": {"doors": {"num_threads": 1}},
            "cameras": [
                {"name": "porch", "type": "stream", "url": "rtsp://10.0.0.2/s"},
                {
                    "name": "door",
                    "type": "replay",
                    "fps": 3.0,
                    "model": "doors",
                    "classify": {"top_k": 2},
                    "publish": {"confirm_frames": 3},
                    "collect": {"dir": "/tmp/door"},
                    "regions": [{"name": "left", "width": 0.5}],
                },
            ],
        }
    )
    porch, door = cfg.camera_list()
    assert porch.name == "porch" and porch.capture.url == "rtsp://10.0.0.2/s"
    assert porch.classify == cfg.classify and porch.model is cfg.model
    assert porch.capture.credential == "camera_password_porch"
    assert door.capture.fps == 3.0 and door.capture.regions[0].name == "left"
    assert door.model == cfg.models["doors"] and door.model_name == "doors"
    # the keys a camera gives replace the device's; the others stay
    assert (door.classify.top_k, door.classify.min_score) == (2, 0.2)
    assert (door.publish.policy, door.publish.confirm_frames) == ("on_change", 3)
    assert (door.collect.dir, door.collect.ambiguous) == ("/tmp/door", True)


def test_capture_and_cameras_together_name_both() -> None:
    problems = _problems({"capture": {"type": "replay"}, "cameras": [{"name": "a"}]})
    assert "capture, cameras" in problems
    assert "[capture] and [[cameras]]" in problems["capture, cameras"]


@pytest.mark.parametrize(
    ("camera", "loc", "words"),
    [
        ({"name": "events"}, "cameras[1].name", "word of the topic layout"),
        ({"name": "state"}, "cameras[1].name", "word of the topic layout"),
        ({"name": "Front Door"}, "cameras[1].name", "a-z0-9_-"),
        ({"name": "x" * 33}, "cameras[1].name", "a-z0-9_-"),
        ({}, "cameras[1].name", "Field required"),
        ({"name": "b", "type": "stream", "url": "ftp://h/x"}, "cameras[1].url", "rtsp://"),
        ({"name": "b", "type": "stream"}, "cameras[1].url", "Field required"),
        ({"name": "b", "type": "tv"}, "cameras[1]", "valid types: 'replay'"),
        ({"name": "b", "fps": -1}, "cameras[1].fps", "greater than or equal"),
        ({"name": "b", "bogus": 1}, "cameras[1].bogus", "unknown key"),
        ({"name": "b", "classify": {"top_k": 0}}, "cameras[1].classify.top_k", "greater"),
        ({"name": "b", "regions": [{"name": "r", "x": 2}]}, "cameras[1].regions.0", "outside"),
    ],
)
def test_a_bad_camera_is_named_by_its_key_path(
    camera: dict[str, Any], loc: str, words: str
) -> None:
    problems = _problems({"cameras": [{"name": "a"}, camera]})
    assert loc in problems, problems
    assert words in problems[loc]


def test_every_bad_camera_is_reported_at_once() -> None:
    problems = _problems(
        {"cameras": [{"name": "a", "fps": -1}, {"name": "ok"}, {"name": "c", "type": "stream"}]}
    )
    assert {"cameras[0].fps", "cameras[2].url"} <= set(problems)


def test_cross_checks_repeated_names_unknown_models_and_merged_collect() -> None:
    problems = _problems(
        {
            "models": {"doors": {}},
            "cameras": [
                {"name": "a"},
                {"name": "a", "model": "cars"},
                {"name": "b", "regions": [{"name": "r", "model": "bikes"}]},
                {"name": "c", "collect": {"dir": "/tmp/x"}},
            ],
        }
    )
    assert "repeated" in problems["cameras[1].name"]
    assert problems["cameras[1].model"] == "no [models.cars]; models: doors"
    assert "no [models.bikes]" in problems["cameras[2].regions.0.model"]
    assert "no rule selects frames" in problems["cameras[3].collect"]


def test_a_cameras_collect_dir_takes_the_devices_rules() -> None:
    cfg = parse_config(
        {"collect": {"every_s": 5.0}, "cameras": [{"name": "a", "collect": {"dir": "/tmp/a"}}]}
    )
    assert cfg.camera_list()[0].collect.every_s == 5.0


def test_empty_cameras_list_is_an_error() -> None:
    assert "cameras" in _problems({"cameras": []})


def test_model_names_are_checked() -> None:
    assert "models" in _problems({"models": {"Big Model": {}}})


def test_cameras_from_toml_and_missing_replay_paths(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        """
[[cameras]]
name = "yard"
type = "replay"
paths = ["/no/such/photo.jpg"]

[[cameras]]
name = "gate"
type = "stream"
url = "http://127.0.0.1:8081/mjpeg"
[cameras.publish]
policy = "interval"
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(f, {}, check_files=True)
    assert ("cameras[0].paths.0", "does not exist", "/no/such/photo.jpg") in info.value.problems
    f.write_text(f.read_text().replace("/no/such/photo.jpg", str(tmp_path)))
    yard, gate = load_config(f, {}, check_files=True).camera_list()
    assert gate.publish.policy == "interval" and yard.publish.policy == "every_frame"


def test_capture_and_cameras_are_named_together_with_schema_errors() -> None:
    problems = _problems({"capture": {"type": "replay"}, "cameras": [{"name": "events"}]})
    assert {"capture, cameras", "cameras[0].name"} <= set(problems)


def test_a_url_with_credentials_is_shown_redacted() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": [{"name": "a", "type": "stream", "url": "rtsp://u:pw@h/x"}]})
    assert "pw" not in info.value.render() and "rtsp://***@h/x" in info.value.render()


def test_an_ai_cameras_cpu_twin_is_its_model_under_cameras() -> None:
    twin = {"type": "imx500", "network": "/usr/share/imx500-models/n.rpk"}
    problems = _problems({"cameras": [{"name": "door", **twin, "cpu_model": "/m/twin.tflite"}]})
    assert "[models.NAME]" in problems["cameras[0].cpu_model"]
    cfg = parse_config(
        {
            "models": {"twin": {"path": "/m/twin.tflite"}},
            "cameras": [{"name": "door", **twin, "model": "twin"}],
        }
    )
    (camera,) = cfg.camera_list()
    assert camera.model.path == "/m/twin.tflite"


def test_one_edge_tpu_device_takes_one_set_of_options() -> None:
    """Models that share a device share its worker, which opens it once."""
    tpu = {"backend": "edgetpu", "edgetpu_device": "usb:0"}
    cameras = [{"name": "a", "model": "doors"}, {"name": "b", "model": "gate"}]
    problems = _problems(
        {
            "models": {
                "doors": {**tpu, "edgetpu_options": {"usb_max_bulk_in_queue_length": "32"}},
                "gate": tpu,
            },
            "cameras": cameras,
        }
    )
    assert problems["models.gate.edgetpu_options"] == (
        "[models.doors] names Edge TPU device 'usb:0' too, with "
        "{'usb_max_bulk_in_queue_length': '32'}: one device is opened once, with one set "
        "of options; give both the same edgetpu_options or different edgetpu_device values"
    )
    # another device, the same options, a CPU model, or [model] unused: no problem
    for gate in (
        {**tpu, "edgetpu_device": "usb:1"},
        {**tpu, "edgetpu_options": {"usb_max_bulk_in_queue_length": "32"}},
        {"backend": "cpu"},
    ):
        models = {"doors": {**tpu, "edgetpu_options": {"usb_max_bulk_in_queue_length": "32"}}}
        parse_config({"models": {**models, "gate": gate}, "cameras": cameras})
    parse_config(
        {
            "model": tpu,
            "models": {"doors": {**tpu, "edgetpu_options": {"x": "1"}}},
            "cameras": [{"name": "a", "model": "doors"}],
        }
    )
    # [model] used beside a [models.NAME] on its device
    problems = _problems(
        {
            "model": tpu,
            "models": {"doors": {**tpu, "edgetpu_options": {"x": "1"}}},
            "cameras": [{"name": "a"}, {"name": "b", "model": "doors"}],
        }
    )
    assert "[model] names Edge TPU device 'usb:0'" in problems["models.doors.edgetpu_options"]


def test_edge_tpu_names_that_may_be_one_device_are_an_error() -> None:
    """'' (the first found) beside 'usb:0', or 'usb' beside 'usb:1', may be one Coral:
    two worker processes would race for it and one model would run on the CPU."""
    cameras = [{"name": "a", "model": "doors"}, {"name": "b", "model": "gate"}]

    def config(doors: str, gate: str) -> dict[str, object]:
        return {
            "models": {
                "doors": {"backend": "edgetpu", "edgetpu_device": doors},
                "gate": {
                    "backend": "auto",
                    "path": "/m/gate_edgetpu.tflite",
                    "edgetpu_device": gate,
                },
            },
            "cameras": cameras,
        }

    for doors, gate in (("", "usb:0"), ("usb", "usb:1"), ("pci:0", "pci"), ("pci", "")):
        problems = _problems(config(doors, gate))
        assert set(problems) == {"models.gate.edgetpu_device"}, (doors, gate)
        message = problems["models.gate.edgetpu_device"]
        assert message.startswith(
            f"[models.doors] names Edge TPU device {doors or '(the first found)'!r} and this "
            f"model {gate or '(the first found)'!r}: both may be the same Edge TPU"
        )
        assert "(usb:0, usb:1, pci:0)" in message
    # one name for one device, distinct indices, distinct types, or a CPU model: valid
    for doors, gate in (("usb:0", "usb:0"), ("usb:0", "usb:1"), ("usb", "pci"), ("", "")):
        parse_config(config(doors, gate))
    # a CPU model, or 'auto' on a file not compiled for the Edge TPU (the bundled model),
    # opens no Edge TPU
    for gate_model in (
        {"backend": "cpu", "edgetpu_device": "usb:0"},
        {"backend": "auto", "path": "/m/gate.tflite", "edgetpu_device": "usb:0"},
    ):
        parse_config(
            {
                "models": {
                    "doors": {"backend": "edgetpu", "edgetpu_device": ""},
                    "gate": gate_model,
                },
                "cameras": cameras,
            }
        )
