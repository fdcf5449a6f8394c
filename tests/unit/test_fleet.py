"""edged.fleet: topic and health parsing, the status table, the wait condition, the CLI."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edged import fleet, wire
from edged.fleet import DeviceState, FleetView

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


# A complete report, as every edged release sends it.
HEALTH: dict[str, Any] = {
    "schema": "edged.health/1", "device": "dev1", "version": "0.1.1",
    "ts": "2026-05-01T12:00:05Z", "uptime_s": 12.5, "backend": "cpu",
    "model": "efficientnet_lite0_int8", "model_sha256": None, "fps": 2.0,
    "inference_ms": {"p50": 30.0, "p95": 35.0}, "frames_captured": 25,
    "frames_processed": 25, "frames_dropped": 0, "events_published": 25,
    "mqtt_reconnects": 0, "cpu_percent": 40.0, "rss_mb": 90.0, "cpu_temp_c": 48.25,
    "throttled": None, "pid": 4242,
}  # fmt: skip


def health(**overrides: object) -> bytes:
    return json.dumps({**HEALTH, **overrides}).encode()


def device_state(
    device: str = "dev1",
    *,
    online: bool | None = None,
    health_ts: datetime | None = None,
    last_seen: float | None = None,
    **fields: object,
) -> DeviceState:
    """A device as the view holds it; with ``health_ts`` or health ``fields``, after a
    complete health report of ``fields`` sent at ``health_ts`` (default T0)."""
    if health_ts is None and not fields:
        return DeviceState(device=device, online=online, last_seen=last_seen)
    ts = health_ts or T0
    report = wire.Health.model_validate(
        {**HEALTH, "device": device, "ts": fleet.format_ts(ts), **fields}
    )
    return DeviceState(device, online, report, ts, last_seen)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("edged/dev1/status", ("dev1", "status")),
        ("edged/dev-2.lab/health", ("dev-2.lab", "health")),
        ("edged/dev1/events", None),
        ("edged/dev1/health/extra", None),
        ("edged//health", None),
        ("other/dev1/health", None),
        ("edgedx/dev1/health", None),
    ],
)
def test_split_topic(topic: str, expected: tuple[str, str] | None) -> None:
    assert fleet.split_topic("edged", topic) == expected


def test_split_topic_with_nested_prefix() -> None:
    assert fleet.split_topic("site/a/edged/", "site/a/edged/dev1/status") == ("dev1", "status")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-01T12:00:05Z", T0 + timedelta(seconds=5)),
        ("2026-05-01T12:00:05.250Z", T0 + timedelta(seconds=5.25)),
        ("2026-05-01T14:00:05+02:00", T0 + timedelta(seconds=5)),
    ],
)
def test_parse_ts(text: str, expected: datetime) -> None:
    assert fleet.parse_ts(text) == expected


def test_parse_ts_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        fleet.parse_ts("2026-05-01T12:00:05")


def test_format_ts_round_trips() -> None:
    assert fleet.format_ts(T0) == "2026-05-01T12:00:00Z"
    assert fleet.parse_ts(fleet.format_ts(T0)) == T0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "a list"),
        (json.dumps({"schema": "other/1"}).encode(), "schema 'other/1'"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_parse_health_rejects(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fleet.parse_health(payload)


def test_view_tracks_status_and_health() -> None:
    view = FleetView("edged")
    assert view.handle("edged/dev1/status", b"online", received=100.0) == "dev1"
    assert view.handle("edged/dev1/health", health(), received=101.0) == "dev1"
    assert view.handle("edged/dev1/events", b"{}", received=102.0) is None
    state = view.get("dev1")
    assert state is not None
    assert state.online is True
    assert state.version == "0.1.1"
    assert state.backend == "cpu"
    assert state.fps == 2.0
    assert state.cpu_temp_c == 48.25
    assert state.frames_processed == 25
    assert state.health_ts == T0 + timedelta(seconds=5)
    assert state.last_seen == 101.0

    view.handle("edged/dev1/status", b"offline", received=103.0)
    state = view.get("dev1")
    assert state is not None
    assert state.online is False
    assert state.version == "0.1.1"  # health is kept


def test_view_ignores_bad_health_and_keeps_the_previous_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = FleetView()
    view.handle("edged/dev1/health", health(), received=1.0)
    view.handle("edged/dev1/health", b"garbage", received=2.0)
    state = view.get("dev1")
    assert state is not None and state.version == "0.1.1"
    assert "not JSON" in caplog.text


def test_view_keeps_unknown_fields_and_defaults_an_invalid_optional_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = FleetView()
    view.handle("edged/d/health", health(state="rebooting", future_field=[1, 2]))
    state = view.get("d")
    assert state is not None and state.health is not None
    assert state.version == "0.1.1" and state.fps == 2.0
    assert state.state is None  # not a state this release knows: the field's default
    assert state.extra["future_field"] == [1, 2]
    assert "health field(s) state invalid" in caplog.text


def test_view_tolerates_missing_optional_fields() -> None:
    view = FleetView()
    view.handle("edged/d/health", health())  # no run_id, state, source_live, tpus ...
    state = view.get("d")
    assert state is not None
    assert (state.run_id, state.state, state.source_live) == (None, None, None)
    assert state.health is not None and state.health.frames_lost == 0


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"fps": "fast"}, "health field fps: Input should be a valid number"),
        ({"frames_processed": None}, "health field frames_processed"),
        ({"inference_ms": {"p50": "x", "p95": 1.0}}, "health field inference_ms.p50"),
    ],
)
def test_view_ignores_a_report_with_an_invalid_required_field(
    overrides: dict[str, object], words: str, caplog: pytest.LogCaptureFixture
) -> None:
    view = FleetView()
    view.handle("edged/d/health", health(), received=1.0)
    view.handle("edged/d/health", health(version="9.9.9", **overrides), received=2.0)
    state = view.get("d")
    assert state is not None and state.version == "0.1.1" and state.last_seen == 1.0
    assert words in caplog.text


def test_a_report_without_a_required_field_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    data = {k: v for k, v in HEALTH.items() if k != "fps"}
    view = FleetView()
    view.handle("edged/d/health", json.dumps(data).encode())
    state = view.get("d")
    assert state is not None and state.health is None
    assert "health field fps: Field required" in caplog.text


def test_devices_are_sorted() -> None:
    view = FleetView()
    for dev in ("b", "c", "a"):
        view.handle(f"edged/{dev}/status", b"online")
    assert [s.device for s in view.devices()] == ["a", "b", "c"]


def test_is_healthy() -> None:
    since = T0
    good = device_state(
        device="dev1", online=True, version="0.1.1", health_ts=T0 + timedelta(seconds=1)
    )
    assert fleet.is_healthy(good, "0.1.1", since)
    assert not fleet.is_healthy(None, "0.1.1", since)
    assert not fleet.is_healthy(good, "0.1.0", since)
    assert not fleet.is_healthy(
        device_state(device="dev1", online=False, version="0.1.1", health_ts=good.health_ts),
        "0.1.1",
        since,
    )
    assert not fleet.is_healthy(
        device_state(device="dev1", online=True, version="0.1.1", health_ts=T0), "0.1.1", since
    )


def test_describe_wait_failure() -> None:
    assert "nothing heard" in fleet.describe_wait_failure("dev2", None, "0.1.1")
    state = device_state(device="dev2", online=False, version="0.1.0", health_ts=T0)
    text = fleet.describe_wait_failure("dev2", state, "0.1.1")
    assert text == "device dev2: its status is offline"
    state = device_state(device="dev2", online=True, version="0.1.0", health_ts=T0)
    text = fleet.describe_wait_failure("dev2", state, "0.1.1")
    assert text == "device dev2: it reports version 0.1.0, expected 0.1.1"


def report(at: int, frames: int, fps: float, **kw: object) -> DeviceState:
    fields: dict[str, Any] = {
        "online": True, "version": "0.2.0", "backend": "cpu", "run_id": "r1",
        "source_live": True, "state": "ok",
    }  # fmt: skip
    fields.update(kw)
    return device_state(
        device="dev1",
        health_ts=T0 + timedelta(seconds=at),
        frames_processed=frames,
        fps=fps,
        **fields,
    )


def test_gate_passes_a_device_whose_frames_grow() -> None:
    gate = fleet.Gate("0.2.0", T0)
    assert not gate.update(report(2, 10, 5.0))  # the baseline: one report proves nothing
    assert "needs a second health report" in (gate.failure(report(2, 10, 5.0)) or "")
    assert gate.update(report(4, 20, 5.0))
    assert gate.failure(report(4, 20, 5.0)) is None


@pytest.mark.parametrize(
    ("second", "words"),
    [
        (report(4, 0, 0.0), "not classifying: frames_processed stayed at 0 and fps is 0"),
        (report(4, 10, 0.0), "not classifying: frames_processed stayed at 10"),
        (report(4, 20, 5.0, backend="cpu"), "backend cpu, expected edgetpu"),
        (report(4, 20, 5.0, state="stalled"), "not classifying: it reports state stalled"),
        (report(4, 20, 5.0, online=False), "its status is offline"),
        (report(4, 20, 5.0, version="0.1.0"), "version 0.1.0, expected 0.2.0"),
    ],
)
def test_gate_names_the_failed_condition(second: DeviceState, words: str) -> None:
    first = report(2, 0 if "stayed at 0" in words else 10, 5.0)
    gate = fleet.Gate("0.2.0", T0, backend="edgetpu" if "edgetpu" in words else None)
    gate.update(first)
    assert not gate.update(second)
    assert words in (gate.failure(second) or ""), gate.failure(second)


def test_gate_starts_a_new_window_when_the_daemon_restarts() -> None:
    gate = fleet.Gate("0.2.0", T0)
    gate.update(report(2, 100, 5.0, run_id="r1"))
    assert not gate.update(report(4, 3, 5.0, run_id="r2"))  # a new run: a new baseline
    assert gate.update(report(6, 12, 5.0, run_id="r2"))


def test_gate_on_a_finished_file_source_needs_frames() -> None:
    gate = fleet.Gate("0.2.0", T0)
    files = report(2, 0, 0.0, source_live=False)
    assert "no frame processed" in (gate.failure(files) or "")
    assert gate.update(report(2, 8, 0.0, source_live=False))


def test_table_rows() -> None:
    now = T0 + timedelta(seconds=65)
    states = [
        device_state(
            device="dev1",
            online=True,
            version="0.1.1",
            backend="edgetpu",
            fps=14.96,
            cpu_temp_c=51.04,
            frames_processed=1200,
            health_ts=T0 + timedelta(seconds=5),
        ),
        device_state(device="dev2", online=False, last_seen=now.timestamp() - 7200),
        device_state(device="dev3"),
    ]
    rows = fleet.table_rows(states, now)
    assert rows[0] == [
        "dev1", "yes", "0.1.1", "edgetpu", "15.0", "51.0 °C", "1200", "60s ago", "-"
    ]  # fmt: skip
    assert rows[1] == ["dev2", "no", "-", "-", "-", "-", "-", "2h ago", "-"]
    assert rows[2] == ["dev3", "?", "-", "-", "-", "-", "-", "-", "-"]
    assert len(rows[0]) == len(fleet.TABLE_COLUMNS)


def test_render_table_has_every_device() -> None:
    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(
        fleet.render_table([device_state(device="dev1", online=True, version="0.1.1")], T0)
    )
    text = console.export_text()
    assert "dev1" in text and "0.1.1" in text and "last seen" in text


def test_as_json() -> None:
    state = device_state(online=True, health_ts=T0, last_seen=T0.timestamp(), version="0.1.1")
    data = state.as_json()
    assert list(data)[:3] == ["device", "online", "last_seen"]
    assert data["ts"] == "2026-05-01T12:00:00Z"
    assert data["last_seen"] == "2026-05-01T12:00:00Z"
    assert data["version"] == "0.1.1" and data["inference_ms"] == {"p50": 30.0, "p95": 35.0}
    assert "schema" not in data
    assert set(data) - {"online", "last_seen"} == set(wire.HEALTH_FIELDS) - {"schema"}
    json.dumps(data)


def test_as_json_before_any_health_has_every_field_null() -> None:
    data = device_state("dev2", online=False).as_json()
    assert data["device"] == "dev2" and data["online"] is False
    assert data["version"] is None and data["fps"] is None and data["last_seen"] is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", 1883, False)),
        ("mqtts://broker", ("broker", 8883, True)),
        ("mqtt://127.0.0.1:18883", ("127.0.0.1", 18883, False)),
    ],
)
def test_broker_address(url: str, expected: tuple[str, int, bool]) -> None:
    assert fleet.broker_address(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker", "bad broker URL"),
        ("mqtt://user:pw@broker", "credentials do not belong"),
        ("mqtt://broker:99999", "bad port"),
    ],
)
def test_broker_address_rejects(url: str, message: str) -> None:
    with pytest.raises(fleet.FleetError, match=message):
        fleet.broker_address(url)


def test_read_password(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "pw"
    path.write_text("s3cret\n")
    assert fleet.read_password(str(path)) == "s3cret"
    assert fleet.read_password("") is None
    with pytest.raises(fleet.FleetError, match="cannot read password file"):
        fleet.read_password(str(path) + ".missing")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edged")
    fleet.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_register_adds_status_and_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_MQTT_PASSWORD_FILE", "/run/pw")
    args = _parse(["fleet", "status", "--json", "--wait", "0.5", "--url", "mqtt://b:1"])
    assert args.func is fleet.cmd_status
    assert (args.json, args.wait, args.url, args.password_file) == (
        True,
        0.5,
        "mqtt://b:1",
        "/run/pw",
    )

    args = _parse(["fleet", "wait", "--device", "dev1", "--version", "0.1.1", "--timeout", "5"])
    assert args.func is fleet.cmd_wait
    assert (args.device, args.version, args.timeout, args.prefix) == ("dev1", "0.1.1", 5.0, "edged")


def test_no_password_option_on_the_command_line() -> None:
    with pytest.raises(SystemExit):
        _parse(["fleet", "status", "--password", "x"])


def test_wait_with_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["fleet", "wait", "--device", "d", "--version", "1", "--since", "yesterday"])
    assert fleet.cmd_wait(args) == fleet.EXIT_USAGE
    assert "bad --since" in capsys.readouterr().err


def test_status_reports_an_unreachable_broker(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = _parse(["fleet", "status", "--url", f"mqtt://127.0.0.1:{port}", "--wait", "0.2"])
    assert fleet.cmd_status(args) == fleet.EXIT_FAILED
    assert "cannot reach broker" in capsys.readouterr().err


def _camera(state: str, error: str | None = None, frames: int = 10) -> dict[str, object]:
    return {
        "state": state,
        "error": error,
        "fps": 5.0 if state == "ok" else 0.0,
        "frames": frames,
        "dropped": 0,
        "inference_ms": {"p50": 5.0, "p95": 6.0},
    }


def _two_reports(
    first: dict[str, dict[str, object]], later: dict[str, dict[str, object]]
) -> tuple[DeviceState, DeviceState]:
    """Two health reports of one run, 5 s apart, of a live device whose total grew."""
    return (
        device_state(
            online=True, version="0.1.1", frames_processed=10, fps=5.0, source_live=True,
            cameras=first, health_ts=T0,
        ),
        device_state(
            online=True, version="0.1.1", frames_processed=20, fps=5.0, source_live=True,
            cameras=later, health_ts=T0 + timedelta(seconds=5),
        ),
    )  # fmt: skip


def _judge(gate: fleet.Gate, first: DeviceState, later: DeviceState) -> str | None:
    assert gate.update(first) is False  # one report cannot show frames growing
    gate.update(later)
    return gate.failure(later)


SINCE = T0 - timedelta(seconds=1)


def test_cameras_cell_and_the_gate_judge_every_camera() -> None:
    both = _two_reports(
        {"hall": _camera("ok", frames=4), "gate": _camera("ok", frames=6)},
        {"hall": _camera("ok", frames=9), "gate": _camera("ok", frames=11)},
    )
    assert _judge(fleet.Gate("0.1.1", SINCE), *both) is None
    assert both[1].cameras_cell() == "2/2 ok"

    one_down = _two_reports(
        {"hall": _camera("ok", frames=4), "gate": _camera("starting", frames=0)},
        {"hall": _camera("ok", frames=20), "gate": _camera("down", "connection refused", 0)},
    )
    gate = fleet.Gate("0.1.1", SINCE)
    assert _judge(gate, *one_down) == (
        "not classifying on every camera: camera gate is down (connection refused)"
    )
    assert gate.passed is False
    assert one_down[1].cameras_cell() == "1/2 ok (down: gate)"


def test_the_gate_wants_each_camera_to_classify_between_two_reports() -> None:
    """A camera still reported ok whose frames did not grow (its stream froze within the
    stall window) is not classifying, however fast the other one runs."""
    frozen = _two_reports(
        {"hall": _camera("ok", frames=4), "gate": _camera("ok", frames=6)},
        {"hall": _camera("ok", frames=14), "gate": _camera("ok", frames=6)},
    )
    failure = _judge(fleet.Gate("0.1.1", SINCE), *frozen)
    assert failure is not None
    assert failure.startswith("not classifying on every camera: camera gate classified nothing")
    assert "(frames stayed at 6)" in failure


def test_the_gate_names_a_configured_camera_the_device_does_not_report() -> None:
    reports = _two_reports({"hall": _camera("ok", frames=4)}, {"hall": _camera("ok", frames=9)})
    gate = fleet.Gate("0.1.1", SINCE, cameras=["hall", "gate"])
    assert _judge(gate, *reports) == ("its health report lacks camera(s) gate (it reports: hall)")
    assert _judge(fleet.Gate("0.1.1", SINCE, cameras=["hall"]), *reports) is None
    single = device_state(
        online=True, version="0.1.1", frames_processed=10, fps=5.0, source_live=True
    )
    assert fleet.Gate("0.1.1", SINCE, cameras=["hall"]).failure(single) == (
        "its health report lacks camera(s) hall (it reports: no [[cameras]])"
    )


def test_min_cameras_lets_the_gate_pass_with_fewer_classifying() -> None:
    one_down = _two_reports(
        {"hall": _camera("ok", frames=4), "gate": _camera("down", "HTTP 404", 0)},
        {"hall": _camera("ok", frames=9), "gate": _camera("down", "HTTP 404", 0)},
    )
    assert _judge(fleet.Gate("0.1.1", SINCE, min_cameras=1), *one_down) is None
    both_down = _two_reports(
        {"hall": _camera("down", "refused", 4), "gate": _camera("down", "HTTP 404", 0)},
        {"hall": _camera("down", "refused", 4), "gate": _camera("down", "HTTP 404", 0)},
    )
    assert _judge(fleet.Gate("0.1.1", SINCE, min_cameras=1), *both_down) == (
        "not classifying on 1 of its 2 cameras (0 classify): camera hall is down (refused); "
        "camera gate is down (HTTP 404)"
    )
    assert _judge(fleet.Gate("0.1.1", SINCE, min_cameras=3), *one_down) == (
        "it reports 2 camera(s), 3 must classify"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min-cameras", "-1"], "min_cameras must be 0 (every camera) or more, not -1"),
        (
            ["--camera", "hall", "--min-cameras", "2"],
            "min_cameras 2 is more than the 1 camera(s) named: hall",
        ),
    ],
)
def test_wait_refuses_an_impossible_camera_minimum(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["fleet", "wait", "--device", "d", "--version", "1", *argv])
    assert fleet.cmd_wait(args) == fleet.EXIT_USAGE
    assert message in capsys.readouterr().err
