"""Each health field name is spelled in one place, ``edged/wire.py``.  Everything else builds
and reads health through :class:`edged.wire.Health` (attribute access, checked by mypy) or
names a field through ``wire.HEALTH_FIELDS``, which raises for a field the model lacks."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable

import pytest
from pydantic import BaseModel

from edged import config, wire
from tests.unit.edged_source import nodes

HEALTH_NAMES = {
    field.alias or name
    for model in (wire.Health, wire.Percentiles)
    for name, field in model.model_fields.items()
}
CONFIG_NAMES = {
    field.alias or name
    for model in vars(config).values()
    if isinstance(model, type) and issubclass(model, BaseModel)
    for name, field in model.model_fields.items()
}
# Names also used as config keys (model, backend, fps, device) are the config's too; single
# words (version, state, paused, ts, pid ...) name many other things as well (a sub-command,
# a command's reply, a flag inside the throttled reading).  A compound name names one thing.
CHECKED = {
    n for n in HEALTH_NAMES - CONFIG_NAMES if "_" in n or any(c.isdigit() for c in n)
}  # fmt: skip

ALLOWED = {
    # The per-frame event is serialised without building a model (it is the hot path);
    # tests/unit/test_events.py checks it byte for byte against wire.Event.
    ("edged.publish.events", "inference_ms"),
    ("edged.publish.events", "run_id"),
    # A Home Assistant entity key, part of its unique_id: it must stay the same if the health
    # field is ever renamed, or every installation would get a new entity.
    ("edged.publish.homeassistant", "inference_ms"),
}


def spelled(nodes: Iterable[ast.AST]) -> list[tuple[int, str]]:
    """(line, name) of every string constant among ``nodes`` (a module's, walked) equal to a
    checked health field name, outside ``__all__`` (which names the module's own functions)."""
    nodes = list(nodes)
    exported = {
        id(c)
        for node in nodes
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        for c in ast.walk(node.value)
    }
    return [
        (node.lineno, node.value)
        for node in nodes
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in CHECKED
        and id(node) not in exported
    ]


@functools.cache
def spelled_in_edged() -> dict[str, list[tuple[int, str]]]:
    return {m: spelled(walked) for m, walked in nodes().items() if m != "edged.wire"}


def test_the_checked_names_are_the_health_fields() -> None:
    assert {"frames_processed", "cpu_temp_c", "source_state", "p50", "uptime_s"} <= CHECKED
    assert not {"model", "backend", "fps", "device"} & CHECKED  # config keys as well


@pytest.mark.parametrize(
    "source",
    [
        'data.get("frames_processed")',
        'x = {"cpu_temp_c": 1.0}',
        '_opt_float(data, "uptime_s")',
        'row["source_state"]',
    ],
)
def test_a_spelled_field_is_found(source: str) -> None:
    assert [name for _, name in spelled(ast.walk(ast.parse(source)))] != []


def test_exports_and_names_through_the_model_are_not_spelled() -> None:
    source = '__all__ = ["cpu_temp_c"]\nx = H.cpu_temp_c\ny = health.frames_processed'
    assert spelled(ast.walk(ast.parse(source))) == []


def test_health_field_names_are_spelled_only_in_wire() -> None:
    problems = [
        f"{module}:{line}: {name!r}"
        for module, found in spelled_in_edged().items()
        for line, name in found
        if (module, name) not in ALLOWED
    ]
    assert not problems, "use wire.Health or wire.HEALTH_FIELDS:\n" + "\n".join(problems)


def test_the_allow_list_is_still_needed() -> None:
    found = {(m, name) for m, spots in spelled_in_edged().items() for _, name in spots}
    assert found >= ALLOWED, ALLOWED - found


def test_field_names_fail_for_a_field_the_model_lacks() -> None:
    assert wire.HEALTH_FIELDS.frames_processed == "frames_processed"
    assert wire.HEALTH_FIELDS.schema_ == "schema"
    with pytest.raises(AttributeError, match="Health has no field 'frame_processed'"):
        _ = wire.HEALTH_FIELDS.frame_processed


def test_the_status_page_script_names_event_fields_through_the_wire_format() -> None:
    """page.html reads an event's fields as ``c[F.label]``, where the server fills ``F`` from
    ``wire``; a property spelled in the script (``c.label``) would survive a rename."""
    import json
    import re

    from edged.web import server

    script = server.PAGE.read_text(encoding="utf-8").split("<script>", 1)[1]
    event_names = set(wire.EVENT_FIELDS) | set(wire.CLASS_FIELDS)
    # obj.name, but not F.name (the lookup itself) or an element's dataset.name
    spelled = {
        name
        for obj, name in re.findall(r"(\w+)\.([A-Za-z_]\w*)", script)
        if name in event_names and obj not in ("F", "dataset")
    }
    assert not spelled, f"page.html spells event fields: {sorted(spelled)}"
    used = set(re.findall(r"\bF\.(\w+)", script))
    fields = json.loads(server.PAGE_FIELDS)
    assert used == set(fields), (used, fields)
    assert set(fields.values()) <= event_names
