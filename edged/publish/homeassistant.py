"""Home Assistant MQTT discovery: every schema edged announces, in one place.

One Home Assistant device per edged device, and with ``[[cameras]]`` one more per camera
(``via_device`` the edged device, entities reading ``{camera}/state``); entities read
edged's own topics:

- ``state`` (retained, see :class:`StateThrottle`): the label (top-k as attributes), the
  score and ``ambiguous``; with regions, one label sensor per region on ``state/{region}``;
- ``health`` (retained): fps, inference time, CPU temperature, backend;
- ``status`` (retained ``online``/``offline``, the last will): availability of them all.

Configs are retained under ``{discovery_prefix}/{component}/{node}/{key}/config`` with
``node`` the device id, and sent again when Home Assistant announces itself
(``{discovery_prefix}/status`` = ``online``).  An empty retained config removes an entity.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from edged import __version__, wire
from edged.config import Config, HomeAssistantConfig
from edged.health.system import machine_model
from edged.publish.base import Message, Publisher

log = logging.getLogger(__name__)

HA_STATUS = "status"  # {discovery_prefix}/status: Home Assistant's birth and last will
ORIGIN = {"name": "edged", "sw_version": __version__}


@dataclass(frozen=True)
class Entity:
    component: str  # sensor | binary_sensor
    key: str  # unique per device: label, score, ...
    name: str
    suffix: str  # edged topic the state comes from (state, health, state/<region>)
    value_template: str
    extra: tuple[tuple[str, Any], ...] = ()
    camera: str | None = None  # the entity belongs to this camera's device


# The label sensors show the state confirmed by publish.confirm_frames (the raw top-1 until a
# label is confirmed); score and top-k attributes are the latest frame's.
S = wire.STATE_FIELDS
H = wire.HEALTH_FIELDS
LABEL_TEMPLATE = (
    f"{{{{ value_json.{S.confirmed_label} if value_json.{S.confirmed_label} is not none "
    f"else value_json.{S.label} }}}}"
)
TOP_K_ATTRIBUTES = f"{{{{ {{'{S.top_k}': value_json.{S.top_k}}} | tojson }}}}"


def _value(*path: str) -> str:
    """A value template reading ``path`` (field names) of the JSON payload."""
    return "{{ value_json.%s }}" % ".".join(path)  # noqa: UP031 - Jinja braces


def node_id(device: str) -> str:
    """The device id as Home Assistant allows it in a discovery topic ([a-zA-Z0-9_-])."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device)


MEASUREMENT = ("state_class", "measurement")


def entities(regions: tuple[str, ...] = ()) -> list[Entity]:
    """The entities of a device with one camera (a [capture] config)."""
    state = _state_entities(None, regions)
    return state[:3] + _health_entities() + state[3:]


def camera_entities(camera: str, regions: tuple[str, ...] = ()) -> list[Entity]:
    """A camera's device: its label, score and ambiguous (and a label per region) from
    ``{camera}/state``, and its state and frame rate from the device's health."""
    c = f"{H.cameras}['{camera}']"
    return [
        *_state_entities(camera, regions),
        Entity(
            "sensor",
            "camera_state",
            "Camera state",
            wire.Suffix.HEALTH,
            f"{{{{ value_json.{c}.{wire.CAMERA_HEALTH_FIELDS.state} }}}}",
            (("entity_category", "diagnostic"), ("icon", "mdi:cctv")),
            camera,
        ),
        Entity(
            "sensor",
            "fps",
            "Frame rate",
            wire.Suffix.HEALTH,
            f"{{{{ value_json.{c}.{wire.CAMERA_HEALTH_FIELDS.fps} }}}}",
            (MEASUREMENT, ("unit_of_measurement", "fps"), ("entity_category", "diagnostic")),
            camera,
        ),
    ]


def _state_entities(camera: str | None, regions: tuple[str, ...]) -> list[Entity]:
    state = wire.camera_suffix(camera, wire.Suffix.STATE)
    out = [
        Entity(
            "sensor",
            "label",
            "Label",
            state,
            LABEL_TEMPLATE,
            (
                ("json_attributes_template", TOP_K_ATTRIBUTES),
                ("icon", "mdi:tag-text"),
            ),
            camera,
        ),
        Entity(
            "sensor",
            "score",
            "Score",
            state,
            _value(S.score),
            (MEASUREMENT, ("suggested_display_precision", 3), ("icon", "mdi:percent")),
            camera,
        ),
        # A template rendering a Python bool never matches payload_on: render ON/OFF.
        Entity(
            "binary_sensor",
            "ambiguous",
            "Ambiguous",
            state,
            f"{{{{ 'ON' if value_json.{S.ambiguous} else 'OFF' }}}}",
            (("payload_on", "ON"), ("payload_off", "OFF"), ("icon", "mdi:help-circle")),
            camera,
        ),
    ]
    out.extend(
        Entity(
            "sensor",
            f"label_{node_id(region)}",
            f"Label {region}",
            f"{state}/{region}",
            LABEL_TEMPLATE,
            (
                ("json_attributes_template", TOP_K_ATTRIBUTES),
                ("icon", "mdi:tag-text"),
            ),
            camera,
        )
        for region in regions
    )
    return out


def _health_entities() -> list[Entity]:
    measurement = MEASUREMENT
    return [
        Entity(
            "sensor",
            "fps",
            "Frame rate",
            wire.Suffix.HEALTH,
            _value(H.fps),
            (measurement, ("unit_of_measurement", "fps"), ("entity_category", "diagnostic")),
        ),
        Entity(
            "sensor",
            "inference_ms",
            "Inference time",
            wire.Suffix.HEALTH,
            _value(H.inference_ms, wire.PERCENTILE_FIELDS.p50),
            (
                measurement,
                ("device_class", "duration"),
                ("unit_of_measurement", "ms"),
                ("entity_category", "diagnostic"),
            ),
        ),
        Entity(
            "sensor",
            "cpu_temperature",
            "CPU temperature",
            wire.Suffix.HEALTH,
            _value(H.cpu_temp_c),
            (
                measurement,
                ("device_class", "temperature"),
                ("unit_of_measurement", "°C"),
                ("entity_category", "diagnostic"),
            ),
        ),
        Entity(
            "sensor",
            "backend",
            "Backend",
            wire.Suffix.HEALTH,
            _value(H.backend),
            (("entity_category", "diagnostic"), ("icon", "mdi:chip")),
        ),
    ]


@dataclass(frozen=True)
class Discovery:
    """The discovery configs of one device."""

    discovery_prefix: str
    device_base: str  # {topic_prefix}/{device}
    device: str
    hw_model: str = "unknown"
    regions: tuple[str, ...] = ()
    cameras: tuple[tuple[str, tuple[str, ...]], ...] = ()  # [[cameras]]: (name, regions)

    @property
    def status_topic(self) -> str:
        return f"{self.discovery_prefix.rstrip('/')}/{HA_STATUS}"

    def _object(self, entity: Entity) -> str:
        """The entity's object id: its key, after its camera's name for a camera's."""
        return f"{entity.camera}_{entity.key}" if entity.camera else entity.key

    def config_topic(self, entity: Entity) -> str:
        # the node is the device for a camera's entities too (the fleet's ACL grants a
        # device homeassistant/+/<device id>/#)
        return (
            f"{self.discovery_prefix.rstrip('/')}/{entity.component}/"
            f"{node_id(self.device)}/{self._object(entity)}/config"
        )

    def device_block(self, camera: str | None = None) -> dict[str, Any]:
        if camera:
            return {
                "identifiers": [f"edged_{self.device}_{camera}"],
                "name": f"{self.device} {camera}",
                "manufacturer": "edged",
                "model": "camera",
                "via_device": f"edged_{self.device}",
            }
        return {
            "identifiers": [f"edged_{self.device}"],
            "name": self.device,
            "manufacturer": "edged",
            "model": self.hw_model,
            "sw_version": __version__,
        }

    def all_entities(self) -> list[Entity]:
        if not self.cameras:
            return entities(self.regions)
        out = _health_entities()
        for camera, regions in self.cameras:
            out += camera_entities(camera, regions)
        return out

    def config(self, entity: Entity) -> dict[str, Any]:
        unique_id = f"edged_{node_id(self.device)}_{self._object(entity)}"
        # entity ids allow only [a-z0-9_]
        object_id = re.sub(r"[^a-z0-9_]", "_", unique_id.lower())
        return {
            "name": entity.name,
            "unique_id": unique_id,
            # object_id for Home Assistant before 2025.10, default_entity_id after
            "object_id": object_id,
            "default_entity_id": f"{entity.component}.{object_id}",
            "state_topic": f"{self.device_base}/{entity.suffix}",
            "value_template": entity.value_template,
            **(
                {"json_attributes_topic": f"{self.device_base}/{entity.suffix}"}
                if any(k == "json_attributes_template" for k, _ in entity.extra)
                else {}
            ),
            "availability": [
                {
                    "topic": f"{self.device_base}/{wire.Suffix.STATUS}",
                    "payload_available": wire.ONLINE,
                    "payload_not_available": wire.OFFLINE,
                }
            ],
            "device": self.device_block(entity.camera),
            "origin": ORIGIN,
            **dict(entity.extra),
        }

    def messages(self) -> list[tuple[str, bytes]]:
        """(topic, payload) of every config, to publish retained."""
        return [
            (self.config_topic(e), json.dumps(self.config(e), separators=(",", ":")).encode())
            for e in self.all_entities()
        ]

    def removals(self) -> list[tuple[str, bytes]]:
        """Empty retained payloads that remove every entity from Home Assistant."""
        return [(self.config_topic(e), b"") for e in self.all_entities()]


class StateThrottle:
    """When to send the retained ``state``: at once when the label or ``ambiguous`` changes,
    otherwise at most every ``interval_s`` (so Home Assistant's history does not get a row
    per frame while the score wobbles)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, tuple[Any, Any, float]] = {}

    def due(self, key: str, label: Any, ambiguous: Any, now: float) -> bool:
        last = self._last.get(key)
        same = last is not None and (last[0], last[1]) == (label, ambiguous)
        if same and last is not None and now - last[2] < self.interval_s:
            return False
        self._last[key] = (label, ambiguous, now)
        return True


class HomeAssistant:
    """Announces the device (on every connect and whenever Home Assistant comes online) and
    keeps the retained ``state`` topics its entities read."""

    def __init__(
        self, cfg: HomeAssistantConfig, publisher: Publisher, discovery: Discovery
    ) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.discovery = discovery
        self.throttle = StateThrottle(cfg.state_interval_s)
        self.announcements = 0

    def attach(self) -> None:
        """Hook into the publisher (before it starts)."""
        self.publisher.on_connect(self.announce)
        self.publisher.subscribe(self.discovery.status_topic, self._on_ha_status)

    def announce(self) -> None:
        messages = self.discovery.messages()
        for topic, payload in messages:
            self.publisher.send(topic, payload, qos=1, retain=True)
        self.announcements += 1
        log.info(
            "Home Assistant: announced %d entities under %s",
            len(messages),
            self.discovery.discovery_prefix,
        )

    def _on_ha_status(self, message: Message) -> None:
        if message.payload.strip().lower() == wire.ONLINE.encode():
            self.announce()

    def publish_state(self, state: wire.State) -> None:
        """The latest classification, retained (the caller asks ``throttle.due`` first, so
        that nothing is built for a frame that sends nothing)."""
        key = state.region or ""
        suffix = wire.Suffix.STATE if not key else f"{wire.Suffix.STATE}/{key}"
        # a camera of [[cameras]] has its own topics
        topic = wire.camera_suffix(state.camera, suffix)
        self.publisher.publish(topic, state.to_json(), retain=True)


def discovery_for(cfg: Config) -> Discovery:
    """The discovery configs of the device ``cfg`` describes."""
    return Discovery(
        cfg.homeassistant.discovery_prefix,
        wire.device_topic(cfg.mqtt.topic_prefix, cfg.device.id),
        cfg.device.id,
        machine_model(),
        regions_of(cfg),
        tuple((cam.name, tuple(r.name for r in cam.regions)) for cam in cfg.cameras),
    )


def regions_of(cfg: Config) -> tuple[str, ...]:
    """Names of the capture's regions of interest, where the source has them."""
    regions = getattr(cfg.capture, "regions", None) or ()
    return tuple(str(getattr(r, "name", r)) for r in regions)


def remove(cfg: Config, password: str | None, timeout: float = 10.0) -> int:
    """Publish an empty retained config for every entity of the device (Home Assistant then
    deletes them); the number removed.  Connects as the device, without touching its status."""
    from edged.publish.mqtt import MqttPublisher

    mqtt_cfg = cfg.mqtt.model_copy(
        update={"client_id": f"{cfg.mqtt.client_id or 'edged-' + cfg.device.id}-ha-remove"}
    )
    publisher = MqttPublisher(mqtt_cfg, cfg.device.id, password, status=False)
    publisher.start()
    try:
        if not publisher.wait_connected(timeout):
            raise ConnectionError(f"MQTT broker {cfg.mqtt.url} not reachable within {timeout:g} s")
        infos = [
            publisher.client.publish(topic, payload, qos=1, retain=True)
            for topic, payload in discovery_for(cfg).removals()
        ]
        for info in infos:
            info.wait_for_publish(timeout)
        return len(infos)
    finally:
        publisher.stop(timeout=2.0)
