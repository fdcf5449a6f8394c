"""Remote operation's pure parts: command validation, discovery schemas, the state throttle,
redaction, metrics, and the controller's error handling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from edged import wire
from edged.config import Config, ConfigError, ModelConfig, parse_config, parse_listen
from edged.control.controller import Controller
from edged.control.request import CommandError, parse_request
from edged.health.metrics import Metrics
from edged.publish.base import Message
from edged.publish.homeassistant import Discovery, StateThrottle, entities, node_id
from edged.web import redact
from tests.support import FakePublisher


def err(payload: bytes | dict[str, Any], cfg: Config | None = None) -> CommandError:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(CommandError) as info:
        parse_request(raw, cfg or Config())
    return info.value


def test_set_is_validated_by_the_config_models_and_merged() -> None:
    cfg = parse_config({"classify": {"top_k": 3, "deny": ["cup"]}})
    req = parse_request(b'{"id": 42, "cmd": "set", "classify": {"min_score": 0.2}}', cfg)
    assert req.id == "42" and req.cmd == "set"
    new = req.sections["classify"]
    assert new.model_dump() == {**cfg.classify.model_dump(), "min_score": 0.2}
    assert cfg.classify.min_score == 0.0  # nothing changed in place


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"cmd": "set", "classify": {"top_k": 0}}, "classify.top_k: Input should be greater"),
        ({"cmd": "set", "classify": {"top_k": True}}, "classify.top_k: Input should be a valid"),
        ({"cmd": "set", "classify": {"top_k": 2.0}}, "classify.top_k"),
        ({"cmd": "set", "publish": {"policy": "x"}}, "'every_frame', 'on_change' or 'interval'"),
        ({"cmd": "set", "classify": {"nope": 1}}, "valid keys: top_k, min_score"),
        ({"cmd": "set"}, "nothing to change"),
        ({"cmd": "set", "classify": {}}, "nothing to change"),
        ({"cmd": "reload", "model": {"sha256": "a" * 64}}, "model.path"),
        ({"cmd": "reload", "model": {"path": "m", "sha256": "a" * 64, "zz": 1}}, "model.zz"),
        ({"cmd": "resume", "model": {}}, "it takes none"),
        (
            {"cmd": "reload", "model": {"path": "m", "sha256": "a" * 64, "edgetpu_library": "x"}},
            "model.edgetpu_library cannot be changed by a command",
        ),
        ({"id": {"a": 1}, "cmd": "pause"}, "id must be a string or an integer"),
        ({"id": "x" * 200, "cmd": "pause"}, "longer than 128"),
    ],
)
def test_bad_commands_name_the_problem(payload: dict[str, Any], text: str) -> None:
    assert text in str(err(payload))


def test_oversize_and_malformed() -> None:
    assert "limit is 65536" in str(err(b" " * (wire.MAX_COMMAND_BYTES + 1)))
    assert "not JSON" in str(err(b"{"))
    assert "JSON string" in str(err(b'"pause"'))


def test_reload_keeps_device_settings_and_drops_the_old_models() -> None:
    cfg = parse_config({"model": {"num_threads": 4, "labels": "/old.txt", "mean": 127.5}})
    req = parse_request(
        json.dumps({"cmd": "reload", "model": {"path": "/m.tflite", "sha256": "b" * 64}}).encode(),
        cfg,
    )
    model = req.sections["model"]
    assert isinstance(model, ModelConfig)
    assert (model.path, model.num_threads, model.labels, model.mean) == ("/m.tflite", 4, "", None)


def test_discovery_configs() -> None:
    d = Discovery("homeassistant", "edged/cam.1", "cam.1", "Raspberry Pi 5", ("front door",))
    msgs = dict(d.messages())
    assert len(msgs) == len(entities(("front door",))) == 8
    for topic, payload in msgs.items():
        cfg = json.loads(payload)
        assert topic.startswith("homeassistant/") and "/cam_1/" in topic
        assert cfg["default_entity_id"].split(".")[1] == cfg["object_id"]
        assert cfg["availability"][0]["topic"] == "edged/cam.1/status"
        assert cfg["device"]["identifiers"] == ["edged_cam.1"]
        assert cfg["origin"]["name"] == "edged"
    amb = json.loads(msgs["homeassistant/binary_sensor/cam_1/ambiguous/config"])
    assert (amb["payload_on"], amb["payload_off"]) == ("ON", "OFF")
    assert "'ON' if value_json.ambiguous" in amb["value_template"]
    region = json.loads(msgs["homeassistant/sensor/cam_1/label_front_door/config"])
    assert region["state_topic"] == "edged/cam.1/state/front door"
    assert all(p == b"" for _, p in d.removals())
    assert node_id("a.b/c") == "a_b_c"


def test_state_throttle() -> None:
    t = StateThrottle(10.0)
    assert t.due("", "cat", False, 0.0)
    assert not t.due("", "cat", False, 5.0)
    assert t.due("", "dog", False, 6.0)  # a change goes at once
    assert t.due("", "dog", True, 6.1)
    assert t.due("door", "dog", True, 6.2)  # regions apart
    assert not t.due("", "dog", True, 15.0)
    assert t.due("", "dog", True, 16.2)


def test_redact() -> None:
    data = {
        "mqtt": {"password_file": "/p", "username": "u", "url": "mqtt://a:b@host:1883"},
        "web": {"password_file": ""},
        "x": [{"api_token": "t"}],
    }
    out = redact(data)
    assert out["mqtt"] == {"password_file": "***", "username": "u", "url": "mqtt://***@host:1883"}
    assert out["web"]["password_file"] == ""
    assert out["x"] == [{"api_token": "***"}]


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    for bad in ("9108", "host:", ":80", "h:99999"):
        with pytest.raises(ValueError, match="host:port"):
            parse_listen(bad)
    with pytest.raises(ConfigError, match=r"web\.listen"):
        parse_config({"web": {"listen": "nowhere"}})


def test_metrics_render() -> None:
    snap = {
        "frames_processed": 7,
        "fps": 2.5,
        "backend": "edgetpu",
        "model": "m.tflite",
        "fallbacks": 1,
        "disk_write_bytes": 4096,
        "cpu_temp_c": None,
        "mqtt_connected": True,
        "paused": False,
    }
    m = Metrics(lambda: snap, "ai_edge_litert")
    m.observe_inference(12.0)
    m.count_command("set", True)
    m.count_command("rm -rf", False)
    text = m.render().decode()
    assert "edged_frames_processed_total 7.0" in text
    assert "edged_fps 2.5" in text
    assert 'edged_backend_info{backend="edgetpu",model="m.tflite"} 1.0' in text
    assert "edged_tpu_fallbacks_total 1.0" in text
    assert "edged_disk_write_bytes_total 4096.0" in text
    assert "edged_cpu_temperature_celsius" not in text  # no sensor: no sample
    assert "edged_mqtt_connected 1.0" in text
    assert 'edged_inference_seconds_bucket{le="0.02"} 1.0' in text
    assert 'edged_commands_total{cmd="invalid",result="error"} 1.0' in text
    assert 'runtime="ai_edge_litert"' in text


class _Target:
    def __init__(self) -> None:
        self.applied: list[dict[str, BaseModel]] = []

    def effective_config(self) -> Config:
        return Config()

    def apply_settings(self, sections: dict[str, BaseModel], camera: str | None = None) -> None:
        self.applied.append(sections)

    def snapshot(self, camera: str | None = None) -> None:
        return None

    def reload_model(self, model: ModelConfig) -> dict[str, Any]:
        raise RuntimeError("device vanished")

    def set_paused(self, paused: bool) -> bool:
        return False


@pytest.mark.allow_logged_exceptions
def test_controller_replies_to_everything() -> None:
    pub, target = FakePublisher(), _Target()
    c = Controller(target, pub, device="cam-1", base="edged/cam-1")
    msg = Message("edged/cam-1/cmd", b'{"id":"1","cmd":"snapshot"}', "reply/here", b"c1")
    c.reply(msg, c.handle(msg))
    topic, payload, corr = pub.sent[-1]
    reply = json.loads(payload)
    assert (topic, corr, reply["ok"], reply["error"]) == (
        "reply/here",
        b"c1",
        False,
        "no frame captured yet",
    )
    model = {"path": "/m", "sha256": "a" * 64}
    msg = Message(
        "edged/cam-1/cmd", json.dumps({"id": "2", "cmd": "reload", "model": model}).encode()
    )
    c.reply(msg, c.handle(msg))
    topic, payload, corr = pub.sent[-1]
    reply = json.loads(payload)
    assert topic == "edged/cam-1/cmd/result" and corr is None
    assert reply["id"] == "2" and "internal error: device vanished" in reply["error"]
    for _ in range(40):  # a flood: the queue is bounded, the rest get "busy"
        c.receive(Message("edged/cam-1/cmd", b'{"cmd":"pause"}'))
    assert any(b"busy" in p for _, p, _ in pub.sent)
    assert not target.applied
    retained = Message("edged/cam-1/cmd", b'{"cmd":"set","classify":{"top_k":1}}', retain=True)
    assert "retained command ignored" in str(c.handle(retained).error)
    assert not target.applied
