from __future__ import annotations

import json
from pathlib import Path

import pytest

from edged import wire
from tests.support import ROOT

SCHEMA_DIR = ROOT / "docs" / "schema"


def test_generated_schemas_are_up_to_date() -> None:
    expected = wire.json_schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == expected, "docs/schema is stale: run `python -m edged.wire docs/schema`"


def test_write_schemas(tmp_path: Path) -> None:
    written = wire.write_schemas(tmp_path / "s")
    assert sorted(p.name for p in written) == sorted(wire.SCHEMA_FILES)
    event = json.loads((tmp_path / "s" / "event.json").read_text())
    assert event["properties"]["schema"]["const"] == wire.EVENT_SCHEMA
    assert "seq" in event["required"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://[::1]:1884", ("::1", 1884, False)),
        ("mqtts://[fe80::1]", ("fe80::1", 8883, True)),
    ],
)
def test_broker_address(url: str, expected: tuple[str, int, bool]) -> None:
    assert wire.broker_address(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://", "bad broker URL"),
        ("mqtt://[::1]:99999", "bad port"),
    ],
)
def test_broker_address_rejects(url: str, message: str) -> None:
    with pytest.raises(wire.BrokerUrlError, match=message):
        wire.broker_address(url)


def test_topics_round_trip() -> None:
    t = wire.topic("site/edged/", "cam-1", wire.Suffix.EVENTS)
    assert t == "site/edged/cam-1/events"
    assert wire.parse_topic("site/edged", t) == ("cam-1", "events")
    assert wire.parse_topic("site/edged", "site/edged/cam-1/other") is None
    assert wire.parse_topic("site/edged", t, (wire.Suffix.HEALTH,)) is None
    assert wire.subscription("edged", wire.Suffix.HEALTH) == "edged/+/health"


def _event(**extra: object) -> wire.Event:
    return wire.Event(
        device="d1",
        seq=3,
        ts=wire.utc_now(),
        frame=7,
        source="a.jpg",
        label="cat",
        label_id=281,
        score=0.9,
        top_k=[wire.ClassScore(label="cat", label_id=281, score=0.9)],
        ambiguous=False,
        model="m.tflite",
        backend="cpu",
        inference_ms=4.2,
        **extra,
    )


def test_event_json_round_trips_and_keeps_unknown_fields() -> None:
    raw = _event(run_id="r1").to_json()
    data = json.loads(raw)
    assert list(data)[:2] == ["schema", "device"]
    assert data["schema"] == wire.EVENT_SCHEMA and data["run_id"] == "r1"
    back = wire.Event.model_validate_json(raw)
    assert back.seq == 3 and back.top_k[0].label_id == 281


def test_event_rejects_other_schema_id() -> None:
    data = json.loads(_event().to_json())
    data["schema"] = "edged.event/2"
    with pytest.raises(ValueError, match="schema"):
        wire.Event.model_validate(data)


def test_status() -> None:
    assert wire.Status.parse(b"online\n").online
    assert not wire.Status.parse(b"OFFLINE").online
    with pytest.raises(ValueError, match="unexpected status"):
        wire.Status.parse(b"maybe")
