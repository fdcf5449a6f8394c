"""A real Home Assistant (headless, its MQTT integration on the test's mosquitto) discovers the
device: its entities appear with edged's state, and become unavailable when edged stops; with
``[[cameras]]``, one Home Assistant device per camera, attached to the edged device.

Home Assistant needs Python >= 3.13 and its own venv: ``make venv-ha`` makes ``.venv-ha``
(Home Assistant 2025.4 and its MQTT integration's paho-mqtt), or set ``EDGED_HA_PYTHON`` to
such a venv's python.  Home Assistant runs with ``--skip-pip``: it installs nothing while the
test runs.  Entity states are read back over MQTT through Home Assistant's
``mqtt_statestream``; its device and entity registries from the files it writes when it stops
(``.storage/core.device_registry``, ``core.entity_registry``)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    ROOT,
    SAMPLE_TOP1,
    SAMPLES,
    Mosquitto,
    Subscriber,
    replay_config,
    scaled,
    start_edged,
    stop_process,
    write_config,
)

HA_PYTHON = Path(os.environ.get("EDGED_HA_PYTHON", ROOT / ".venv-ha" / "bin" / "python"))
SITE = [Path(p) for p in glob.glob(str(HA_PYTHON.parent.parent / "lib/python3*/site-packages"))]
# what Home Assistant would install at its first start, run here with --skip-pip: the MQTT
# integration's paho-mqtt, and the frontend (without it, Home Assistant starts in recovery mode)
HA_PACKAGES = {
    "homeassistant": "homeassistant/core.py",
    "paho-mqtt": "paho/mqtt/client.py",
    "home-assistant-frontend": "hass_frontend/__init__.py",
}
MISSING = [name for name, f in HA_PACKAGES.items() if not any((s / f).exists() for s in SITE)]
SAMPLE = SAMPLES / "coffee.jpg"
RECOVERY = "Activating recovery mode"


def _why_skip() -> str:
    if not MISSING:
        return ""
    if "homeassistant" not in MISSING:
        return f"Home Assistant beside {HA_PYTHON} lacks {', '.join(MISSING)} (`make venv-ha`)"
    found = shutil.which("python3.13") or glob.glob(
        os.path.expanduser("~/.pyenv/versions/3.13*/bin/python")
    )
    how = (
        "`make venv-ha` installs it"
        if found
        else "it needs Python 3.13, not found here (python3.13, ~/.pyenv/versions/3.13*)"
    )
    return f"Home Assistant not installed beside {HA_PYTHON}: {how}"


pytestmark = pytest.mark.skipif(bool(_why_skip()), reason=_why_skip())


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


class HomeAssistant:
    """A running Home Assistant: ``states`` records its mqtt_statestream (``hass/#``)."""

    def __init__(self, config_dir: Path, log: Path, states: Subscriber) -> None:
        self.config_dir = config_dir
        self.log = log
        self.states = states

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def last(self, topic: str) -> bytes | None:
        return _last(self.states, topic)

    def state(self, entity_id: str) -> bytes | None:
        """The entity's latest state as mqtt_statestream published it."""
        return self.last(f"hass/{entity_id.replace('.', '/')}/state")

    def registry(self, name: str) -> dict[str, Any]:
        """A registry as Home Assistant wrote it (``core.device_registry`` …)."""
        path = self.config_dir / ".storage" / name
        assert path.exists(), f"Home Assistant wrote no {name}: {self.tail()}"
        data: dict[str, Any] = json.loads(path.read_text())["data"]
        return data

    def mqtt_errors(self) -> list[str]:
        return [
            line
            for line in self.log.read_text().splitlines()
            if "ERROR" in line and "mqtt" in line.lower()
        ]


@contextmanager
def home_assistant(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[HomeAssistant]:
    """Home Assistant on ``mosquitto``, returned once it has sent its birth message (edged
    announces itself on it too); stopped (and its registries written) on exit."""
    config_dir = ha_config_dir(tmp_path / "hass", mosquitto.port)
    log = tmp_path / "hass.log"
    states = Subscriber(mosquitto.port, "hass/#")
    births = Subscriber(mosquitto.port, "homeassistant/status")
    hass = subprocess.Popen(
        [str(HA_PYTHON), "-m", "homeassistant", "--config", str(config_dir), "--skip-pip"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    ha = HomeAssistant(config_dir, log, states)
    try:
        # born, or given up: ended, or in recovery mode (an integration did not load)
        births.wait(
            lambda: (
                b"online" in [p for _, p, _ in births.messages]
                or hass.poll() is not None
                or RECOVERY in log.read_text()
            ),
            scaled(120),
        )
        assert b"online" in [p for _, p, _ in births.messages], ha.tail()
        yield ha
    finally:
        births.close()
        code = stop_process(hass, timeout=scaled(60))
        states.close()
    assert code == 0, ha.tail()


def test_home_assistant_discovers_the_device(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = replay_config(
        tmp_path,
        mosquitto.url,
        fps=2,
        paths=(str(SAMPLE),),
        sections="[homeassistant]\ndiscovery = true\n",
    )
    with home_assistant(tmp_path, mosquitto) as ha:
        label = "sensor.edged_cam_1_label"
        edged = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
        try:
            assert ha.states.wait(lambda: ha.state(label) == b"espresso", scaled(120)), (
                ha.tail(),
                [m[0] for m in ha.states.messages][:50],
            )
            assert ha.states.wait(
                lambda: ha.state("binary_sensor.edged_cam_1_ambiguous") == b"off", 30
            )
            assert ha.states.wait(lambda: ha.state("sensor.edged_cam_1_backend") == b"cpu", 30)
            top_k = ha.last("hass/sensor/edged_cam_1_label/top_k")
            assert top_k and json.loads(top_k)[0]["label"] == "espresso"
        finally:
            assert stop_process(edged) == 0
        assert ha.states.wait(lambda: ha.state(label) == b"unavailable", 30)
    assert not ha.mqtt_errors(), ha.mqtt_errors()


# [[cameras]] of one device: each replays one sample photo, whose top-1 label it must show
CAMERAS = {"hall": "chelsea_cat.jpg", "kitchen": "coffee.jpg", "yard": "rocket.jpg"}
# a camera device's entities (object id after the camera's name) and the edged device's
CAMERA_KEYS = {"label", "score", "ambiguous", "camera_state", "fps"}
DEVICE_KEYS = {"fps", "inference_ms", "cpu_temperature", "backend"}


def cameras_config(tmp_path: Path, url: str) -> Path:
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\ntype = "replay"\npaths = ["{SAMPLES / photo}"]\n'
        "loop = true\nfps = 2\n"
        for name, photo in CAMERAS.items()
    )
    return write_config(
        tmp_path / "edged.toml",
        f'[device]\nid = "home"\n[mqtt]\nurl = "{url}"\n[health]\ninterval_s = 1\n'
        f"[homeassistant]\ndiscovery = true\n{cameras}",
    )


def test_home_assistant_gives_each_camera_a_device(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Three cameras: Home Assistant's device registry holds the edged device and one device
    per camera attached to it (``via_device``), each camera's entities on its own device and
    showing that camera's classification; all unavailable once edged stops."""
    edged_states = Subscriber(mosquitto.port, "edged/home/+/state")
    cfg = cameras_config(tmp_path, mosquitto.url)
    log = tmp_path / "edged.log"
    with home_assistant(tmp_path, mosquitto) as ha:
        edged = start_edged("run", "--config", str(cfg), log=log)
        try:

            def showing() -> dict[str, tuple[bytes | None, bytes | None]]:
                return {
                    c: (
                        ha.state(f"sensor.edged_home_{c}_label"),
                        ha.state(f"sensor.edged_home_{c}_camera_state"),
                    )
                    for c in CAMERAS
                }

            expected = {c: (SAMPLE_TOP1[p].encode(), b"ok") for c, p in CAMERAS.items()}
            assert ha.states.wait(lambda: showing() == expected, scaled(120)), (
                showing(),
                ha.tail(),
                log.read_text()[-3000:],
            )
            assert ha.states.wait(
                lambda: ha.state("sensor.edged_home_backend") == b"cpu", scaled(30)
            )
            running = {
                topic: payload
                for topic, payload, _ in list(ha.states.messages)
                if topic.endswith("/state")
            }
        finally:
            assert stop_process(edged) == 0, log.read_text()[-3000:]
        # edged's last will: every entity of every camera, and the device's, unavailable
        entity_ids = [t.removeprefix("hass/").removesuffix("/state") for t in running]
        ours = [e.replace("/", ".") for e in entity_ids if "edged_home_" in e]
        assert len(ours) == len(DEVICE_KEYS) + len(CAMERAS) * len(CAMERA_KEYS), ours
        assert ha.states.wait(
            lambda: all(ha.state(e) == b"unavailable" for e in ours), scaled(30)
        ), {e: ha.state(e) for e in ours}
    edged_states.close()
    assert not ha.mqtt_errors(), ha.mqtt_errors()

    devices = ha.registry("core.device_registry")["devices"]
    by_identifier = {
        ident[1]: dev for dev in devices for ident in dev["identifiers"] if ident[0] == "mqtt"
    }
    assert set(by_identifier) == {"edged_home"} | {f"edged_home_{c}" for c in CAMERAS}, [
        d["identifiers"] for d in devices
    ]
    hub = by_identifier["edged_home"]
    assert (hub["name"], hub["manufacturer"], hub["via_device_id"]) == ("home", "edged", None)
    entities = [
        e for e in ha.registry("core.entity_registry")["entities"] if e["platform"] == "mqtt"
    ]
    on_device: dict[str, dict[str, str]] = {}  # device id -> {unique id: entity id}
    for e in entities:
        on_device.setdefault(e["device_id"], {})[e["unique_id"]] = e["entity_id"]
    assert set(on_device[hub["id"]]) == {f"edged_home_{k}" for k in DEVICE_KEYS}
    last = {t: p for t, p, _ in edged_states.messages}
    for camera, photo in CAMERAS.items():
        dev = by_identifier[f"edged_home_{camera}"]
        assert dev["via_device_id"] == hub["id"], dev
        assert (dev["name"], dev["model"], dev["manufacturer"]) == (
            f"home {camera}",
            "camera",
            "edged",
        )
        mine = on_device[dev["id"]]
        assert set(mine) == {f"edged_home_{camera}_{k}" for k in CAMERA_KEYS}, mine
        # the entities of this camera's device show this camera's state
        shown = {
            uid.removeprefix(f"edged_home_{camera}_"): running[
                f"hass/{entity_id.replace('.', '/')}/state"
            ]
            for uid, entity_id in mine.items()
        }
        state = json.loads(last[f"edged/home/{camera}/state"])
        assert state["camera"] == camera
        assert shown["label"] == SAMPLE_TOP1[photo].encode() == state["label"].encode()
        assert shown["ambiguous"] == (b"on" if state["ambiguous"] else b"off")
        assert abs(float(shown["score"]) - state["score"]) < 0.05, (shown, state)
        assert shown["camera_state"] == b"ok"
        assert float(shown["fps"]) >= 0
        top_k = _last(
            ha.states, f"hass/{mine[f'edged_home_{camera}_label'].replace('.', '/')}/top_k"
        )
        assert top_k and json.loads(top_k)[0]["label"] == SAMPLE_TOP1[photo]


def _last(sub: Subscriber, topic: str) -> bytes | None:
    with sub._lock:
        found = [p for t, p, _ in sub.messages if t == topic]
    return found[-1] if found else None
