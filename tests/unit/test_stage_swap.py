"""A reload hands each interpreter of a stage its new engine; one that does not take it in
time leaves the whole stage on the old model, never two models at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from edged.pipeline.inference import InferenceStage


@dataclass
class _Part:
    name: str


@dataclass
class FakeEngine:
    """What the stage's loop and swap use of an engine (no frame is ever classified)."""

    name: str
    depth: int = 1
    closed: bool = False
    model: _Part = field(init=False)
    backend: _Part = field(init=False)

    def __post_init__(self) -> None:
        self.model, self.backend = _Part(self.name), _Part("cpu")

    def close(self) -> None:
        self.closed = True


class _Route:
    def collected(self, item: Any, inference: Any) -> bool:
        return True

    def publish(self, item: Any, inference: Any, engine: Any) -> None: ...

    def lost(self, item: Any, exc: Exception) -> None: ...


@pytest.fixture
def stage() -> Iterator[InferenceStage]:
    stop = threading.Event()
    engines: list[Any] = [FakeEngine("old0"), FakeEngine("old1")]
    s = InferenceStage("", engines, stop, threading.Event(), lambda name, why: None)
    s.attach("cam", _Route(), 2)  # a lane that never ends: the loops wait for frames
    yield s
    stop.set()


def _loop(stage: InferenceStage, index: int) -> threading.Thread:
    t = threading.Thread(target=stage.run, args=(index, lambda *a: None), daemon=True)
    t.start()
    return t


def test_every_interpreter_takes_its_engine_and_the_old_ones_close(stage: InferenceStage) -> None:
    old: list[Any] = list(stage.engines)
    threads = [_loop(stage, 0), _loop(stage, 1)]
    new: list[Any] = [FakeEngine("new0"), FakeEngine("new1")]
    assert stage.swap(new, timeout=10)
    assert [e.model.name for e in stage.engines] == ["new0", "new1"]
    assert all(e.closed for e in old) and not any(e.closed for e in new)
    stage.stop.set()
    for t in threads:
        t.join(5)
    stage.close()
    assert all(e.closed for e in new)


def test_an_interpreter_that_does_not_take_its_engine_leaves_the_old_model(
    stage: InferenceStage,
) -> None:
    old: list[Any] = list(stage.engines)
    thread = _loop(stage, 0)  # interpreter 1 is stuck: its loop never runs
    new: list[Any] = [FakeEngine("new0"), FakeEngine("new1")]
    assert not stage.swap(new, timeout=1.0)
    assert [e.model.name for e in stage.engines] == ["old0", "old1"]  # one model, the old one
    assert all(e.closed for e in new)
    assert not any(e.closed for e in old)
    stage.stop.set()
    thread.join(5)
    stage.close()
    assert all(e.closed for e in old)
