"""A command payload to a validated :class:`Request`, or a :class:`CommandError` that says
exactly what is wrong.  Pure: nothing here touches the daemon.

Section keys are the config's own (``{"cmd": "set", "classify": {"top_k": 2}}``), validated
by the same pydantic models as the config file, merged over the settings now in effect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from edged.config import ClassifyConfig, Config, ModelConfig, PublishConfig, describe_errors
from edged.wire import COMMANDS, MAX_COMMAND_BYTES

# what `set` may change at run time, and the model each is validated by
SETTABLE: dict[str, type[BaseModel]] = {"classify": ClassifyConfig, "publish": PublishConfig}
# model keys that belong to the device rather than to one model file: a reload keeps them
DEVICE_MODEL_KEYS = (
    "backend",
    "edgetpu_device",
    "edgetpu_library",
    "edgetpu_options",
    "inference_timeout_s",
    "reprobe_max_s",
    "isolate_cpu",
    "num_threads",
    "resample",
)


# of those, the ones a command may not change: a delegate library is code to load
DEVICE_ONLY_KEYS = ("edgetpu_library", "edgetpu_options", "edgetpu_device", "isolate_cpu")


class CommandError(ValueError):
    """A command that cannot run; ``id`` and ``cmd`` are echoed in the reply when known."""

    def __init__(self, message: str, id: str | None = None, cmd: str | None = None) -> None:
        super().__init__(message)
        self.id = id
        self.cmd = cmd


@dataclass(frozen=True)
class Request:
    cmd: str
    id: str | None = None
    # set: the new sections (whole, validated); reload: {"model": ModelConfig}
    sections: dict[str, BaseModel] = field(default_factory=dict)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)  # as sent
    camera: str | None = None  # set, snapshot: that camera of [[cameras]] only


def _request_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CommandError(f"id must be a string or an integer, not a JSON {_json_type(value)}")
    text = str(value)
    if len(text) > 128:
        raise CommandError("id is longer than 128 characters")
    return text


def parse_request(payload: bytes, current: Config) -> Request:
    """Validate ``payload`` against the settings now in effect (``current``)."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"payload is {len(payload)} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CommandError(f"payload is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"payload is a JSON {_json_type(data)}, expected an object")
    rid = _request_id(data)
    cmd = data.get("cmd")
    if not isinstance(cmd, str):
        raise CommandError(
            f"cmd is {'missing' if cmd is None else 'a JSON ' + _json_type(cmd)}; "
            f"valid commands: {', '.join(COMMANDS)}",
            rid,
        )
    if cmd not in COMMANDS:
        raise CommandError(
            f"unknown command {cmd!r}; valid commands: {', '.join(COMMANDS)}", rid, cmd
        )
    camera = _camera(data.get("camera"), cmd, rid, current)
    body = {k: v for k, v in data.items() if k not in ("id", "cmd", "camera")}
    allowed = {"set": tuple(SETTABLE), "reload": ("model",)}.get(cmd, ())
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        valid = f"valid: {', '.join(allowed)}" if allowed else "it takes none"
        raise CommandError(
            f"{cmd}: unknown key(s) {', '.join(map(repr, unknown))}; {valid}", rid, cmd
        )
    for key, value in body.items():
        if not isinstance(value, dict):
            raise CommandError(
                f"{key} must be an object of {key} settings, not a JSON {_json_type(value)}",
                rid,
                cmd,
            )
    if cmd == "set":
        return _set(rid, body, current, camera)
    if cmd == "reload":
        return _reload(rid, body, current)
    return Request(cmd, rid, camera=camera)


def _camera(value: Any, cmd: str, rid: str | None, current: Config) -> str | None:
    """The ``camera`` of a set or snapshot: a name of [[cameras]]."""
    if value is None:
        return None
    if cmd not in ("set", "snapshot"):
        raise CommandError(f"{cmd}: takes no camera (only set and snapshot do)", rid, cmd)
    names = [c.name for c in current.cameras]
    if not isinstance(value, str) or value not in names:
        valid = ", ".join(names) if names else "none: the config has no [[cameras]]"
        raise CommandError(f"{cmd}: no camera {value!r}; cameras: {valid}", rid, cmd)
    return value


def _set(
    rid: str | None, body: dict[str, Any], current: Config, camera: str | None = None
) -> Request:
    if not body or not any(body.values()):
        raise CommandError(f"set: nothing to change; give one of {', '.join(SETTABLE)}", rid, "set")
    sections: dict[str, BaseModel] = {}
    problems: list[str] = []
    now: Any = current
    if camera is not None:  # that camera's sections in effect
        now = next(c for c in current.camera_list() if c.name == camera)
    for name, changes in body.items():
        model = SETTABLE[name]
        merged = {**getattr(now, name).model_dump(), **changes}
        try:
            # strict: "2" for an integer is a wrong type, not a 2
            sections[name] = model.model_validate(merged, strict=True)
        except ValidationError as exc:
            problems += describe_errors(model, exc, name)
    if problems:
        raise CommandError("; ".join(problems), rid, "set")
    return Request("set", rid, sections, body, camera)


def _reload(rid: str | None, body: dict[str, Any], current: Config) -> Request:
    changes = body.get("model") or {}
    missing = [k for k in ("path", "sha256") if not changes.get(k)]
    if missing:
        raise CommandError(
            f"reload: model.{' and model.'.join(missing)} required "
            '(e.g. {"model": {"path": "/var/lib/edged/models/m.tflite", "sha256": "…"}})',
            rid,
            "reload",
        )
    fixed = sorted(set(changes) & set(DEVICE_ONLY_KEYS))
    if fixed:
        raise CommandError(
            f"reload: model.{', model.'.join(fixed)} cannot be changed by a command (it names "
            "code to load or the device's own setup): set it in the config",
            rid,
            "reload",
        )
    base = current.model.model_dump(include=set(DEVICE_MODEL_KEYS))
    try:
        model = ModelConfig.model_validate({**base, **changes}, strict=True)
    except ValidationError as exc:
        problems = describe_errors(ModelConfig, exc, "model")
        raise CommandError("; ".join(problems), rid, "reload") from None
    return Request("reload", rid, {"model": model}, body)


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), "object")
