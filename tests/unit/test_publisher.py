"""MqttPublisher and its spool against a fake paho client: order, early acknowledgements,
re-sends after a reconnect, bounds, a disk that refuses writes, and a stop that keeps its
deadline.  The broker-level behaviour is tested against a real mosquitto in
tests/integration."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edged.config import MqttConfig
from edged.publish.mqtt import MqttPublisher, describe_connect_error
from edged.publish.spool import Spool
from tests.fakes.paho_client import FakeBroker
from tests.support import wait_until


def wait(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    return wait_until(pred, timeout, step=0.005)


def event(seq: int) -> bytes:
    return json.dumps({"seq": seq}).encode()


def seqs(broker: FakeBroker) -> list[int]:
    return [json.loads(p)["seq"] for p in broker.payloads("events")]


def on_disk(path: Path) -> list[int]:
    """The seqs in the spool file: what a crash right now would leave for the next start."""
    db = sqlite3.connect(path)
    try:
        return [
            json.loads(p)["seq"] for (p,) in db.execute("SELECT payload FROM events ORDER BY id")
        ]
    finally:
        db.close()


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


def make(broker: FakeBroker, spool: Path | None = None, **cfg: object) -> MqttPublisher:
    mqtt_cfg = MqttConfig.model_validate({"reconnect_min_s": 0.01, "reconnect_max_s": 0.02, **cfg})
    return MqttPublisher(
        mqtt_cfg,
        "cam-1",
        spool_path=spool,
        client_factory=broker.factory,
        commit_s=0.01,
        window=8,
        spool_retry_s=0.05,
        probe=lambda host, port: False,
    )


@pytest.fixture
def publishers() -> Iterator[list[MqttPublisher]]:
    made: list[MqttPublisher] = []
    yield made
    for p in made:  # clean-up only: what is left unacknowledged no longer matters
        if p._threads and p._threads[0].is_alive():
            p.stop(0.02)


def test_events_arrive_in_order_and_are_counted_when_acknowledged(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    pub = make(broker, tmp_path / "events.db")
    publishers.append(pub)
    broker.frozen = True
    pub.start()
    for i in range(1, 41):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: len(seqs(broker)) == 8)  # the window, then nothing until acks
    time.sleep(0.05)
    assert seqs(broker) == list(range(1, 9))
    assert pub.published == 0 and pub.backlog == 40
    broker.frozen = False
    assert wait(lambda: pub.published == 40)
    assert seqs(broker) == list(range(1, 41))
    assert wait(lambda: pub.backlog == 0)
    assert broker.payloads("status")[0] == b"online"
    pub.stop(1.0)
    assert broker.payloads("status")[-1] == b"offline"


def test_an_ack_seen_before_publish_returns_is_counted_once(
    broker: FakeBroker, publishers: list[MqttPublisher]
) -> None:
    broker.ack_in_publish = True
    pub = make(broker)
    publishers.append(pub)
    pub.start()
    for i in range(1, 31):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: pub.published == 30)
    assert seqs(broker) == list(range(1, 31))
    assert not pub._inflight and not pub._early_acks
    assert pub.backlog == 0


def test_a_reconnect_resends_what_was_in_flight_first_then_the_rest_in_order(
    broker: FakeBroker,
    tmp_path: Path,
    publishers: list[MqttPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub = make(broker, tmp_path / "events.db")
    publishers.append(pub)
    broker.frozen = True
    pub.start()
    for i in range(1, 6):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: len(seqs(broker)) == 5)
    broker.up = False  # the connection drops with 5 events unacknowledged
    assert wait(lambda: not pub.connected)
    for i in range(6, 21):
        pub.publish("events", event(i), qos=1)
    time.sleep(0.1)
    with caplog.at_level(logging.INFO, logger="edged.publish.mqtt"):
        broker.frozen = False
        broker.up = True
        assert wait(lambda: pub.published == 20)
    got = seqs(broker)
    assert got[:5] == [1, 2, 3, 4, 5]
    assert got[5:10] == [1, 2, 3, 4, 5]  # re-sent by paho (dup), before anything newer
    assert got[10:] == list(range(6, 21))
    dups = [r.dup for r in broker.received if r.topic.endswith("/events")]
    assert dups[5:10] == [True] * 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    recovered = [r for r in caplog.records if "again after" in r.getMessage()]
    assert len(recovered) == 1 and recovered[0].levelno == logging.INFO
    assert len(warnings) <= 1  # the outage began before caplog; never one per retry


def test_only_the_network_thread_writes_so_no_event_overtakes_another(
    broker: FakeBroker, publishers: list[MqttPublisher]
) -> None:
    """paho's write takes the oldest packet, then sends it.  Were the publishing thread to
    write too (paho does, unless an external loop takes the writes), an event the network
    thread had taken but not sent yet could be overtaken by the next one: after a broker
    restart under load, seq 99 arrived after 100.  Here the network thread stops between
    taking and sending; nothing overtakes it."""
    pub = make(broker)
    publishers.append(pub)
    pub.start()
    assert wait(lambda: pub.connected)
    broker.full = True  # the socket takes nothing for now: events wait in paho's queue
    for i in (1, 2):
        pub.publish("events", event(i), qos=1)
    client = broker.clients[0]
    assert wait(lambda: len(client._packets) == 2)
    took = threading.Event()

    def stall_the_network_thread(writer: str) -> None:
        if writer == "edged-mqtt" and not took.is_set():
            took.set()  # event 1 taken; the thread is descheduled before it sends it
            wait(lambda: bool(seqs(broker)), 0.2)  # long enough for another writer

    broker.on_take = stall_the_network_thread
    broker.full = False
    assert took.wait(5)
    pub.publish("events", event(3), qos=1)
    assert wait(lambda: pub.published == 3)
    assert seqs(broker) == [1, 2, 3]
    assert {r.writer for r in broker.received} == {"edged-mqtt"}


def test_an_event_handed_over_as_the_connection_dies_stays_on_disk_until_acknowledged(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """The broker is gone without closing the connection (only a write finds out) as an
    event is handed over.  paho keeps the event to re-send it after the reconnect, so the
    spool keeps it too: a kill -9 before the reconnect must not lose it, and it is counted
    when acknowledged, not given up."""
    path = tmp_path / "events.db"
    pub = make(broker, path)
    publishers.append(pub)
    pub.start()
    pub.publish("events", event(1), qos=1)
    assert wait(lambda: pub.published == 1)
    broker.closes = False
    broker.up = False
    pub.publish("events", event(2), qos=1)
    assert wait(lambda: not pub.connected)
    time.sleep(0.05)  # a few commit windows
    assert on_disk(path) == [2]
    assert pub.dropped == 0 and pub.backlog == 1
    broker.up = True
    assert wait(lambda: pub.published == 2)
    assert seqs(broker) == [1, 2] and pub.dropped == 0
    assert wait(lambda: on_disk(path) == [])


def test_one_warning_per_outage_not_per_retry(
    broker: FakeBroker, publishers: list[MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    broker.up = False
    pub = make(broker)
    publishers.append(pub)
    with caplog.at_level(logging.DEBUG):
        pub.start()
        assert wait(lambda: broker.refused >= 5)  # retries every 10-20 ms
        broker.up = True
        assert wait(lambda: pub.connected)
    ours = [
        r for r in caplog.records if r.name.startswith("edged") and r.levelno >= logging.WARNING
    ]
    assert len(ours) == 1, [r.getMessage() for r in ours]
    assert "127.0.0.1" in ours[0].getMessage() and "connection refused" in ours[0].getMessage()


def test_memory_only_spool_evicts_the_oldest_and_logs_once(
    broker: FakeBroker, publishers: list[MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    broker.up = False
    pub = make(broker, max_queued=10)
    publishers.append(pub)
    with caplog.at_level(logging.INFO):
        pub.start()
        for i in range(1, 26):
            pub.publish("events", event(i), qos=1)
        assert wait(lambda: pub.evicted == 15)
        broker.up = True
        assert wait(lambda: pub.published == 10)
    assert seqs(broker) == list(range(16, 26))  # the newest ten, in order
    text = [r.getMessage() for r in caplog.records]
    assert sum("evicted to make room" in t for t in text) == 1
    assert any("15 oldest event(s) evicted meanwhile" in t for t in text)
    assert any("memory only" in t for t in text)  # the one line at start


def test_events_are_on_disk_before_paho_sees_them_and_leave_when_acknowledged(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    path = tmp_path / "events.db"
    broker.frozen = True
    pub = make(broker, path, durability="always")
    publishers.append(pub)
    pub.start()
    for i in range(1, 4):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: len(seqs(broker)) == 3)
    assert on_disk(path) == [1, 2, 3]
    broker.frozen = False
    assert wait(lambda: pub.published == 3)
    assert wait(lambda: on_disk(path) == [])


def test_a_new_run_resends_what_the_last_one_left_first(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    path = tmp_path / "events.db"
    broker.up = False
    first = make(broker, path)
    first.start()
    for i in range(1, 6):
        first.publish("events", event(i), qos=1)
    first.stop(0.5)  # nothing acknowledged: all five stay on disk
    assert Spool(path, max_bytes=2**20, max_rows=10).backlog == 5
    broker.up = True
    second = make(broker, path)
    publishers.append(second)
    second.start()
    second.publish("events", event(100), qos=1)
    assert wait(lambda: second.resent == 5 and second.published == 1)
    assert seqs(broker) == [1, 2, 3, 4, 5, 100]


def test_a_full_disk_degrades_to_memory_with_one_error_then_recovers(
    broker: FakeBroker,
    tmp_path: Path,
    publishers: list[MqttPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker.up = False
    pub = make(broker, tmp_path / "events.db")
    publishers.append(pub)
    with caplog.at_level(logging.INFO):
        pub.start()
        pub.publish("events", event(1), qos=1)
        assert wait(lambda: pub.spool._db_rows == 1)
        assert pub.spool._db is not None
        pages = pub.spool._db.execute("PRAGMA page_count").fetchone()[0]
        pub.spool._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full
        for i in range(2, 200):
            pub.publish("events", event(i) + b" " * 400, qos=1)
        assert wait(lambda: not pub.spool.durable)
        pub.spool._db.execute("PRAGMA max_page_count=100000")  # room again
        assert wait(lambda: pub.spool.durable, 2)
        broker.up = True
        assert wait(lambda: pub.published == 199)
    assert seqs(broker) == list(range(1, 200))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "full" in errors[0] and "memory" in errors[0], errors
    assert any("takes writes again" in r.getMessage() for r in caplog.records)


def test_stop_keeps_its_deadline_with_a_frozen_broker_and_keeps_the_events(
    broker: FakeBroker, tmp_path: Path
) -> None:
    path = tmp_path / "events.db"
    broker.frozen = True
    pub = make(broker, path)
    pub.start()
    for i in range(1, 51):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: len(seqs(broker)) == 8)
    t0 = time.monotonic()
    pub.stop(0.2)  # the broker acknowledges nothing: stop takes its whole budget, no more
    assert time.monotonic() - t0 < 0.5
    assert Spool(path, max_bytes=2**20, max_rows=10).backlog == 50


def test_the_spool_is_bounded_on_disk_and_keeps_what_is_in_flight(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "events.db", max_bytes=20_000, max_rows=10)
    rows = [spool.add("events", b"x" * 960, 1) for _ in range(40)]
    spool.commit(busy={rows[0].id})
    assert spool.evicted > 0
    kept = spool.after(0, 100)
    assert kept[0].id == rows[0].id  # in flight: never evicted
    assert [r.id for r in kept[1:]] == [r.id for r in rows[-(len(kept) - 1) :]]
    assert sum(r.size for r in kept) <= 20_000


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (TimeoutError("timed out"), "timed out"),
    ],
)
def test_connect_errors_in_words(exc: BaseException, words: str) -> None:
    assert describe_connect_error(exc, False, "") == words


def test_events_an_earlier_release_kept_at_stop_are_taken_over(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    legacy = tmp_path / "mqtt-spool.jsonl"
    lines = [
        json.dumps({"topic": "events", "payload": event(i).decode(), "qos": 1}) for i in (1, 2)
    ]
    legacy.write_text("\n".join([*lines, "{cut off"]) + "\n")
    pub = make(broker, tmp_path / "events.db")
    publishers.append(pub)
    assert not legacy.exists()
    pub.start()
    pub.publish("events", event(3), qos=1)
    assert wait(lambda: pub.resent == 2 and pub.published == 1)
    assert seqs(broker) == [1, 2, 3]


def test_qos0_events_leave_the_spool_once_written_and_wait_while_disconnected(
    broker: FakeBroker, publishers: list[MqttPublisher]
) -> None:
    broker.up = False
    pub = make(broker)
    publishers.append(pub)
    pub.start()
    for i in range(1, 6):
        pub.publish("events", event(i), qos=0)
    time.sleep(0.1)
    assert pub.backlog == 5 and seqs(broker) == []  # not handed to paho without a connection
    broker.up = True
    assert wait(lambda: pub.published == 5)
    assert seqs(broker) == [1, 2, 3, 4, 5]
    assert pub.backlog == 0 and not pub._inflight and not pub._early_acks


def test_qos0_events_paho_dropped_unwritten_at_a_disconnect_are_handed_over_again(
    broker: FakeBroker, publishers: list[MqttPublisher]
) -> None:
    pub = make(broker)
    publishers.append(pub)
    pub.start()
    assert wait(lambda: pub.connected)
    broker.full = True  # handed over, still in paho's queue when the connection goes
    for i in range(1, 4):
        pub.publish("events", event(i), qos=0)
    client = broker.clients[0]
    assert wait(lambda: len(client._packets) == 3)
    broker.up = False
    assert wait(lambda: not pub.connected)
    broker.full = False
    broker.up = True
    assert wait(lambda: pub.published == 3)
    assert seqs(broker) == [1, 2, 3]
    assert pub.backlog == 0 and not pub._inflight


def test_the_publisher_chooses_each_topics_qos(
    broker: FakeBroker, publishers: list[MqttPublisher]
) -> None:
    """Events go at the configured ``mqtt.qos``, health and status at 1, Home Assistant's
    state at 0, without the caller repeating the configuration."""
    pub = make(broker, qos=0)
    publishers.append(pub)
    pub.start()
    pub.publish("events", event(1))
    pub.publish("health", b"{}", retain=True)
    pub.publish("state/left", b"{}", retain=True)
    assert wait(
        lambda: (
            {"events", "health", "state/left"}
            <= {r.topic.split("/", 2)[2] for r in broker.received}
        )
    )
    qos = {r.topic.split("/", 2)[2]: r.qos for r in broker.received}
    assert qos["events"] == 0 and qos["health"] == 1 and qos["state/left"] == 0
    assert qos["status"] == 1


def test_one_commit_per_window_and_acks_drain_a_full_window_without_waiting_for_it(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """A commit window far longer than the test: the first events commit at once (nothing
    was pending), acknowledgements then hand over what waits for room in the window without
    another commit, and no further commit (fsync) comes before the window ends."""
    cfg = MqttConfig.model_validate(
        {"reconnect_min_s": 0.01, "reconnect_max_s": 0.02, "durability": "always"}
    )
    pub = MqttPublisher(
        cfg,
        "cam-1",
        spool_path=tmp_path / "events.db",
        client_factory=broker.factory,
        commit_s=30.0,
        window=8,
        probe=lambda host, port: False,
    )
    publishers.append(pub)
    commits: list[float] = []
    commit = pub.spool.commit

    def counted(busy: object = (), spill_all: bool = False) -> None:
        commits.append(time.monotonic())
        commit(busy, spill_all)  # type: ignore[arg-type]

    pub.spool.commit = counted  # type: ignore[method-assign]
    for i in range(1, 41):
        pub.publish("events", event(i), qos=1)
    pub.start()
    assert wait(lambda: pub.published == 40, 3.0)  # five windows' worth, acks only
    assert seqs(broker) == list(range(1, 41))
    assert len(commits) == 1
    pub.publish("events", event(41), qos=1)  # inside the window: waits for its end
    time.sleep(0.1)
    assert len(commits) == 1 and pub.published == 40


# -- spill mode (the default): only what is at risk is written ----------------------------


def test_spill_events_acknowledged_in_time_never_touch_the_disk(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    path = tmp_path / "events.db"
    pub = make(broker, path)
    publishers.append(pub)
    wal = path.with_name(path.name + "-wal")
    wal_at_start = wal.stat().st_size
    pub.start()
    for i in range(1, 51):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: pub.published == 50)
    assert seqs(broker) == list(range(1, 51))
    assert on_disk(path) == [] and pub.spool.commits == 0 and pub.spool.spilled == 0
    # no transaction: the WAL holds only the table's creation, as it did before any event
    assert wal.stat().st_size == wal_at_start
    pub.stop(1.0)
    assert pub.spool.commits == 0 and on_disk(path) == []


def test_spill_an_event_not_acknowledged_within_spill_after_s_is_written_then_removed(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """A broker that takes events and acknowledges none (connected, frozen): nothing is on
    disk before spill_after_s, everything after it; the acknowledgements remove them."""
    path = tmp_path / "events.db"
    broker.frozen = True
    pub = make(broker, path, spill_after_s=0.5)
    publishers.append(pub)
    pub.start()
    assert pub.wait_connected(5)
    t0 = time.monotonic()
    for i in range(1, 4):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: len(seqs(broker)) == 3)  # handed over at once, before any write
    early = on_disk(path)
    if time.monotonic() - t0 < 0.4:
        assert early == []
    assert wait(lambda: on_disk(path) == [1, 2, 3])
    assert time.monotonic() - t0 >= 0.5
    broker.frozen = False
    assert wait(lambda: pub.published == 3)
    assert wait(lambda: on_disk(path) == [])


def test_spill_the_broker_away_writes_what_is_held_within_a_commit_window(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    path = tmp_path / "events.db"
    pub = make(broker, path, spill_after_s=60.0)
    publishers.append(pub)
    pub.start()
    pub.publish("events", event(1), qos=1)
    assert wait(lambda: pub.published == 1)
    broker.up = False
    assert wait(lambda: not pub.connected)
    for i in range(2, 5):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: on_disk(path) == [2, 3, 4], 2.0)  # not 60 s: the broker is away
    broker.up = True
    assert wait(lambda: pub.published == 4)
    assert seqs(broker) == [1, 2, 3, 4]
    assert wait(lambda: on_disk(path) == [])


def test_spill_a_stop_keeps_what_is_not_acknowledged_on_disk(
    broker: FakeBroker, tmp_path: Path
) -> None:
    path = tmp_path / "events.db"
    broker.frozen = True
    pub = make(broker, path, spill_after_s=60.0)
    pub.start()
    for i in range(1, 4):
        pub.publish("events", event(i), qos=1)
    assert wait(lambda: len(seqs(broker)) == 3)
    assert on_disk(path) == []
    pub.stop(0.5)
    assert on_disk(path) == [1, 2, 3]


def test_spill_spool_writes_nothing_for_acknowledged_rows_and_only_aged_ones(
    tmp_path: Path,
) -> None:
    now = [100.0]
    path = tmp_path / "events.db"
    spool = Spool(path, max_bytes=2**20, max_rows=100, spill_after_s=1.0, clock=lambda: now[0])
    first = spool.add("events", event(1), 1)
    spool.add("events", event(2), 1)
    spool.commit()
    assert [r.id for r in spool.after(0, 10)] == [1, 2]  # readable before any write
    spool.ack([first.id])
    now[0] += 0.5
    spool.add("events", event(3), 1)
    spool.commit()
    assert spool.commits == 0 and on_disk(path) == []
    now[0] += 0.6  # event 2 is 1.1 s old, event 3 0.6 s
    spool.commit()
    assert on_disk(path) == [2] and spool.commits == 1
    assert spool.spill_due() == 101.5 and spool.backlog == 2
    spool.commit(spill_all=True)
    assert on_disk(path) == [2, 3] and spool.spill_due() is None
    spool.close()


def test_spill_the_publishing_thread_hands_over_itself_only_while_nothing_is_at_risk(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """An event is handed to paho by the thread that publishes it (no spool-thread wake-up)
    while a commit would touch only memory; once an event is on disk, the spool thread does
    it, and the publishing thread again when the disk holds nothing."""
    path = tmp_path / "events.db"
    pub = make(broker, path, spill_after_s=0.3, coalesce_ms=0)  # no event waits for a burst
    publishers.append(pub)
    by: dict[int, str] = {}
    paho_publish = pub.client.publish

    def recording(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> object:
        if not retain:
            by[json.loads(payload)["seq"]] = threading.current_thread().name
        return paho_publish(topic, payload, qos=qos, retain=retain)

    pub.client.publish = recording
    pub.start()
    assert pub.wait_connected(5)
    here = threading.current_thread().name
    pub.publish("events", event(1), qos=1)
    assert wait(lambda: pub.published == 1)
    broker.frozen = True  # takes events, acknowledges none: event 2 comes to be at risk
    pub.publish("events", event(2), qos=1)
    assert wait(lambda: on_disk(path) == [2])
    pub.publish("events", event(3), qos=1)  # a row on disk: the spool thread's work
    assert wait(lambda: 3 in by)
    broker.frozen = False
    assert wait(lambda: pub.published == 3)
    assert wait(lambda: on_disk(path) == [])
    pub.publish("events", event(4), qos=1)
    assert wait(lambda: pub.published == 4)
    assert seqs(broker) == [1, 2, 3, 4]
    assert by == {1: here, 2: here, 3: "edged-spool", 4: here}


def _recorded_hand_overs(pub: MqttPublisher) -> list[tuple[int, str, float]]:
    """(seq, thread, time.monotonic()) of each event as it is handed to paho."""
    out: list[tuple[int, str, float]] = []
    paho_publish = pub.client.publish

    def recording(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> object:
        if not retain:
            out.append(
                (json.loads(payload)["seq"], threading.current_thread().name, time.monotonic())
            )
        return paho_publish(topic, payload, qos=qos, retain=retain)

    pub.client.publish = recording
    return out


def test_spill_a_burst_is_handed_over_together_at_its_hand_over_time(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """The first event goes at once, from the publishing thread; the events that follow
    within coalesce_ms wait and go together, from the spool thread, at the first event's
    time + coalesce_ms; an event after a quiet spell goes at once again.  Nothing is lost
    or reordered."""
    pub = make(broker, tmp_path / "events.db", coalesce_ms=300)
    publishers.append(pub)
    handed = _recorded_hand_overs(pub)
    pub.start()
    assert pub.wait_connected(5)
    here = threading.current_thread().name
    t0 = time.monotonic()
    for seq in range(1, 6):
        pub.publish("events", event(seq), qos=1)
    assert wait(lambda: pub.published == 5)
    assert [(seq, thread) for seq, thread, _ in handed] == [(1, here)] + [
        (seq, "edged-spool") for seq in range(2, 6)
    ]
    burst = [at for _, _, at in handed[1:]]
    assert min(burst) - t0 >= 0.3 - 0.01  # not before the hand-over time
    assert max(burst) - min(burst) < 0.1  # together
    time.sleep(0.35)  # a quiet spell longer than coalesce_ms
    pub.publish("events", event(6), qos=1)
    assert wait(lambda: pub.published == 6)
    assert handed[-1][:2] == (6, here)
    assert seqs(broker) == [1, 2, 3, 4, 5, 6]
    assert on_disk(tmp_path / "events.db") == []  # acknowledged in time: nothing written


def test_spill_a_burst_waiting_at_stop_is_delivered_by_the_flush(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """A stop does not wait out coalesce_ms, and loses nothing of a waiting burst."""
    pub = make(broker, tmp_path / "events.db", coalesce_ms=900)
    handed = _recorded_hand_overs(pub)
    pub.start()
    assert pub.wait_connected(5)
    for seq in range(1, 4):
        pub.publish("events", event(seq), qos=1)
    assert wait(lambda: pub.published == 1)
    assert pub.published == 1 and len(handed) == 1  # 2 and 3 wait for the hand-over time
    t0 = time.monotonic()
    pub.stop(2.0)
    assert time.monotonic() - t0 < 0.8
    assert pub.published == 3
    assert seqs(broker) == [1, 2, 3]


def test_spill_a_burst_while_the_broker_is_away_is_spilled_and_sent_after(
    broker: FakeBroker, tmp_path: Path, publishers: list[MqttPublisher]
) -> None:
    """Events of a burst that the broker does not acknowledge are written once they are at
    risk (spill_after_s), and reach the broker in order once it answers again."""
    path = tmp_path / "events.db"
    pub = make(broker, path, coalesce_ms=200, spill_after_s=0.3)
    publishers.append(pub)
    pub.start()
    assert pub.wait_connected(5)
    broker.frozen = True
    for seq in range(1, 5):
        pub.publish("events", event(seq), qos=1)
    assert wait(lambda: on_disk(path) == [1, 2, 3, 4])
    broker.frozen = False
    assert wait(lambda: pub.published == 4)
    assert seqs(broker) == [1, 2, 3, 4]
    assert wait(lambda: on_disk(path) == [])


def test_coalesce_ms_must_be_below_spill_after_s() -> None:
    with pytest.raises(
        ValueError, match=r"coalesce_ms \(500\) must be below spill_after_s \(0.5 s\)"
    ):
        MqttConfig.model_validate({"coalesce_ms": 500, "spill_after_s": 0.5})
    MqttConfig.model_validate({"coalesce_ms": 499, "spill_after_s": 0.5})
    MqttConfig.model_validate({"coalesce_ms": 500, "spill_after_s": 0.5, "durability": "always"})
