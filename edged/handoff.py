"""A bounded hand-off between two threads that costs little per item.

``queue.Queue`` keeps its items under a Python-level lock and two condition variables, so
every ``put`` and ``get`` runs a dozen lines of Python and wakes the other side through
them.  :class:`Handoff` is two ``queue.SimpleQueue`` objects (C, one lock each): one holds
the items, the other the free slots.  A producer takes a slot before it puts an item, a
consumer gives the slot back after it took one, so at most ``maxsize`` items wait.
"""

from __future__ import annotations

import queue
from typing import Generic, TypeVar

T = TypeVar("T")

Empty = queue.Empty


class Handoff(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize {maxsize}: a hand-off holds at least one item")
        self.maxsize = maxsize
        self._items: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(maxsize):
            self._slots.put(None)

    def put(self, item: T, timeout: float) -> bool:
        """Wait up to ``timeout`` s for room; False if there was none."""
        try:
            self._slots.get(timeout=timeout)
        except Empty:
            return False
        self._items.put(item)
        return True

    def put_newest(self, item: T) -> int:
        """Put without waiting: when full, the oldest waiting item makes room.  Returns how
        many items were dropped (0 or 1)."""
        while True:
            try:
                self._slots.get_nowait()
                self._items.put(item)
                return 0
            except Empty:
                pass
            try:
                self._items.get_nowait()  # the stale item's slot carries the new one
                self._items.put(item)
                return 1
            except Empty:
                pass
            # the consumer took the last item and is about to give its slot back
            try:
                self._slots.get(timeout=0.05)
                self._items.put(item)
                return 0
            except Empty:
                continue

    def get(self, timeout: float | None = None) -> T:
        """The oldest item; raises :class:`queue.Empty` after ``timeout`` s."""
        item = self._items.get(timeout=timeout)
        self._slots.put(None)
        return item

    def get_nowait(self) -> T:
        item = self._items.get_nowait()
        self._slots.put(None)
        return item

    def qsize(self) -> int:
        return self._items.qsize()
