"""The fair queue between cameras and a shared inference stage: one lane per camera.

A lane holds at most ``capacity`` items.  A live camera puts without waiting: when its lane
is full its oldest item makes room (the newest frame wins; the drop is the caller's to
count).  A camera reading files waits for room instead, so that no file is skipped.
:meth:`Lanes.get` serves the lanes round-robin, one item per turn, from the lane after the
one served last: a camera with many frames waiting cannot starve one with few.  A lane
keeps at most ``in_flight`` items taken and not yet :meth:`~Lanes.done` (one, where several
interpreters serve a stage, so that one camera's results come back in order).

A camera that reads files as fast as it is served would read its next frame long before its
turn comes (with 8 cameras, 8 turns later): :meth:`Lanes.wait_turn` lets it read the next
one only when its turn is near (``ahead`` lanes), so that a frame is fresh when it is
classified.

Wake-ups are targeted: a put wakes the stage, a turn taken wakes only the camera served (it
has room again) and the cameras whose turn has come near; with 8 cameras waiting, waking
all of them at every turn would cost the stage's thread the interpreter lock thousands of
times a second."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

Empty = queue.Empty


@dataclass
class _Lane(Generic[T]):
    capacity: int
    in_flight_max: int
    cond: threading.Condition  # its camera waits on it (room, its turn)
    items: deque[tuple[float, T]] = field(default_factory=deque)
    in_flight: int = 0
    ended: bool = False  # no more items will come (the camera's source finished)
    closed: bool = False  # items are refused and those waiting were dropped
    turn_waiting: bool = False  # its camera waits in wait_turn()
    ahead: int = 0  # ... for fewer than this many lanes before it


class Lanes(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # the stage's threads wait on it
        self._lanes: dict[str, _Lane[T]] = {}
        self._order: list[str] = []
        self._next = 0  # index in _order where the next turn starts

    def add(self, key: str, capacity: int, in_flight: int = 1) -> None:
        if capacity < 1 or in_flight < 1:
            raise ValueError(f"lane {key!r}: capacity and in_flight must be >= 1")
        with self._lock:
            if key in self._lanes:
                raise ValueError(f"lane {key!r} exists already")
            self._lanes[key] = _Lane(capacity, in_flight, threading.Condition(self._lock))
            self._order.append(key)

    def _wake_all(self) -> None:
        self._ready.notify_all()
        for lane in self._lanes.values():
            lane.cond.notify_all()

    # -- the cameras' side ------------------------------------------------------------------
    def put_newest(self, key: str, item: T) -> int:
        """Put without waiting; when the lane is full its oldest item makes room.  How many
        items were dropped (0 or 1; an item put into a closed lane counts as dropped)."""
        with self._lock:
            lane = self._lanes[key]
            if lane.closed:
                return 1
            dropped = 0
            if len(lane.items) >= lane.capacity:
                lane.items.popleft()
                dropped = 1
            lane.items.append((time.monotonic(), item))
            self._ready.notify_all()
            return dropped

    def put(self, key: str, item: T, timeout: float) -> bool:
        """Wait up to ``timeout`` s for room; False if there was none.  True for a closed
        lane (the item is dropped: nobody wants it any more)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            lane = self._lanes[key]
            while len(lane.items) >= lane.capacity and not lane.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                lane.cond.wait(left)
            if not lane.closed:
                lane.items.append((time.monotonic(), item))
                self._ready.notify_all()
            return True

    def wait_turn(self, key: str, ahead: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s until ``key`` holds nothing and fewer than ``ahead``
        lanes are served before it (lanes holding items or waiting for their turn, from
        the one served next); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            lane = self._lanes[key]
            lane.turn_waiting, lane.ahead = True, ahead
            try:
                while not lane.closed and (lane.items or self._before(key) >= ahead):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    lane.cond.wait(left)
                return True
            finally:
                lane.turn_waiting = False

    def _before(self, key: str) -> int:
        """Lanes served before ``key`` in the round from the next turn: those that hold
        items or wait for their turn (an idle camera takes no turn)."""
        n = len(self._order)
        before = 0
        for i in range(n):
            k = self._order[(self._next + i) % n]
            if k == key:
                break
            lane = self._lanes[k]
            if lane.items or lane.turn_waiting:
                before += 1
        return before

    def end(self, key: str) -> None:
        """No more items will come into ``key`` (those waiting are still served)."""
        with self._lock:
            self._lanes[key].ended = True
            self._wake_all()

    def close(self, key: str) -> int:
        """Refuse further items for ``key`` and drop those waiting; how many were dropped."""
        with self._lock:
            lane = self._lanes[key]
            dropped = len(lane.items)
            lane.items.clear()
            lane.closed = lane.ended = True
            self._wake_all()
            return dropped

    # -- the stage's side -------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> tuple[str, T, float]:
        """The next item round-robin: ``(key, item, queued_at)``; raises Empty after
        ``timeout`` s (None: no wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                found = self._take()
                if found is not None:
                    return found
                left = 0.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise Empty
                self._ready.wait(left)

    def _take(self) -> tuple[str, T, float] | None:
        n = len(self._order)
        for i in range(n):
            key = self._order[(self._next + i) % n]
            lane = self._lanes[key]
            if lane.items and lane.in_flight < lane.in_flight_max:
                self._next = (self._next + i + 1) % n
                queued_at, item = lane.items.popleft()
                lane.in_flight += 1
                lane.cond.notify_all()  # room for its camera
                self._wake_turns()
                return key, item, queued_at
        return None

    def _wake_turns(self) -> None:
        """Wake the cameras whose turn has come near (the pointer moved)."""
        for lane_key, lane in self._lanes.items():
            if lane.turn_waiting and not lane.items and self._before(lane_key) < lane.ahead:
                lane.cond.notify_all()

    def done(self, key: str) -> None:
        """An item taken from ``key`` has been dealt with."""
        with self._lock:
            lane = self._lanes[key]
            lane.in_flight = max(0, lane.in_flight - 1)
            self._ready.notify_all()

    def finished(self) -> bool:
        """Every lane has ended, holds nothing and has nothing in flight."""
        with self._lock:
            return all(
                lane.ended and not lane.items and not lane.in_flight
                for lane in self._lanes.values()
            )

    def idle(self, key: str) -> bool:
        """``key`` holds nothing and has nothing in flight."""
        with self._lock:
            lane = self._lanes[key]
            return not lane.items and not lane.in_flight

    def waiting(self, key: str) -> int:
        with self._lock:
            return len(self._lanes[key].items)
