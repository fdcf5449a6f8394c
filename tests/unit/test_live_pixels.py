"""A camera whose sensor classifies copies a frame's pixels only while someone asks for a
current frame: :class:`PixelDemand` and :meth:`CameraLive.current_frame`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edged.capture.base import Frame, FrameSource, PixelDemand
from edged.config import parse_config
from edged.control.live import CameraLive
from edged.health import Stats
from edged.pipeline.camera import CameraPipeline

IMAGE = np.zeros((4, 4, 3), np.uint8)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(number: int, pixels: bool) -> Frame:
    return Frame(number, IMAGE if pixels else None, "camera0", 0.0)


def test_pixels_wanted_only_for_the_time_asked() -> None:
    clock = Clock()
    demand = PixelDemand(clock)
    assert not demand.wanted()
    demand.ask(5.0)
    assert demand.wanted()
    demand.ask(1.0)  # a shorter ask does not cut a longer one
    clock.now += 4.9
    assert demand.wanted()
    clock.now += 0.2
    assert not demand.wanted()


def test_a_camera_that_copies_every_frame_returns_its_newest_at_once() -> None:
    live = CameraLive()
    assert live.current_frame(timeout=0.0) is None
    live.show(frame(1, True))
    held = live.current_frame(timeout=0.0)
    assert held is not None and held.number == 1


def test_frames_without_pixels_keep_the_last_with_and_an_ask_waits_for_the_next() -> None:
    live = CameraLive()
    live.demand = demand = PixelDemand()
    live.show(frame(1, True))
    live.show(frame(2, False))  # classified on the sensor; nobody looked
    assert live.frame is not None and live.frame.number == 1 and live.behind
    assert not demand.wanted()

    def capture() -> None:  # the capture thread: copies once pixels are wanted
        number = 3
        while not demand.wanted():
            live.show(frame(number, False))
            number += 1
        live.show(frame(number, True))

    thread = threading.Thread(target=capture)
    thread.start()
    try:
        got = live.current_frame(look_s=60.0, timeout=30.0)
    finally:
        thread.join()
    assert got is not None and got.image is not None and got.number >= 3
    assert demand.wanted() and not live.behind
    # while pixels are wanted the newest frame has them: the next ask returns at once
    assert live.current_frame(timeout=0.0) is got


def test_an_ask_that_no_frame_answers_returns_the_newest_held() -> None:
    live = CameraLive()
    live.demand = PixelDemand()
    assert live.current_frame(timeout=0.01) is None  # no frame at all yet
    live.show(frame(1, True))
    live.show(frame(2, False))
    held = live.current_frame(timeout=0.01)  # the camera stalled: the older frame
    assert held is not None and held.number == 1


class SensorSource(FrameSource):
    """A source class whose sensor classifies (it yields nothing here)."""

    type_key = "sensor-test"
    pixels_on_demand = True

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        return iter(())


@pytest.mark.parametrize(
    ("capture", "collector", "on_demand"),
    [
        ({}, None, True),
        ({"skip_static": True}, None, False),  # every frame is compared with the last
        ({}, object(), False),  # collect holds every frame
    ],
)
def test_the_pipeline_leaves_pixels_on_demand_only_when_nothing_needs_every_frame(
    tmp_path: Path, capture: dict[str, Any], collector: object, on_demand: bool
) -> None:
    network = tmp_path / "net.rpk"
    cfg = parse_config({"capture": {"type": "imx500", "network": str(network), **capture}})
    [camera] = cfg.camera_list()
    source, live = SensorSource(), CameraLive()
    publishing: Any = SimpleNamespace(collector=collector)
    CameraPipeline(camera, source, {}, publishing, live, Stats(), health_stall_s=30.0)
    assert (source.demand is not None) is on_demand
    assert live.demand is source.demand
