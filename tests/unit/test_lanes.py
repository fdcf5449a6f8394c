"""The fair queue between cameras and a shared inference stage."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from edged.config import ModelConfig
from edged.health.stats import Stats, StatsTotal
from edged.pipeline.inference import pool_size
from edged.pipeline.lanes import Empty, Lanes


def _lanes(*keys: str, capacity: int = 2, in_flight: int = 8) -> Lanes[int]:
    lanes: Lanes[int] = Lanes()
    for key in keys:
        lanes.add(key, capacity, in_flight)
    return lanes


def test_round_robin_one_item_per_turn() -> None:
    lanes = _lanes("a", "b", "c", capacity=4)
    for i in range(4):
        assert lanes.put("a", i, timeout=0)
    assert lanes.put("b", 10, timeout=0) and lanes.put("c", 20, timeout=0)
    order = [lanes.get(0)[:2] for _ in range(6)]
    assert order == [("a", 0), ("b", 10), ("c", 20), ("a", 1), ("a", 2), ("a", 3)]
    with pytest.raises(Empty):
        lanes.get(None)


def test_a_busy_camera_cannot_starve_a_slow_one() -> None:
    lanes = _lanes("busy", "slow", capacity=2)
    served: Counter[str] = Counter()
    for turn in range(100):
        lanes.put_newest("busy", turn)
        lanes.put_newest("busy", turn)
        if turn % 2 == 0:
            lanes.put_newest("slow", turn)
        key, _, _ = lanes.get(0)
        lanes.done(key)
        served[key] += 1
    # the slow camera had 50 frames and got every turn it asked for
    assert served["slow"] == 50 and served["busy"] == 50


def test_the_newest_frame_wins_and_drops_are_counted() -> None:
    lanes = _lanes("a", capacity=2)
    assert [lanes.put_newest("a", i) for i in range(5)] == [0, 0, 1, 1, 1]
    assert [lanes.get(0)[1] for _ in range(2)] == [3, 4]


def test_in_flight_limit_keeps_a_cameras_results_in_order() -> None:
    lanes = _lanes("a", "b", capacity=4, in_flight=1)
    lanes.put("a", 1, timeout=0)
    lanes.put("a", 2, timeout=0)
    assert lanes.get(0)[:2] == ("a", 1)
    with pytest.raises(Empty):
        lanes.get(0)  # a's second frame waits until its first is done
    lanes.done("a")
    assert lanes.get(0)[:2] == ("a", 2)


def test_idle_means_nothing_waiting_and_nothing_in_flight() -> None:
    lanes = _lanes("a", "b")
    assert lanes.idle("a")
    lanes.put_newest("a", 1)
    assert not lanes.idle("a") and lanes.idle("b")
    assert lanes.get(0)[:2] == ("a", 1)
    assert not lanes.idle("a"), "taken but not done"
    lanes.done("a")
    assert lanes.idle("a")


def test_a_file_camera_waits_for_room_and_a_closed_lane_refuses() -> None:
    lanes = _lanes("a", capacity=1)
    assert lanes.put("a", 1, timeout=0)
    assert not lanes.put("a", 2, timeout=0.01)
    got = threading.Event()

    def producer() -> None:
        if lanes.put("a", 2, timeout=5):
            got.set()

    t = threading.Thread(target=producer)
    t.start()
    assert lanes.get(1)[1] == 1
    assert got.wait(5)
    t.join()
    assert lanes.close("a") == 1
    assert lanes.put_newest("a", 3) == 1 and lanes.put("a", 4, timeout=0)
    with pytest.raises(Empty):
        lanes.get(0)


def test_finished_once_every_lane_ended_and_drained() -> None:
    lanes = _lanes("a", "b")
    lanes.put("a", 1, timeout=0)
    lanes.end("a")
    assert not lanes.finished()
    lanes.end("b")
    key, _, _ = lanes.get(0)
    assert not lanes.finished()  # in flight
    lanes.done(key)
    assert lanes.finished()


def test_lane_arguments_are_checked() -> None:
    lanes = _lanes("a")
    with pytest.raises(ValueError, match="exists already"):
        lanes.add("a", 1)
    with pytest.raises(ValueError, match="capacity"):
        lanes.add("b", 0)


@pytest.mark.parametrize(
    ("given", "cameras", "cores", "expected"),
    [
        ({}, 1, 4, (1, 2)),  # one camera: as ever
        ({}, 2, 2, (2, 1)),  # two cameras on 2 cores: two 1-thread interpreters
        ({}, 4, 4, (4, 1)),
        ({}, 2, 4, (2, 2)),
        ({}, 8, 2, (2, 1)),  # at most one per core
        ({"num_threads": 2}, 2, 2, (1, 2)),  # threads given: as many as fit
        ({"interpreters": 3}, 1, 4, (3, 1)),
        ({"interpreters": 1}, 4, 4, (1, 2)),
    ],
)
def test_pool_size(
    given: dict[str, int], cameras: int, cores: int, expected: tuple[int, int]
) -> None:
    assert pool_size(ModelConfig(**given), cameras, cores) == expected  # type: ignore[arg-type]


def test_stats_total_adds_up_cameras() -> None:
    a, b = Stats(), Stats()
    a.record_inference(2.0)
    b.record_inference(4.0)
    b.record_inference(6.0)
    b.frames_dropped = 3
    total = StatsTotal([a, b])
    assert total.frames_processed == 3 and total.frames_dropped == 3
    assert total.latency_ms().p50 == 4.0
    assert total.last_frame_at == b.last_frame_at


def test_a_file_camera_reads_its_next_frame_only_when_its_turn_is_near() -> None:
    lanes = _lanes("a", "b", "c", "d", capacity=2)
    for key in "abcd":
        lanes.put(key, 0, timeout=0)
    # d holds a frame: it waits until that one is taken and its turn is near
    assert not lanes.wait_turn("d", ahead=2, timeout=0.01)
    assert lanes.get(0)[0] == "a"  # a taken: b, c, d hold frames; d's own is still there
    assert not lanes.wait_turn("d", ahead=2, timeout=0.01)
    assert [lanes.get(0)[0] for _ in range(3)] == ["b", "c", "d"]
    # the round starts again at a, which holds nothing and waits for nothing: d is next
    assert lanes.wait_turn("d", ahead=1, timeout=0.01)
    lanes.put("a", 1, timeout=0)
    lanes.put("b", 1, timeout=0)
    assert not lanes.wait_turn("d", ahead=2, timeout=0.01)  # a and b go first
    assert lanes.wait_turn("d", ahead=3, timeout=0.01)


def test_a_camera_waiting_for_its_turn_counts_for_those_behind_it() -> None:
    lanes = _lanes("c", "a", "b", capacity=2)
    lanes.put("c", 0, timeout=0)
    assert lanes.wait_turn("b", ahead=2, timeout=0)  # before b: c only
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lanes.wait_turn("a", ahead=1, timeout=5)))
    t.start()
    deadline = time.monotonic() + 5
    while lanes.wait_turn("b", ahead=2, timeout=0.01):  # until a is seen waiting
        assert time.monotonic() < deadline, "a never waited"
    assert lanes.get(0)[0] == "c"  # c served: a's turn is next
    t.join(5)
    assert got == [True]
