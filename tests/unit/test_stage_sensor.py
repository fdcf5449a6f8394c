"""A frame the camera's sensor classified (the AI camera) is classified in the camera's own
thread when nothing of that camera waits or is in flight in its stage, and queued like any
frame otherwise, so that a camera's results keep their order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edged.engine import Work
from edged.infer.base import Inference, OutputSpec
from edged.pipeline.inference import InferenceStage
from edged.tensor import InputSpec, ModelInput, SensorOutput

SPEC = InputSpec(height=2, width=2, dtype=np.dtype(np.uint8))
OUT = OutputSpec(3, np.dtype(np.float32), 0.0, 0)


class _Part:
    input_spec = SPEC

    def __init__(self, name: str) -> None:
        self.name = name


class HeldEngine:
    """An engine whose CPU frames finish only when the test releases them."""

    depth = 1

    def __init__(self) -> None:
        self.model, self.backend = _Part("cpu-model"), _Part("cpu")
        self.release = threading.Event()
        self.started = threading.Event()

    def submit(self, prepared: Any) -> None:
        self.started.set()

    def collect_raw(self) -> Inference:
        assert self.release.wait(10), "the test never released the CPU frame"
        return Inference(np.zeros(3, np.float32), OUT, "cpu", 5.0)

    def sensor_inference(self, sensor: SensorOutput) -> Inference:
        return Inference(sensor.scores, OUT, sensor.backend, sensor.ms)

    def close(self) -> None: ...


class _Route:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str, int]] = []  # (frame, backend, thread)
        self.done = threading.Condition()

    def collected(self, item: Work, inference: Inference) -> bool:
        return True

    def publish(self, item: Work, inference: Inference, engine: Any) -> None:
        with self.done:
            self.calls.append((item.number, inference.backend, threading.get_ident()))
            self.done.notify_all()

    def lost(self, item: Work, exc: Exception) -> None:
        raise AssertionError(f"frame {item.number} lost: {exc}")

    def wait_for(self, n: int) -> list[tuple[int, str, int]]:
        with self.done:
            assert self.done.wait_for(lambda: len(self.calls) >= n, 10), self.calls
            return list(self.calls)


def _sensor_frame(number: int) -> Work:
    scores = np.array([0.1, 0.7, 0.2], np.float32)
    out = SensorOutput(scores, None, "network", model="net.rpk", backend="imx500", ms=2.4)
    return Work(number, "camera0", None, sensor=out)


def _cpu_frame(number: int) -> Work:
    return Work(number, "camera0", ModelInput(np.zeros((1, 2, 2, 3), np.uint8), SPEC))


@pytest.fixture
def running() -> Iterator[tuple[InferenceStage, HeldEngine, _Route, threading.Thread]]:
    stop = threading.Event()
    engine = HeldEngine()
    stage = InferenceStage("", [engine], stop, threading.Event(), lambda name, why: None)  # type: ignore[list-item]
    route = _Route()
    stage.attach("cam", route, 2)
    assert not stage.sensor_here("cam", _sensor_frame(0)), "no interpreter runs yet"

    def sink(route: Any, item: Work, inference: Inference, engine: Any) -> None:
        route.publish(item, inference, engine)

    loop = threading.Thread(target=stage.run, args=(0, sink), daemon=True)
    loop.start()
    yield stage, engine, route, loop
    engine.release.set()
    stop.set()
    loop.join(5)


def test_an_idle_camera_classifies_its_sensor_frame_in_its_own_thread(
    running: tuple[InferenceStage, HeldEngine, _Route, threading.Thread],
) -> None:
    stage, _, route, _ = running
    deadline = time.monotonic() + 5  # the interpreter's loop starts in its own time
    while not stage.sensor_here("cam", _sensor_frame(1)):
        assert time.monotonic() < deadline, "an idle camera's sensor frame was never taken"
        time.sleep(0.01)
    assert route.calls == [(1, "imx500", threading.get_ident())]
    stage.paused.set()
    assert not stage.sensor_here("cam", _sensor_frame(2)), "paused: the stage drops it"
    stage.paused.clear()
    stage.stop.set()
    assert not stage.sensor_here("cam", _sensor_frame(3))


def test_a_sensor_frame_behind_a_cpu_frame_waits_its_turn(
    running: tuple[InferenceStage, HeldEngine, _Route, threading.Thread],
) -> None:
    stage, engine, route, loop = running
    stage.lanes.put_newest("cam", _cpu_frame(1))  # the camera fell back: the CPU classifies
    assert engine.started.wait(5)
    assert not stage.sensor_here("cam", _sensor_frame(2)), "frame 1 is still in flight"
    stage.lanes.put_newest("cam", _sensor_frame(2))  # so the camera queues it
    engine.release.set()
    calls = route.wait_for(2)
    assert [(n, backend) for n, backend, _ in calls] == [(1, "cpu"), (2, "imx500")]
    assert {thread for _, _, thread in calls} == {loop.ident}
    assert stage.sensor_here("cam", _sensor_frame(3)), "nothing in flight any more"
    assert route.calls[-1] == (3, "imx500", threading.get_ident())
