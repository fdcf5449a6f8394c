from __future__ import annotations

import threading

import pytest

from edged.handoff import Empty, Handoff


def test_fifo_and_bounded() -> None:
    h: Handoff[int] = Handoff(2)
    assert h.put(1, timeout=0.01) and h.put(2, timeout=0.01)
    assert not h.put(3, timeout=0.01)  # full: the producer waits, then gives up
    assert h.get(timeout=0.01) == 1
    assert h.put(3, timeout=0.01)
    assert [h.get_nowait(), h.get_nowait()] == [2, 3]
    with pytest.raises(Empty):
        h.get(timeout=0.01)


def test_put_newest_drops_the_oldest_when_full() -> None:
    h: Handoff[int] = Handoff(2)
    assert h.put_newest(1) == 0 and h.put_newest(2) == 0
    assert h.put_newest(3) == 1  # 1 was stale
    assert [h.get_nowait(), h.get_nowait()] == [2, 3]
    assert h.qsize() == 0


def test_blocked_producer_wakes_when_the_consumer_takes_an_item() -> None:
    h: Handoff[int] = Handoff(1)
    h.put(0, timeout=0.01)
    done = threading.Event()

    def produce() -> None:
        for i in range(1, 200):
            assert h.put(i, timeout=5.0)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    got = [h.get(timeout=5.0) for _ in range(200)]
    t.join(5.0)
    assert done.is_set() and got == list(range(200))


def test_put_newest_under_a_racing_consumer_never_holds_more_than_maxsize() -> None:
    h: Handoff[int] = Handoff(2)
    stop = threading.Event()
    seen: list[int] = []

    def consume() -> None:
        while not stop.is_set() or h.qsize():
            try:
                seen.append(h.get(timeout=0.01))
            except Empty:
                continue

    t = threading.Thread(target=consume)
    t.start()
    dropped = sum(h.put_newest(i) for i in range(5000))
    stop.set()
    t.join(5.0)
    assert seen == sorted(seen)  # order kept
    assert len(seen) + dropped == 5000  # every item delivered or counted as dropped
    assert h.put(1, timeout=0.01) and h.put(2, timeout=0.01)
    assert not h.put(3, timeout=0.01)  # still exactly two slots


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize 0"):
        Handoff(0)
