"""Results are classified and published either by the infer thread or, where the machine has
a core the interpreter's threads leave free, by a thread beside it: either way every
classified frame becomes one event, in frame order, with the classification of its frame."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import edged.app
from edged.app import Daemon
from edged.capture.replay import bundled_samples
from edged.config import parse_config
from edged.engine import open_engine
from edged.wire import Suffix
from tests.support import FakePublisher

FRAMES = 40


def _photos() -> list[Path]:
    return sorted(p for p in bundled_samples().iterdir() if p.suffix == ".jpg")


@pytest.mark.parametrize("spare", [True, False], ids=["beside", "inline"])
def test_every_result_becomes_one_event_in_order(
    spare: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edged.app, "spare_core", lambda threads: spare)
    threads_seen: set[str] = set()
    publisher = FakePublisher()
    original = publisher.publish

    def publish(topic: str, payload: bytes, qos: int | None = None, retain: bool = False) -> None:
        threads_seen.add(threading.current_thread().name)
        original(topic, payload, qos, retain)

    publisher.publish = publish  # type: ignore[method-assign]
    cfg = parse_config(
        {
            "device": {"id": "beside"},
            "capture": {"type": "replay", "loop": True},
            "model": {"num_threads": 1},
            "publish": {"policy": "every_frame"},
        }
    )
    daemon = Daemon(cfg, max_frames=FRAMES, publisher=publisher)
    assert daemon.run() == 0

    events = [
        json.loads(payload)
        for topic, payload, _, _ in publisher.published_messages
        if topic == Suffix.EVENTS
    ]
    assert daemon.stats.frames_processed >= FRAMES
    assert len(events) == daemon.stats.frames_processed == daemon.stats.events_created
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["frame"] for e in events] == list(range(1, len(events) + 1))
    # each event carries its own frame's classification
    cfg1 = parse_config({})
    engine = open_engine(cfg1.model, cfg1.classify)
    try:
        expected = {p.name: engine.infer(engine.load(p))[0].top1 for p in _photos()}
    finally:
        engine.close()
    for event in events:
        top = expected[event["source"]]
        assert top is not None and event["label"] == top.label, event
    assert ("edged-publish" in threads_seen) is spare
    assert ("edged-infer" in threads_seen) is not spare
