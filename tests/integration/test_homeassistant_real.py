"""A real Home Assistant (headless, its MQTT integration on the test's mosquitto) discovers the
device: its entities appear with edged's state, and become unavailable when edged stops.

Home Assistant needs Python >= 3.13 and its own venv: set ``EDGED_HA_PYTHON`` to that venv's
python (``python3.13 -m venv .venv-ha && .venv-ha/bin/pip install homeassistant==2025.4.4``;
``.venv-ha/bin/python`` is used when present).  Entity states are read back over MQTT through
Home Assistant's ``mqtt_statestream``."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import (
    ROOT,
    Mosquitto,
    Subscriber,
    replay_config,
    start_edged,
    stop_process,
)

HA_PYTHON = Path(os.environ.get("EDGED_HA_PYTHON", ROOT / ".venv-ha" / "bin" / "python"))
HA_INSTALLED = any(HA_PYTHON.parent.parent.glob("lib/python3*/site-packages/homeassistant/core.py"))
SAMPLE = ROOT / "edged" / "samples" / "coffee.jpg"


def ha_config_dir(path: Path, port: int) -> Path:
    (path / ".storage").mkdir(parents=True)
    (path / "configuration.yaml").write_text(
        "homeassistant:\n  name: edged-test\n  time_zone: UTC\n  unit_system: metric\n"
        "mqtt_statestream:\n  base_topic: hass\n  publish_attributes: true\n"
        "logger:\n  default: warning\n"
    )
    now = "2026-01-01T00:00:00+00:00"
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 2,
        "domain": "mqtt",
        "title": "127.0.0.1",
        "data": {"broker": "127.0.0.1", "port": port},
        "options": {"discovery": True, "discovery_prefix": "homeassistant"},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
        "discovery_keys": {},
        "subentries": [],
        "created_at": now,
        "modified_at": now,
    }
    (path / ".storage" / "core.config_entries").write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 5,
                "key": "core.config_entries",
                "data": {"entries": [entry]},
            }
        )
    )
    return path


@pytest.mark.skipif(not HA_INSTALLED, reason=f"Home Assistant not installed beside {HA_PYTHON}")
def test_home_assistant_discovers_the_device(tmp_path: Path, mosquitto: Mosquitto) -> None:
    hass_dir = ha_config_dir(tmp_path / "hass", mosquitto.port)
    states = Subscriber(mosquitto.port, "hass/#")
    births = Subscriber(mosquitto.port, "homeassistant/status")
    hass = subprocess.Popen(
        [str(HA_PYTHON), "-m", "homeassistant", "--config", str(hass_dir)],
        stdout=(tmp_path / "hass.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    cfg = replay_config(
        tmp_path,
        mosquitto.url,
        fps=2,
        paths=(str(SAMPLE),),
        sections="[homeassistant]\ndiscovery = true\n",
    )
    edged = None
    try:
        label = "hass/sensor/edged_cam_1_label/state"
        # Home Assistant first: edged announces on its birth message too
        assert births.wait(lambda: b"online" in [p for _, p, _ in births.messages], 300), (
            tmp_path / "hass.log"
        ).read_text()[-3000:]
        edged = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
        assert states.wait(lambda: _last(states, label) == b"espresso", 120), (
            (tmp_path / "hass.log").read_text()[-3000:],
            [m[0] for m in states.messages][:50],
        )
        assert states.wait(
            lambda: _last(states, "hass/binary_sensor/edged_cam_1_ambiguous/state") == b"off", 30
        )
        assert states.wait(
            lambda: _last(states, "hass/sensor/edged_cam_1_backend/state") == b"cpu", 30
        )
        top_k = _last(states, "hass/sensor/edged_cam_1_label/top_k")
        assert top_k and json.loads(top_k)[0]["label"] == "espresso"
        assert stop_process(edged) == 0
        edged = None
        assert states.wait(lambda: _last(states, label) == b"unavailable", 30)
    finally:
        if edged is not None:
            stop_process(edged)
        stop_process(hass, timeout=60)
        states.close()
        births.close()
    errors = [
        line
        for line in (tmp_path / "hass.log").read_text().splitlines()
        if "ERROR" in line and "mqtt" in line.lower()
    ]
    assert not errors, errors


def _last(sub: Subscriber, topic: str) -> bytes | None:
    found = [p for t, p, _ in sub.messages if t == topic]
    return found[-1] if found else None
