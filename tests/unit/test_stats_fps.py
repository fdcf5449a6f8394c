"""A camera's frame rate in health: frames over the time they span, from the first frames
of a run on, and falling when frames stop."""

from __future__ import annotations

import types

import pytest

from edged.health import stats as stats_module


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(stats_module, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


@pytest.mark.parametrize("frames", [4, 20])
def test_two_frames_a_second_read_as_two(clock: Clock, frames: int) -> None:
    s = stats_module.Stats()
    for _ in range(frames):
        s.record_inference(5.0)
        clock.now += 0.5
    clock.now -= 0.4  # read 0.1 s after the last frame
    assert s.fps() == pytest.approx(2.0, rel=0.1)


def test_the_rate_falls_when_frames_stop(clock: Clock) -> None:
    s = stats_module.Stats()
    for _ in range(10):
        s.record_inference(5.0)
        clock.now += 0.5
    steady = s.fps()
    clock.now += 6.0
    assert 0 < s.fps() < steady * 0.6
    clock.now += 10.0
    assert s.fps() == 0.0
