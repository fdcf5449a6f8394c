from __future__ import annotations

import pytest

from edged.classify import Class, Classification
from edged.publish import events
from edged.wire import Event


@pytest.mark.parametrize(
    "result",
    [
        Classification((Class(3, "tabby, cat", 0.8123456), Class(7, 'say "hi"', 0.1)), False),
        Classification((), True),
    ],
)
def test_event_json_is_the_event_models_json(
    monkeypatch: pytest.MonkeyPatch, result: Classification
) -> None:
    monkeypatch.setattr(events, "utc_now", lambda: "2026-11-27T09:00:00.123Z")
    fields = dict(
        device="cam-1",
        run_id="0b6f9d52-3f1e-4a77-9a4c-5d1f0c2e8a11",
        seq=4,
        frame=17,
        source="ü.jpg",
        result=result,
        model="m.tflite",
        backend="edgetpu",
        inference_ms=2.71828,
    )
    fast = events.event_json(**fields)  # type: ignore[arg-type]
    model = Event(
        device="cam-1",
        run_id="0b6f9d52-3f1e-4a77-9a4c-5d1f0c2e8a11",
        seq=4,
        ts="2026-11-27T09:00:00.123Z",
        frame=17,
        source="ü.jpg",
        **events.classified_fields(
            result, model="m.tflite", backend="edgetpu", inference_ms=2.71828
        ),
    )
    assert fast == model.to_json()
    assert Event.model_validate_json(fast) == model
    # a region's event: the region and its confirmed state, in the model's order too
    fast = events.event_json(**fields, region="feeder", confirmed_label="tabby, cat")  # type: ignore[arg-type]
    regional = model.model_copy(update={"region": "feeder", "confirmed_label": "tabby, cat"})
    assert fast == regional.to_json()
