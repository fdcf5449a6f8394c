"""The wire format with cameras: a camera's topics and fields, and the one camera of a
[capture] config publishing exactly what it published before cameras existed."""

from __future__ import annotations

import json

import pytest

from edged import wire
from edged.classify import Class, Classification
from edged.publish import events

RESULT = Classification((Class(3, "tabby, cat", 0.8123456), Class(7, "dog", 0.1)), False)

# What a [capture] config published before [[cameras]] existed, captured from that release
# (the same inputs as below): the bytes must not change.
EVENT_BEFORE = (
    b'{"schema":"edged.event/1","device":"d1","label":"tabby, cat","label_id":3,'
    b'"score":0.81235,"top_k":[{"label":"tabby, cat","label_id":3,"score":0.81235},'
    b'{"label":"dog","label_id":7,"score":0.1}],"ambiguous":false,"model":"m.tflite",'
    b'"backend":"cpu","inference_ms":2.5,"run_id":"r","seq":4,'
    b'"ts":"2026-11-27T09:00:00.123Z","frame":17,"source":"a.jpg","region":"feeder",'
    b'"confirmed_label":"tabby, cat"}'
)
STATE_BEFORE = (
    b'{"schema":"edged.state/1","device":"d1","label":"tabby, cat","label_id":3,'
    b'"score":0.81235,"top_k":[{"label":"tabby, cat","label_id":3,"score":0.81235},'
    b'{"label":"dog","label_id":7,"score":0.1}],"ambiguous":false,"model":"m",'
    b'"backend":"cpu","inference_ms":1.0,"ts":"t","frame":3,"region":null,'
    b'"confirmed_label":null}'
)
HEALTH_KEYS_BEFORE = [
    "schema", "device", "version", "run_id", "ts", "uptime_s", "state", "source_live",
    "backend", "fallback_reason", "fallbacks", "worker_restarts", "worker_pid", "model",
    "model_sha256", "tpus", "tpu_temp_c", "fps", "inference_ms", "frames_captured",
    "frames_processed", "frames_dropped", "frames_lost", "frames_skipped", "frames_static",
    "source_state", "source_reconnects", "source_fps", "source_dropped", "source_corrupt",
    "source_error", "sensor", "sensor_network", "sensor_upload_percent", "sensor_dnn_ms",
    "sensor_dsp_ms", "events_published", "events_waiting", "events_resent", "events_evicted",
    "events_filtered", "spool", "mqtt_reconnects", "mqtt_dropped", "cpu_percent", "rss_mb",
    "disk_write_bytes", "cpu_temp_c", "throttled", "pid", "paused",
]  # fmt: skip


def _event(camera: str | None = None) -> bytes:
    return events.event_json(
        device="d1",
        run_id="r",
        seq=4,
        frame=17,
        source="a.jpg",
        result=RESULT,
        model="m.tflite",
        backend="cpu",
        inference_ms=2.5,
        region="feeder",
        confirmed_label="tabby, cat",
        camera=camera,
    )


def _health(**extra: object) -> wire.Health:
    return wire.Health(
        device="d",
        version="v",
        ts="t",
        uptime_s=1,
        backend=None,
        model=None,
        model_sha256=None,
        fps=0,
        inference_ms=wire.Percentiles(p50=None, p95=None),
        frames_captured=0,
        frames_processed=0,
        frames_dropped=0,
        events_published=0,
        mqtt_reconnects=0,
        cpu_percent=None,
        rss_mb=None,
        cpu_temp_c=None,
        throttled=None,
        pid=1,
        **extra,
    )


@pytest.fixture(autouse=True)
def _fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "utc_now", lambda: "2026-11-27T09:00:00.123Z")


def test_a_capture_configs_payloads_are_byte_for_byte_as_before() -> None:
    assert _event() == EVENT_BEFORE
    state = wire.State(
        device="d1",
        ts="t",
        frame=3,
        **events.classified_fields(RESULT, model="m", backend="cpu", inference_ms=1.0),
    )
    assert state.to_json() == STATE_BEFORE
    assert list(json.loads(_health().to_json())) == HEALTH_KEYS_BEFORE
    # and the topics: no camera level
    assert wire.camera_suffix(None, wire.Suffix.EVENTS) == "events"
    assert wire.camera_suffix(None, "state/feeder") == "state/feeder"


def test_a_cameras_event_carries_its_name_in_the_models_order() -> None:
    fast = _event("porch")
    event = wire.Event.model_validate_json(fast)
    assert event.camera == "porch"
    assert fast == event.to_json()
    assert json.loads(fast) == {**json.loads(EVENT_BEFORE), "camera": "porch"}


def test_health_cameras_object() -> None:
    cam = wire.CameraHealth(
        state="down",
        error="connection refused",
        fps=0.0,
        frames=10,
        dropped=2,
        source_state="reconnecting",
        reconnects=1,
        last_frame_age_s=12.5,
        model="m.tflite",
        backend="cpu",
        inference_ms=wire.Percentiles(p50=5.0, p95=7.0),
    )
    health = _health(cameras={"porch": cam})
    back, dropped = wire.read_health(health.to_json())
    assert not dropped and back.cameras == {"porch": cam}
    assert "cameras" not in json.loads(_health().to_json())


def test_camera_topics() -> None:
    assert wire.camera_suffix("porch", wire.Suffix.EVENTS) == "porch/events"
    assert wire.retained_qos("porch/state") == 0
    assert wire.retained_qos("porch/state/door") == 0
    assert wire.retained_qos("state/door") == 0
    assert wire.retained_qos("health") == 1
    parse = wire.parse_camera_topic
    assert parse("edged", "edged/d1/events") == ("d1", None, "events")
    assert parse("edged", "edged/d1/porch/events") == ("d1", "porch", "events")
    assert parse("edged", "edged/d1/porch/state/door") == ("d1", "porch", "state/door")
    assert parse("edged", "edged/d1/state/door") == ("d1", None, "state/door")
    assert parse("edged", "edged/d1/health") is None
    assert parse("edged", "other/d1/events") is None


def test_command_takes_a_camera() -> None:
    assert wire.Command.model_validate({"cmd": "snapshot", "camera": "porch"}).camera == "porch"
