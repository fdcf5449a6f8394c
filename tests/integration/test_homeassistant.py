"""Home Assistant discovery against a real mosquitto with the fleet's ACL: what a Home
Assistant user (``homeassistant``) receives, checked against the discovery schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import (
    Mosquitto,
    Subscriber,
    replay_config,
    run_edged,
    start_edged,
    stop_process,
)

jinja2 = pytest.importorskip("jinja2")

ENTITY_REQUIRED = {
    "name",
    "unique_id",
    "object_id",
    "default_entity_id",
    "state_topic",
    "value_template",
    "availability",
    "device",
    "origin",
}
DEVICE_REQUIRED = {"identifiers", "name", "model", "sw_version", "manufacturer"}


def ha_config(tmp_path: Path, port: int) -> Path:
    return replay_config(
        tmp_path,
        f"mqtt://127.0.0.1:{port}",
        fps=5,
        username="cam-1",
        sections="[homeassistant]\ndiscovery = true\nstate_interval_s = 1\n",
    )


def render(template: str, payload: bytes) -> str:
    """As Home Assistant renders a value_template: ``value`` and ``value_json``."""
    env = jinja2.Environment(autoescape=False)
    rendered: str = env.from_string(template).render(
        value=payload.decode(), value_json=json.loads(payload)
    )
    return rendered


def configs(sub: Subscriber) -> dict[str, bytes]:
    with sub._lock:
        return {t: p for t, p, _ in sub.messages if t.endswith("/config")}


def test_discovery_availability_and_reannounce(tmp_path: Path, acl_broker: Mosquitto) -> None:
    ha = Subscriber(
        acl_broker.port, "homeassistant/#", username="homeassistant", password="pw-homeassistant"
    )
    edged = Subscriber(
        acl_broker.port, "edged/#", username="homeassistant", password="pw-homeassistant"
    )
    proc = start_edged(
        "run", "--config", str(ha_config(tmp_path, acl_broker.port)), log=tmp_path / "edged.log"
    )
    try:
        assert ha.wait(lambda: len(configs(ha)) >= 7), (tmp_path / "edged.log").read_text()
        assert edged.wait(lambda: bool(edged.on("state")) and bool(edged.on("health")))
        found = configs(ha)
        kinds = {}
        for topic, payload in found.items():
            cfg = json.loads(payload)
            missing = ENTITY_REQUIRED - set(cfg)
            assert not missing, f"{topic} lacks {missing}"
            assert set(cfg["device"]) >= DEVICE_REQUIRED, cfg["device"]
            assert cfg["device"]["identifiers"] == ["edged_cam-1"]
            assert cfg["origin"]["name"] == "edged"
            assert cfg["availability"] == [
                {
                    "topic": "edged/cam-1/status",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ]
            component = topic.split("/")[1]
            assert topic == f"homeassistant/{component}/cam-1/{topic.split('/')[3]}/config"
            assert cfg["default_entity_id"] == f"{component}.{cfg['object_id']}"
            assert set(cfg["object_id"]) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
            # every template renders on what edged really publishes on its state topic
            suffix = cfg["state_topic"].removeprefix("edged/cam-1/")
            state_payload = edged.on(suffix)[-1][1]
            kinds[topic.split("/")[3]] = (component, render(cfg["value_template"], state_payload))
            if "json_attributes_topic" in cfg:
                attrs = json.loads(render(cfg["json_attributes_template"], state_payload))
                assert attrs["top_k"] and attrs["top_k"][0]["label"]
        assert set(kinds) == {
            "label",
            "score",
            "ambiguous",
            "fps",
            "inference_ms",
            "cpu_temperature",
            "backend",
        }
        state = json.loads(edged.on("state")[-1][1])
        assert edged.on("state")[-1][2] or retained_state(acl_broker)
        assert kinds["ambiguous"] == ("binary_sensor", "ON" if state["ambiguous"] else "OFF")
        assert kinds["backend"] == ("sensor", "cpu")
        float(kinds["score"][1])
        float(kinds["fps"][1])
        assert kinds["label"][0] == "sensor" and kinds["label"][1]

        # configs are retained: a Home Assistant starting later finds them
        late = Subscriber(
            acl_broker.port,
            "homeassistant/+/cam-1/+/config",
            username="homeassistant",
            password="pw-homeassistant",
        )
        assert late.wait(lambda: len(late.messages) >= 7, 5)
        assert all(r for _, _, r in late.messages)
        late.close()

        # Home Assistant's birth message: everything is announced again
        before = len(ha.messages)
        ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        assert ha.wait(lambda: len(ha.messages) >= before + 7 + 1, 10)
        assert "announced 7 entities" in (tmp_path / "edged.log").read_text()
        # availability follows status
        assert edged.on("status")[-1][1] == b"online"
    finally:
        assert stop_process(proc) == 0
    assert edged.wait(lambda: edged.on("status")[-1][1] == b"offline", 5)
    ha.close()
    edged.close()

    # `edged ha remove`: empty retained configs remove every entity
    done = run_edged("ha", "remove", "--config", str(ha_config(tmp_path, acl_broker.port)))
    assert done.returncode == 0, done.stderr
    assert "removed 7" in done.stdout
    after = Subscriber(
        acl_broker.port, "homeassistant/#", username="homeassistant", password="pw-homeassistant"
    )
    time.sleep(1.0)
    assert not [m for m in after.messages if m[1]], "discovery configs left behind"
    after.close()


def retained_state(broker: Mosquitto) -> bool:
    sub = Subscriber(
        broker.port, "edged/cam-1/state", username="homeassistant", password="pw-homeassistant"
    )
    try:
        return sub.wait(lambda: bool(sub.messages) and sub.messages[0][2], 5)
    finally:
        sub.close()
