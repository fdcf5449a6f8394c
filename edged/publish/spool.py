"""The event spool: events the broker has not acknowledged, on disk where they are at risk.

Two modes (``mqtt.durability``):

- ``spill`` (the default, ``spill_after_s`` set): an event is held in memory and handed to the
  broker client at once; it goes to disk only if it is still unacknowledged ``spill_after_s``
  after it was added, or when the owner says it is at risk (the broker is unreachable, the
  daemon stops: ``commit(spill_all=True)``).  An event acknowledged in time is never written:
  no transaction is opened when there is nothing to write.
- ``always`` (``spill_after_s`` None): the write-ahead log: an event is on disk before it is
  handed to the broker client, and leaves the disk once the broker has acknowledged it.

The store is SQLite in WAL mode with ``synchronous=FULL`` (stdlib ``sqlite3``): one table of
rows ``(id, topic, payload, qos)`` with ``id`` increasing across runs, so the oldest event is
the smallest id.  Writes are grouped: :meth:`Spool.add` and :meth:`Spool.ack` only touch
memory, and the owner calls :meth:`Spool.commit` at most every commit window (200 ms in the
daemon); each commit is one transaction and one fsync of the WAL.  A crash loses at most the
events added inside the last window; an acknowledgement lost in a crash means one duplicate,
which QoS 1 (at least once) allows anyway.  ``bench/spool.py`` compares it with an append-only
segment log (bytes written and fsyncs per second at 30 events/s).

When the disk refuses writes (full, read-only, I/O error), the spool keeps new events in
memory, says so once, and tries the disk again every ``retry_s``; the events kept in memory
move to disk when it takes writes again.  Without a path the spool is memory only.  Either
way it is bounded (``max_bytes``, and ``max_rows`` in memory): past the bound the oldest events
not in flight are evicted and counted.

Threads: :meth:`add` and :meth:`ack` may be called from any thread; everything else from its
owner, one thread at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROW_OVERHEAD = 40  # bytes a row costs beside its topic and payload (ids, headers)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events ("
    "id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL)"
)


@dataclass(frozen=True)
class Spooled:
    """One event waiting for the broker's acknowledgement."""

    id: int
    topic: str
    payload: bytes
    qos: int
    at: float = field(default=0.0, compare=False)  # when it was added (the spool's clock)

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic) + ROW_OVERHEAD


class Spool:
    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int,
        max_rows: int,
        retry_s: float = 5.0,
        spill_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.spill_after_s = spill_after_s
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._new: list[Spooled] = []  # added, not committed yet
        self._acks: set[int] = set()  # acknowledged, not removed yet
        self._mem: dict[int, Spooled] = {}  # rows kept in memory (no disk, or disk refused)
        self._held: dict[int, Spooled] = {}  # spill mode: not at risk yet, memory only
        self._db_acks: set[int] = set()  # acknowledged rows still on a disk that refuses writes
        self._db: sqlite3.Connection | None = None
        self._db_rows = 0
        self._db_bytes = 0
        self._writable = False
        self._next_retry = 0.0
        self.problem: str | None = None  # why the disk is not used, while it is not
        self.evicted = 0
        self.evicted_in_outage = 0
        self.commits = 0
        self.spilled = 0  # spill mode: events written because they were at risk
        self.rewind = False  # set when the reader should start again from the oldest row
        self._open()
        self.first_id = self._next_id  # rows below this were kept by an earlier run

    # -- opening ----------------------------------------------------------------------------
    def _open(self) -> None:
        self._next_id = 1
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connect()
        except (OSError, sqlite3.Error) as exc:
            self._close_db()
            self._load_read_only()
            self._refused(exc)

    def _connect(self) -> None:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=1.0, check_same_thread=False, isolation_level=None)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        rows, size, top = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0), "
            "COALESCE(MAX(id), 0) FROM events"
        ).fetchone()
        self._db_rows = int(rows)
        self._db_bytes = int(size) + ROW_OVERHEAD * int(rows)
        self._next_id = max(self._next_id, int(top) + 1)
        self._writable = True

    def _load_read_only(self) -> None:
        """Events an earlier run left on a disk that now refuses writes: read what can be
        read into memory, so that they are still sent."""
        assert self.path is not None
        if not self.path.exists():
            return
        for mode in ("ro", "ro&immutable=1"):
            try:
                db = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, timeout=1.0)
                try:
                    rows = db.execute(
                        "SELECT id, topic, payload, qos FROM events ORDER BY id"
                    ).fetchall()
                finally:
                    db.close()
            except sqlite3.Error:
                continue
            for rid, topic, payload, qos in rows:
                row = Spooled(int(rid), str(topic), bytes(payload), int(qos))
                self._mem[row.id] = row
                self._next_id = max(self._next_id, row.id + 1)
            self._evict_memory(())
            return

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None
        self._writable = False

    def _refused(self, exc: BaseException) -> None:
        self._writable = False
        self._next_retry = self._clock() + self.retry_s
        first = self.problem is None
        self.problem = str(exc) or type(exc).__name__
        if first:
            log.error(
                "event spool %s refuses writes (%s): new events are kept in memory only "
                "(at most %d) until it takes them again",
                self.path,
                self.problem,
                self.max_rows,
            )

    def import_lines(self, legacy: Path) -> int:
        """Take over the events an earlier release kept at a clean stop (one JSON object per
        line: topic, payload, qos), oldest first, and remove that file; how many were taken."""
        try:
            lines = legacy.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            log.error("cannot read the earlier event spool %s: %s", legacy, exc)
            return 0
        taken = 0
        for line in lines:
            try:
                item = json.loads(line)
                self.add(str(item["topic"]), str(item["payload"]).encode(), int(item["qos"]))
                taken += 1
            except (ValueError, KeyError, TypeError):
                log.warning("earlier event spool %s: unreadable line skipped", legacy)
        self.commit(spill_all=True)
        self.first_id = self._next_id  # they belong to an earlier run
        if self.durable:
            with contextlib.suppress(OSError):
                legacy.unlink()
        return taken

    # -- any thread -------------------------------------------------------------------------
    def add(self, topic: str, payload: bytes, qos: int) -> Spooled:
        with self._lock:
            row = Spooled(self._next_id, topic, payload, qos, self._clock())
            self._next_id += 1
            self._new.append(row)
            return row

    def ack(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._acks.update(ids)

    def age(self, row: Spooled) -> float:
        """Seconds since ``row`` was added."""
        return self._clock() - row.at

    # -- owner thread -----------------------------------------------------------------------
    @property
    def durable(self) -> bool:
        """True while events reach the disk."""
        return self._writable

    @property
    def dirty(self) -> bool:
        """Events added or acknowledged since the last commit."""
        with self._lock:
            return bool(self._new or self._acks)

    @property
    def backlog(self) -> int:
        """Events waiting for an acknowledgement (on disk, in memory or not yet committed)."""
        with self._lock:
            pending = len(self._new) + len(self._held) + len(self._mem) + self._db_rows
            return pending - len(self._acks) - len(self._db_acks)

    @property
    def spill(self) -> bool:
        """Spill mode: only events at risk are written."""
        return self.spill_after_s is not None

    def spill_due(self) -> float | None:
        """Spill mode: when (the spool's clock) the oldest event held in memory is at risk;
        None when none is held."""
        if self.spill_after_s is None:
            return None
        for row in self._held.values():  # the first is the oldest
            return row.at + self.spill_after_s
        return None

    def in_memory_only(self) -> bool:
        """Spill mode: a commit now (without ``spill_all``) touches only memory: nothing
        held is at risk yet, no row is on disk or kept in memory for a refusing disk, and
        no disk waits to be tried again."""
        if self.spill_after_s is None or self._db_rows or self._db_acks or self._mem:
            return False
        if self.path is not None and not self._writable:
            return False
        due = self.spill_due()
        return due is None or self._clock() < due

    def commit(self, busy: Collection[int] = (), spill_all: bool = False) -> None:
        """Make what is at risk durable and forget what was acknowledged, in one transaction
        (none when there is nothing to write); then evict past the bound (never the ids in
        ``busy``: handed to the broker client).  In spill mode, what is at risk is what was
        added at least ``spill_after_s`` ago, or everything held with ``spill_all``; in
        ``always`` mode, everything added."""
        with self._lock:
            new, self._new = self._new, []
            acks, self._acks = self._acks, set()
        if self.spill_after_s is not None:
            self._held.update((row.id, row) for row in new)
            new = []
        for rid in acks:
            if self._held.pop(rid, None) is None and self._mem.pop(rid, None) is None:
                self._db_acks.add(rid)
        if self.spill_after_s is not None and self._held:
            cutoff = self._clock() - self.spill_after_s
            for row in self._held.values():  # oldest first
                if not spill_all and row.at > cutoff:
                    break
                new.append(row)
            for row in new:
                del self._held[row.id]
            self.spilled += len(new)
        if not self._writable and self.path is not None and self._clock() >= self._next_retry:
            self._retry()
        if not self._writable:
            self._mem.update((row.id, row) for row in new)
            self._evict_memory(busy)
            return
        assert self._db is not None
        try:
            self._write(new, self._db_acks)
        except sqlite3.Error as exc:
            self._mem.update((row.id, row) for row in new)
            self._refused(exc)
            self._evict_memory(busy)
            return
        self._db_acks = set()
        self._evict_disk(busy)

    def _write(self, new: list[Spooled], acks: Collection[int]) -> None:
        assert self._db is not None
        db = self._db
        if not new and not acks:
            return
        removed: list[int] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for rid in acks:
                gone = db.execute(
                    "DELETE FROM events WHERE id = ? RETURNING LENGTH(payload) + LENGTH(topic)",
                    (rid,),
                ).fetchone()
                if gone is not None:
                    removed.append(int(gone[0]))
            if new:
                db.executemany(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)",
                    [(r.id, r.topic, r.payload, r.qos) for r in new],
                )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.commits += 1
        self._db_rows += len(new) - len(removed)
        self._db_bytes += sum(r.size for r in new) - sum(s + ROW_OVERHEAD for s in removed)

    def _retry(self) -> None:
        """The disk refused writes: try again, moving what memory holds onto it."""
        try:
            self._close_db()  # a connection opened on a read-only disk stays read-only
            self._connect()
            moved = sorted(self._mem.values(), key=lambda r: r.id)
            self._writable = True
            self._write(moved, self._db_acks)
        except (OSError, sqlite3.Error) as exc:
            self._refused(exc)
            return
        self._db_acks = set()
        self._mem.clear()
        self.rewind = True  # the disk may hold rows that could not be read before
        log.warning(
            "event spool %s takes writes again: %d event(s) moved there from memory",
            self.path,
            len(moved),
        )
        self.problem = None

    def _evict_memory(self, busy: Collection[int]) -> None:
        size = sum(r.size for r in self._mem.values())
        excess_rows = len(self._mem) - self.max_rows
        if size <= self.max_bytes and excess_rows <= 0:
            return
        for rid in list(self._mem):
            if size <= self.max_bytes and excess_rows <= 0:
                break
            if rid in busy:
                continue
            size -= self._mem.pop(rid).size
            excess_rows -= 1
            self._count_evicted(1)

    def _evict_disk(self, busy: Collection[int]) -> None:
        if self._db_bytes <= self.max_bytes:
            return
        assert self._db is not None
        victims: list[int] = []
        freed = 0
        for rid, size in self._db.execute(
            "SELECT id, LENGTH(payload) + LENGTH(topic) FROM events ORDER BY id"
        ):
            if self._db_bytes - freed <= self.max_bytes * 0.9:  # some room, not one per commit
                break
            if rid in busy:
                continue
            victims.append(int(rid))
            freed += int(size) + ROW_OVERHEAD
        try:
            self._write([], victims)
        except sqlite3.Error as exc:
            self._refused(exc)
            return
        self._count_evicted(len(victims))

    def _count_evicted(self, n: int) -> None:
        if n and not self.evicted_in_outage:
            log.warning(
                "event spool full (%.1f MB): the oldest events are evicted to make room "
                "(counted in events_evicted)",
                self.max_bytes / 2**20,
            )
        self.evicted += n
        self.evicted_in_outage += n

    def end_of_outage(self) -> int:
        """Events evicted since the last call (the caller logs the summary)."""
        n, self.evicted_in_outage = self.evicted_in_outage, 0
        return n

    def after(self, cursor: int, limit: int) -> list[Spooled]:
        """Up to ``limit`` committed events with ids above ``cursor``, oldest first."""
        rows: list[Spooled] = []
        with self._lock:
            gone = self._acks | self._db_acks  # acknowledged, not removed yet: never again
        if self._db is not None and self._db_rows:
            try:
                found = self._db.execute(
                    "SELECT id, topic, payload, qos FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    (cursor, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                log.error("cannot read the event spool %s: %s", self.path, exc)
                found = []
            rows = [
                Spooled(int(rid), str(topic), bytes(payload), int(qos))
                for rid, topic, payload, qos in found
                if rid not in gone
            ]
            if len(found) == limit:
                return rows
            cursor = max(cursor, int(found[-1][0])) if found else cursor
        for held in (self._mem, self._held):  # in id order: rows are added in order
            for rid, row in held.items():
                if len(rows) >= limit:
                    return rows
                if rid > cursor and rid not in gone:
                    rows.append(row)
        return rows

    def close(self) -> None:
        self._close_db()
