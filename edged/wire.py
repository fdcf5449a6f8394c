"""The MQTT wire format: topic layout, schema ids and payload models.

Every producer and reader of edged's messages (the daemon, ``edged classify --json``, the demo,
``edged fleet``) uses what is defined here, so a topic suffix, a schema id or a payload field
has exactly one definition.  The JSON Schemas in ``docs/schema/`` are generated from these
models (``python -m edged.wire docs/schema``); a test fails when they are out of date.

Topics are ``{prefix}/{device}/{suffix}``:

- ``status``: retained ``online`` / ``offline`` (also the last will);
- ``events``: one :class:`Event` per published classification;
- ``health``: a retained :class:`Health` report every ``health.interval_s``;
- ``state`` (and ``state/{region}``): the retained latest :class:`State`, for Home Assistant
  (sent when the label changes, else at most every ``homeassistant.state_interval_s``);
- ``snapshot``: a JPEG of the current frame, on the ``snapshot`` command;
- ``cmd``: :class:`Command` requests (only the operator may publish here, see the ACL);
- ``cmd/result``: :class:`CommandResult` replies (MQTT 5: the request's response topic,
  with its correlation data, when it names one).

With ``[[cameras]]`` each camera publishes its own ``events``, ``state`` and
``state/{region}`` one level down, at ``{prefix}/{device}/{camera}/{suffix}``
(:func:`camera_suffix`); its events carry ``camera`` and count ``seq`` on their own.
``status``, ``health`` and ``cmd`` stay per device; health has a ``cameras`` object.  The
one camera of a ``[capture]`` config publishes exactly as before: no camera level, no
``camera`` field.

The models accept fields they do not know (a newer sender), and new fields are added as
optional ones, so readers of an older version keep working.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

# ---------------------------------------------------------------------------- topics


class Suffix(StrEnum):
    """The last level of every topic edged publishes."""

    STATUS = "status"
    EVENTS = "events"
    HEALTH = "health"
    STATE = "state"
    SNAPSHOT = "snapshot"
    CMD = "cmd"
    CMD_RESULT = "cmd/result"


ONLINE = "online"
OFFLINE = "offline"
STATUS_VALUES = (ONLINE, OFFLINE)


def retained_qos(suffix: str) -> int:
    """QoS of a retained topic: 1 for ``status`` and ``health``, whose last value the fleet
    view and the rollout gate read; 0 for ``state``/``state/{region}`` (also a camera's,
    ``{camera}/state...``), re-sent every few seconds anyway.  Events use ``mqtt.qos``."""
    parts = suffix.split("/")
    return 0 if Suffix.STATE in parts[:2] else 1


def camera_suffix(camera: str | None, suffix: str) -> str:
    """A camera's topic below the device: ``{camera}/{suffix}``, or ``suffix`` itself for
    the one camera of a ``[capture]`` config (``camera`` None)."""
    return f"{camera}/{suffix}" if camera else suffix


def parse_camera_topic(prefix: str, value: str) -> tuple[str, str | None, str] | None:
    """``(device, camera, suffix)`` for an events or state topic, with or without the camera
    level (``camera`` None without it); None for anything else."""
    head = prefix.rstrip("/") + "/"
    if not value.startswith(head):
        return None
    rest = value[len(head) :].split("/")
    if len(rest) < 2 or not all(rest):
        return None
    device, tail = rest[0], rest[1:]
    for camera, parts in ((None, tail), (tail[0], tail[1:])):
        if parts and ((parts == [Suffix.EVENTS]) or (parts[0] == Suffix.STATE and len(parts) <= 2)):
            return device, camera, "/".join(parts)
    return None


def topic(prefix: str, device: str, suffix: str) -> str:
    """``{prefix}/{device}/{suffix}`` (a trailing ``/`` on the prefix is ignored)."""
    return f"{device_topic(prefix, device)}/{suffix}"


def device_topic(prefix: str, device: str) -> str:
    """``{prefix}/{device}``: the base of one device's topics."""
    return f"{prefix.rstrip('/')}/{device}"


def subscription(prefix: str, suffix: str, device: str = "+") -> str:
    """The filter for ``suffix`` of every device (or of ``device``)."""
    return topic(prefix, device, suffix)


def parse_topic(
    prefix: str, value: str, suffixes: tuple[str, ...] = tuple(Suffix)
) -> tuple[str, str] | None:
    """``(device, suffix)`` for ``{prefix}/{device}/{suffix}`` with a suffix in ``suffixes``;
    None for anything else."""
    head = prefix.rstrip("/") + "/"
    if not value.startswith(head):
        return None
    rest = value[len(head) :].split("/")
    if len(rest) != 2 or not rest[0] or rest[1] not in suffixes:
        return None
    return rest[0], rest[1]


# ---------------------------------------------------------------------------- broker URL


class BrokerAddress(NamedTuple):
    host: str
    port: int
    tls: bool


class BrokerUrlError(ValueError):
    """A broker URL that is not ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""


def broker_address(url: str) -> BrokerAddress:
    """Host, port and TLS of ``mqtt://host[:port]`` / ``mqtts://host[:port]`` (IPv6 hosts in
    brackets: ``mqtt://[::1]:1883``).  BrokerUrlError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerUrlError(
            f"bad broker URL {url!r}: expected mqtt://host[:port] or mqtts://host[:port]"
        )
    if parts.username or parts.password:
        raise BrokerUrlError("credentials do not belong in the URL")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BrokerUrlError(f"bad port in broker URL {url!r}") from None
    return BrokerAddress(parts.hostname, port, tls)


# ---------------------------------------------------------------------------- payloads

EVENT_SCHEMA = "edged.event/1"
HEALTH_SCHEMA = "edged.health/1"
STATE_SCHEMA = "edged.state/1"
COMMAND_RESULT_SCHEMA = "edged.cmd_result/1"
COMMANDS = ("set", "snapshot", "reload", "pause", "resume")
MAX_COMMAND_BYTES = 64 * 1024


def utc_now() -> str:
    """Now as RFC 3339 UTC with milliseconds (``…Z``): the ``ts`` of every payload."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _schema_field(schema_id: str) -> Any:
    return Field(
        schema_id,
        alias="schema",
        pattern=f"^{re.escape(schema_id)}$",
        json_schema_extra={"const": schema_id},
        description="Schema id and version of this payload.",
    )


# fields that only a config with [[cameras]] sends: left out while null, so that the one
# camera of a [capture] config publishes exactly what it published before cameras existed
CAMERA_ONLY_FIELDS = ("camera", "cameras")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> bytes:
        """Compact JSON, as published (``schema`` and ``device`` first)."""
        data = self.model_dump(mode="json", by_alias=True)
        for k in CAMERA_ONLY_FIELDS:
            if k in data and data[k] is None:
                del data[k]
        head = {k: data.pop(k) for k in ("schema", "device") if k in data}
        return json.dumps({**head, **data}, separators=(",", ":")).encode()


class ClassScore(BaseModel):
    """One class of a top-k list."""

    model_config = ConfigDict(extra="allow")

    label: str
    label_id: int
    score: float


class Classified(_Payload):
    """What one classification says, whoever reports it."""

    label: str | None = Field(description="Top-1 label; null when no class passed the filters.")
    label_id: int | None = Field(description="Top-1 class id.")
    score: float | None = Field(description="Top-1 probability, 0..1.")
    top_k: list[ClassScore] = Field(description="The best classes, best first.")
    ambiguous: bool = Field(description="The top two scores are closer than the margin.")
    model: str = Field(description="File name of the model that ran.")
    backend: str = Field(description="Backend that ran it: cpu or edgetpu.")
    inference_ms: float = Field(description="Invoke time in milliseconds.")


class Event(Classified):
    """``{prefix}/{device}/events``: a classification the publish policy let through."""

    schema_: str = _schema_field(EVENT_SCHEMA)
    device: str
    run_id: str | None = Field(
        None,
        description="UUID of the daemon run that classified it (new at every start); "
        "(device, run_id, seq) identifies an event, also when it is delivered again.",
    )
    camera: str | None = Field(
        None,
        description="The [[cameras]] name that saw it; absent for the one camera of a "
        "[capture] config.",
    )
    seq: int = Field(
        description="Per run (and per camera, with [[cameras]]), from 1: a gap within a run "
        "shows a lost event."
    )
    ts: str = Field(description="RFC 3339 UTC, when it was classified (kept when re-sent).")
    frame: int = Field(description="Frame number from the source.")
    source: str = Field(description="Where the frame came from (file, camera).")
    region: str | None = Field(
        None, description="The capture.regions name classified; null = the whole frame."
    )
    confirmed_label: str | None = Field(
        None,
        description="The region's state: its last label confirmed by publish.confirm_frames "
        "consecutive frames (label is this frame's raw top-1).",
    )

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ClassifiedFile(Classified):
    """A row of ``edged classify --json`` for a file that was classified."""

    file: str
    error: None = Field(None, description="null: the file was classified.")


class UnclassifiedFile(BaseModel):
    """A row of ``edged classify --json`` for a file that could not be classified."""

    model_config = ConfigDict(extra="allow")

    file: str
    error: str = Field(description="Why the file was not classified (unreadable, not an image).")


class ClassifyRow(RootModel[ClassifiedFile | UnclassifiedFile]):
    """One row of ``edged classify --json`` per input file, in the order given: the
    classification, or the error that prevented it."""


class Percentiles(BaseModel):
    model_config = ConfigDict(extra="allow")

    p50: float | None
    p95: float | None


class TpuInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="usb or pci.")
    path: str = Field(description="Its sysfs or /dev path.")


class CameraHealth(BaseModel):
    """One camera's part of :class:`Health` (``cameras``)."""

    model_config = ConfigDict(extra="allow")

    state: Literal["starting", "ok", "down", "stalled"] = Field(
        description="starting: no frame yet; down: its source is away (reconnecting, failed "
        "or ended with an error); stalled: no frame classified for health.stall_s."
    )
    error: str | None = Field(None, description="Why the camera is down.")
    fps: float = Field(description="Frames classified per second (10 s).")
    frames: int = Field(description="Frames classified (each region counts).")
    dropped: int = Field(description="Frames dropped: replaced by newer ones before inference.")
    source_state: Literal["connecting", "streaming", "reconnecting", "failed"] | None = Field(
        None, description="Of a camera that reconnects by itself (v4l2, stream); else null."
    )
    reconnects: int | None = Field(None, description="Times the source came back.")
    last_frame_age_s: float | None = Field(
        None, description="Seconds since its last classified frame; null before the first."
    )
    model: str | None = Field(None, description="File name of its model.")
    backend: str | None = Field(None, description="Backend classifying its frames.")
    inference_ms: Percentiles


class Health(_Payload):
    """``{prefix}/{device}/health`` (retained).  Readings a machine lacks are null."""

    schema_: str = _schema_field(HEALTH_SCHEMA)
    device: str
    version: str = Field(description="edged version.")
    run_id: str | None = Field(None, description="UUID of this daemon run (as in its events).")
    ts: str = Field(description="RFC 3339 UTC.")
    uptime_s: float
    state: Literal["starting", "ok", "stalled", "fault"] | None = Field(
        None,
        description="starting: no frame classified yet; stalled: no frame for health.stall_s; "
        "fault: a stage failed and the daemon is stopping.",
    )
    source_live: bool | None = Field(
        None, description="The source is a camera (frames must keep coming), not files."
    )
    backend: str | None = Field(description="Backend running now.")
    fallback_reason: str | None = Field(None, description="Why inference is not where wanted.")
    fallbacks: int = 0
    worker_restarts: int = 0
    worker_pid: int | None = None
    model: str | None
    model_sha256: str | None
    tpus: list[TpuInfo] = Field(default_factory=list, description="Edge TPUs attached.")
    tpu_temp_c: float | None = None
    fps: float
    inference_ms: Percentiles
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    frames_lost: int = 0
    frames_skipped: int = 0
    frames_static: int = Field(
        0, description="Frames not classified: unchanged since the last classified one."
    )
    source_state: Literal["connecting", "streaming", "reconnecting", "failed"] | None = Field(
        None, description="Of a camera that reconnects by itself (v4l2, stream); else null."
    )
    source_reconnects: int | None = Field(None, description="Times the source came back.")
    source_fps: float | None = Field(None, description="Frames decoded per second (5 s).")
    source_dropped: int | None = Field(
        None, description="Decoded frames replaced by newer ones before they were classified."
    )
    source_corrupt: int | None = Field(
        None, description="Undecodable packets and corrupt frames skipped."
    )
    source_error: str | None = Field(None, description="Why the source is not streaming.")
    sensor: str | None = Field(
        None,
        description="Of an AI camera (imx500): 'loading network N %', 'running', or "
        "'fallback: why' (its frames are classified on the CPU meanwhile); else null.",
    )
    sensor_network: str | None = Field(None, description="The AI camera's network file.")
    sensor_upload_percent: float | None = Field(
        None, description="How much of the network has reached the sensor, while it loads."
    )
    sensor_dnn_ms: float | None = Field(
        None, description="The network's run time on the sensor (median, last 64 frames)."
    )
    sensor_dsp_ms: float | None = Field(
        None, description="The sensor's DSP time per frame (median, last 64 frames)."
    )
    events_published: int = Field(description="This run's events the broker acknowledged.")
    events_waiting: int = Field(0, description="Events not acknowledged yet (spool, in flight).")
    events_resent: int = Field(0, description="Events of earlier runs acknowledged in this run.")
    events_evicted: int = Field(0, description="Oldest events evicted from a full spool.")
    events_filtered: int = Field(0, description="Classified frames the publish policy held back.")
    spool: Literal["disk", "memory"] | None = Field(
        None, description="Where waiting events are kept: disk, or memory (none or refused)."
    )
    mqtt_reconnects: int
    mqtt_dropped: int = Field(0, description="Events given up (never delivered, not kept).")
    cpu_percent: float | None
    rss_mb: float | None
    disk_write_bytes: int | None = Field(
        None, description="Bytes the daemon wrote to disk since it started (/proc/self/io)."
    )
    cpu_temp_c: float | None
    throttled: dict[str, Any] | None
    pid: int
    paused: bool = Field(False, description="Classification paused by a command.")
    cameras: dict[str, CameraHealth] | None = Field(
        None,
        description="Each camera of [[cameras]] by name; absent for the one camera of a "
        "[capture] config.  The device's own fields add up its cameras.",
    )

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class State(Classified):
    """``{prefix}/{device}/state`` (retained): the latest classification, for dashboards
    that subscribe late (Home Assistant).  ``region`` is null for the whole frame."""

    schema_: str = _schema_field(STATE_SCHEMA)
    device: str
    camera: str | None = Field(
        None, description="The [[cameras]] name; absent for a [capture] config's camera."
    )
    ts: str = Field(description="RFC 3339 UTC.")
    frame: int = Field(description="Frame number from the source.")
    region: str | None = Field(None, description="Region of interest, null = whole frame.")
    confirmed_label: str | None = Field(
        None,
        description="The label confirmed by publish.confirm_frames consecutive frames (what "
        "the label sensors show); null until one is.",
    )

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Command(BaseModel):
    """``{prefix}/{device}/cmd``: a request.  Section keys are the config's own and are
    validated by its models; at most ``MAX_COMMAND_BYTES`` bytes of JSON."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(
        None, description="Echoed in the reply (MQTT 3.1.1 callers match replies by it)."
    )
    cmd: Literal["set", "snapshot", "reload", "pause", "resume"]
    camera: str | None = Field(
        None,
        description="snapshot: the camera to show; set: the camera whose settings change "
        "(none = every camera).  Only with [[cameras]].",
    )
    classify: dict[str, Any] | None = Field(None, description="set: [classify] keys.")
    publish: dict[str, Any] | None = Field(None, description="set: [publish] keys.")
    model: dict[str, Any] | None = Field(
        None, description="reload: [model] keys; path and sha256 required."
    )


class CommandResult(_Payload):
    """``{prefix}/{device}/cmd/result`` or the request's MQTT 5 response topic."""

    schema_: str = _schema_field(COMMAND_RESULT_SCHEMA)
    device: str
    id: str | None = Field(
        description="The request's id (null when it had none or was unreadable)."
    )
    cmd: str | None = Field(description="The command, when it could be read.")
    ok: bool
    error: str | None = Field(None, description="Why the command was refused; nothing changed.")
    ts: str = Field(description="RFC 3339 UTC.")
    result: dict[str, Any] = Field(
        default_factory=dict, description="What the command did (settings now in effect, ...)."
    )

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Status(BaseModel):
    """``{prefix}/{device}/status`` (retained): the plain text ``online`` or ``offline``."""

    state: Literal["online", "offline"]

    @classmethod
    def parse(cls, payload: bytes) -> Status:
        """ValueError when the payload is neither ``online`` nor ``offline``."""
        text = payload.decode("utf-8", "replace").strip().lower()
        if text not in STATUS_VALUES:
            raise ValueError(f"unexpected status {text!r}, expected one of {STATUS_VALUES}")
        return cls.model_validate({"state": text})

    @property
    def online(self) -> bool:
        return self.state == ONLINE

    def to_payload(self) -> bytes:
        return self.state.encode()


def load_json_object(payload: bytes, what: str) -> dict[str, Any]:
    """``payload`` as a JSON object; ValueError names what is wrong with it."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} payload is a {type(data).__name__}, expected a JSON object")
    return data


def check_schema(data: dict[str, Any], expected: str, what: str) -> None:
    schema = data.get("schema")
    if schema != expected:
        raise ValueError(f"{what} schema {schema!r}, expected {expected!r}")


def read_health(payload: bytes) -> tuple[Health, list[str]]:
    """A received health report, read tolerantly: ``(report, dropped)``.

    Fields it does not know (a newer sender) are kept as extras; an optional field whose value
    does not validate (a newer sender's new state, say) takes its default and is named in
    ``dropped``.  ValueError, naming what is wrong, for a payload that is not a JSON object of
    :data:`HEALTH_SCHEMA` or whose required fields are missing or invalid: every edged
    release sends those."""
    data = load_json_object(payload, "health")
    check_schema(data, HEALTH_SCHEMA, "health")
    try:
        return Health.model_validate(data), []
    except ValidationError as exc:
        errors = exc.errors()
    optional = {f.alias or n for n, f in Health.model_fields.items() if not f.is_required()}
    bad = {str(e["loc"][0]) for e in errors if e["loc"]}
    fatal = [e for e in errors if not e["loc"] or str(e["loc"][0]) not in optional]
    if fatal:
        where = ".".join(str(part) for part in fatal[0]["loc"])
        raise ValueError(f"health field {where}: {fatal[0]['msg']}")
    kept = {k: v for k, v in data.items() if k not in bad}
    return Health.model_validate(kept), sorted(bad)


class FieldNames:
    """The field names of a payload model, for text that must spell them (Home Assistant
    value templates, metric tables): ``FieldNames(Health).fps == "fps"``.  A name the model
    does not have raises AttributeError, so a renamed field fails where it is used."""

    def __init__(self, model: type[BaseModel]) -> None:
        self._model = model.__name__
        self._names = {name: field.alias or name for name, field in model.model_fields.items()}

    def __getattr__(self, name: str) -> str:
        try:
            return self._names[name]
        except KeyError:
            raise AttributeError(f"{self._model} has no field {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())


HEALTH_FIELDS = FieldNames(Health)
CAMERA_HEALTH_FIELDS = FieldNames(CameraHealth)
EVENT_FIELDS = FieldNames(Event)
CLASS_FIELDS = FieldNames(ClassScore)
PERCENTILE_FIELDS = FieldNames(Percentiles)
STATE_FIELDS = FieldNames(State)


# ---------------------------------------------------------------------------- JSON Schema

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "event.json": Event,
    "health.json": Health,
    "classify.json": ClassifyRow,
    "state.json": State,
    "command.json": Command,
    "command_result.json": CommandResult,
}


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema text of every payload (what ``docs/schema/`` holds)."""
    out = {}
    for name, model in SCHEMA_FILES.items():
        schema = model.model_json_schema(by_alias=True)
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(directory: Path) -> list[Path]:
    """Write :func:`json_schemas` into ``directory``; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m edged.wire docs/schema
    for p in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")):
        print(p)
