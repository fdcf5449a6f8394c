"""MQTT through paho-mqtt 2.x (VERSION2 callbacks): events through a spool, retained state
(status, health) last-value-wins, reconnects with backoff, a stop that keeps its deadline, and
messages an operator can act on.

Events (non-retained messages) are added to the :class:`~edged.publish.spool.Spool`.

``mqtt.durability = "spill"`` (the default): every event is handed to paho as soon as it is
added, from memory: by the thread that publishes it while nothing is at risk (the commit then
touches only memory, and no thread is woken for it), else by the spool thread.  An event goes
to disk only when it is at risk: still not acknowledged ``mqtt.spill_after_s`` after it was
added, classified while the broker is away (written once per commit window during an outage),
or waiting at a stop.  An event the broker acknowledges in time is never written, so with the
broker up the spool writes nothing.  A ``kill -9`` or a power cut loses at most the events of
the last ``spill_after_s`` (the last commit window during an outage).

``mqtt.durability = "always"``: the write-ahead log.  The spool thread commits events at most
once every ``commit_s`` (the commit window, 200 ms; the first event after a quiet spell opens
a window and is committed at once) and only then hands them to paho.  An event leaves the
spool when paho reports its acknowledgement (``on_publish``: PUBACK for QoS 1).  So an event
is on disk whether or not the broker is up, and a crash loses at most one commit window.

In both modes at most ``window`` events are handed to paho and unacknowledged at a time.

Retained messages are state: the last one per topic is kept in memory and sent again on every
connect (``online`` first), never spooled.

Order across a reconnect: paho re-sends the messages it had in flight only after
``on_connect`` has returned, all of them before it reads any acknowledgement.  So after a
reconnect with messages in flight no new event is handed over until the first acknowledgement
arrives; paho's in-flight limit is the window, so every message in flight is re-sent at once.

The network loop is ours (``client.reconnect()`` and ``client.loop()`` in one thread), not
``loop_start()``: a failed connect raises its real exception (a certificate that does not
verify, a plain server behind an ``mqtts://`` URL), which is logged once per outage in words,
and stop never waits on paho's thread for longer than its deadline.  paho's own log lines go to
DEBUG: the outage is reported once by us, not on every retry.

Only the network thread writes to the socket.  Without ``loop_start()``, paho's ``publish()``
writes from the calling thread, and a write takes the oldest queued packet before it sends it:
with two writers, an event taken by one thread could be overtaken by the next event sent by
the other.  Registering for writes (``on_socket_register_write``, as an external event loop
does) makes ``publish()`` only queue the packet and wake ``loop()`` through paho's socket pair.
It also means ``publish()`` never meets a broken connection: a QoS 1 event paho keeps is
tracked until acknowledged, whatever ``rc`` says, and stays in the spool until then.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged import wire
from edged.config import MqttConfig
from edged.publish.base import Message, Publisher
from edged.publish.spool import Spool, Spooled

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., None])

ONLINE = wire.ONLINE.encode()
OFFLINE = wire.OFFLINE.encode()
COMMIT_S = 0.2  # the commit window: an event is on disk at most this long after publish()
IDLE_S = 1.0  # how long the spool thread sleeps with nothing to commit (disk retries)
WINDOW = 100  # events handed to paho and not yet acknowledged
EARLY_ACK_S = 5.0
LEGACY_SPOOL = "mqtt-spool.jsonl"  # where releases before the spool kept events at a stop
ACK_AGES = 1024  # acknowledgement delays kept (bench/acks.py reads them)


class MqttConfigError(ValueError):
    pass


def _guarded(fn: F) -> F:
    """Log and count any exception raised in a paho callback (they run in paho's thread)."""

    @functools.wraps(fn)
    def wrapper(self: MqttPublisher, *args: Any, **kwargs: Any) -> None:
        try:
            fn(self, *args, **kwargs)
        except Exception:
            self.callback_errors += 1
            log.exception("error in MQTT callback %s", fn.__name__)

    return wrapper  # type: ignore[return-value]


def _written_by_the_network_thread(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's hook for an external loop to watch the socket for writes: ``loop()`` does."""


@dataclass(frozen=True)
class _State:
    """A retained message in flight (not spooled)."""

    topic: str


def describe_connect_error(exc: BaseException, tls: bool, ca_file: str) -> str:
    """A failed connect in words an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = f"CA file {ca_file}" if ca_file else "the system CA store (mqtt.ca_file is empty)"
        return f"TLS certificate verify failed ({exc.verify_message}) against {ca}"
    if tls and isinstance(exc, ssl.SSLError | ConnectionResetError | EOFError):
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        return (
            f"TLS handshake failed ({reason}): the broker does not speak TLS on this port; "
            "use mqtt:// for a plain listener, or the broker's TLS port"
        )
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return str(exc) or exc.__class__.__name__


def speaks_tls(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TLS handshake (unverified: only the protocol is probed) succeeds."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ValueError):
        return False


class _PahoLog(logging.Logger):
    """paho's log lines, all at DEBUG: paho reports every failed retry at ERROR, and the
    outage is logged once, by us.  A logger rather than ``on_log``, for which paho formats
    every line (two per event) whether or not anything is logged."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(f"paho: {msg}", *args)


class MqttPublisher(Publisher):
    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        password: str | None = None,
        spool_path: Path | None = None,
        *,
        status: bool = True,
        client_factory: Callable[..., Any] = mqtt.Client,
        commit_s: float = COMMIT_S,
        window: int = WINDOW,
        spool_retry_s: float = 5.0,
        probe: Callable[[str, int], bool] = speaks_tls,
    ) -> None:
        """``status=False``: a helper connection of the device (``edged ha remove``) that
        neither announces ``online`` nor leaves a last will."""
        self.status = status
        self.cfg = cfg
        self.device_id = device_id
        self.base = wire.device_topic(cfg.topic_prefix, device_id)
        self.host, self.port, self.tls = wire.broker_address(cfg.url)
        self.commit_s = commit_s
        self.window = window
        self._probe = probe
        self.spool = Spool(
            spool_path,
            max_bytes=int(cfg.spool_max_mb * 2**20),
            max_rows=cfg.max_queued,
            retry_s=spool_retry_s,
            spill_after_s=cfg.spill_after_s if cfg.durability == "spill" else None,
        )
        legacy = spool_path.with_name(LEGACY_SPOOL) if spool_path is not None else None
        if legacy is not None and legacy.exists():
            log.info(
                "MQTT: %d event(s) taken over from %s", self.spool.import_lines(legacy), legacy
            )
        self.callback_errors = 0
        self.published = 0  # this run's events the broker acknowledged
        self.resent = 0  # events of earlier runs the broker acknowledged
        self.dropped = 0  # events given up (too large for the broker, or no spool at stop)
        self.reconnects = 0
        # seconds from publish() to the acknowledgement, of the last ACK_AGES events
        self.ack_ages: deque[float] = deque(maxlen=ACK_AGES)
        self._connects = 0
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, Spooled | _State] = {}  # by paho mid
        # acks paho reported before publish() returned the mid, with when (a mid never
        # tracked, e.g. the offline status at stop, is forgotten after EARLY_ACK_S)
        self._early_acks: dict[int, float] = {}
        self._cursor = 0  # the last spool id handed to paho
        self._resending = False  # paho still has to re-send what was in flight
        self._state: dict[str, tuple[bytes, int]] = {}  # retained, last value per topic
        self._outage_since: float | None = None
        self._outage_reason: str | None = None
        self._attempts = 0
        self._probed = False
        self._connack = False  # the broker answered the last connect
        self._stopping = False
        self._stalled = False  # at stop: acknowledgements stopped coming
        self._wake = threading.Event()
        self._starved = False  # committed events wait for room in the window
        self._idle = False  # the spool thread sleeps until an event comes
        self._flushing = False  # stop is near: commit and hand over at every wake-up
        # spill mode: events that come within coalesce_ms of the last hand-over wait for the
        # spool thread, which hands them over together at _next_hand_over
        self.coalesce_s = cfg.coalesce_ms / 1000.0
        self._next_hand_over = 0.0  # time.monotonic()
        self._coalescing = False  # an event waits for _next_hand_over
        self._spool_stop = threading.Event()
        # the spool's owner (Spool: "one thread"): the spool thread, or a publishing thread
        # that hands its event over itself
        self._owner = threading.Lock()
        self._net_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        self.client = client_factory(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"edged-{device_id}",
            protocol=protocol,
            clean_session=None if protocol == mqtt.MQTTv5 else True,
        )
        self.client.enable_logger(_PahoLog(f"{__name__}.paho"))
        self.client.on_socket_register_write = _written_by_the_network_thread
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)  # bounded here: window + retained state
        if status:
            self.client.will_set(self.topic(wire.Suffix.STATUS), OFFLINE, qos=1, retain=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, password)
        elif password:
            raise MqttConfigError("an MQTT password is set but mqtt.username is empty")
        if self.tls:
            try:
                self.client.tls_set(
                    ca_certs=cfg.ca_file or None,
                    certfile=cfg.cert_file or None,
                    keyfile=cfg.key_file or None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:
                raise MqttConfigError(f"mqtt TLS files: {exc}") from exc
        elif cfg.ca_file or cfg.cert_file:
            raise MqttConfigError(f"mqtt.ca_file/cert_file need an mqtts:// url, not {cfg.url!r}")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._subscriptions: dict[str, Callable[[Message], None]] = {}
        self._connect_hooks: list[Callable[[], None]] = []
        self._v5 = protocol == mqtt.MQTTv5

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def evicted(self) -> int:
        return self.spool.evicted

    @property
    def backlog(self) -> int:
        """Events not acknowledged yet (spooled, in memory or in flight)."""
        return self.spool.backlog

    @property
    def spool_kind(self) -> str | None:
        return "disk" if self.spool.durable else "memory"

    def start(self) -> None:
        if self.spool.path is None:
            log.info(
                "MQTT: no event spool (mqtt.spool_file is empty and there is no "
                "$STATE_DIRECTORY): events wait in memory only (at most %d) and a crash "
                "loses them",
                self.cfg.max_queued,
            )
        elif self.spool.backlog:
            log.info(
                "MQTT: %d event(s) kept in %s from an earlier run; re-sending them first",
                self.spool.backlog,
                self.spool.path,
            )
        log.info(
            "MQTT: connecting to %s:%d%s as %s",
            self.host,
            self.port,
            " (TLS)" if self.tls else "",
            self.cfg.client_id or f"edged-{self.device_id}",
        )
        self.client.connect_async(self.host, self.port, keepalive=self.cfg.keepalive)
        self._threads = [
            threading.Thread(target=self._network, name="edged-mqtt", daemon=True),
            threading.Thread(
                target=self._spiller if self.spool.spill else self._spooler,
                name="edged-spool",
                daemon=True,
            ),
        ]
        for t in self._threads:
            t.start()

    # -- publishing (any thread) ------------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes, qos: int | None = None, retain: bool = False
    ) -> None:
        """Retained messages are state (the last one wins, sent again on connect); anything
        else is an event, spooled and delivered in order (at ``mqtt.qos`` unless told)."""
        if qos is None:
            qos = wire.retained_qos(topic) if retain else self.cfg.qos
        if retain:
            with self._lock:
                self._state[topic] = (payload, qos)
            if self._connected.is_set():
                self._send_state(topic, payload, qos)
            return
        self.spool.add(topic, payload, qos)
        if self.spool.spill:  # handed over from memory: at once, or with the burst it is in
            now = time.monotonic()
            if now < self._next_hand_over and not self._flushing:
                if not self._coalescing:  # the first of a burst: the spool thread is due
                    self._coalescing = True
                    self._wake.set()
            elif self._hand_over_here():
                self._next_hand_over = now + self.coalesce_s
            else:
                self._wake.set()
        elif self._idle:  # the first event after a quiet spell: commit and send it now
            self._idle = False
            self._wake.set()

    def _hand_over_here(self) -> bool:
        """Spill mode: commit and hand over in the calling thread, which saves waking the
        spool thread for every event.  Only while connected, with room in the window and
        nothing for the disk (nothing at risk, no row on disk, no disk to retry): the
        caller never waits on a write.  False: the spool thread is to do it."""
        if self._spool_stop.is_set() or self._starved or not self._connected.is_set():
            return False
        if not self._owner.acquire(blocking=False):
            return False  # the spool thread is at it, and sees the event
        try:
            if not self.spool.in_memory_only():
                return False
            self._cycle()
            return True
        finally:
            self._owner.release()

    def _send_state(self, topic: str, payload: bytes, qos: int) -> None:
        info = self.client.publish(self.topic(topic), payload, qos=qos, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (qos and info.rc == mqtt.MQTT_ERR_NO_CONN):
            self._track(info.mid, _State(topic))

    def _track(self, mid: int, item: Spooled | _State) -> None:
        with self._lock:
            if self._early_acks.pop(mid, None) is not None:  # acked before publish() returned
                self._acked(item)
            else:
                self._inflight[mid] = item

    def _acked(self, item: Spooled | _State) -> None:
        """With ``_lock`` held."""
        if isinstance(item, Spooled):
            self.spool.ack((item.id,))
            self.ack_ages.append(self.spool.age(item))
            if item.id >= self.spool.first_id:
                self.published += 1
            else:
                self.resent += 1

    # -- the spool thread: group commit, then hand over -------------------------------------
    def _spooler(self) -> None:
        """Commits once per commit window (one transaction and one fsync, however many events
        and acknowledgements it holds), and hands committed events over after each commit and
        whenever an acknowledgement makes room for events that wait for it."""
        next_commit = time.monotonic()
        while not self._spool_stop.is_set():
            # with nothing to commit it sleeps until publish() wakes it, so an event after a
            # quiet spell is committed and sent at once; the window then groups what follows
            # (the flag goes up before the look at the spool: an event that publish() adds
            # meanwhile is either seen here or wakes the thread)
            self._idle = True
            if self.spool.dirty:
                self._idle = False
            if self._idle:  # a disk that refuses writes is tried again on time
                refused = self.spool.path is not None and not self.spool.durable
                wait = min(IDLE_S, self.spool.retry_s) if refused else IDLE_S
            else:
                wait = max(0.0, next_commit - time.monotonic())
            self._wake.wait(wait)
            self._wake.clear()
            now = time.monotonic()
            # a commit only when something is to be written (or the disk retried): a window
            # opens with the first event after a quiet spell, which thus goes out at once
            commit = (now >= next_commit or self._flushing) and (
                self.spool.dirty or not self.spool.durable
            )
            if commit:
                next_commit = now + self.commit_s
            self._cycle(commit=commit)
        self._cycle(hand_over=False, spill_all=True)

    # -- the spool thread in spill mode: hand over at once, write only what is at risk ----------
    def _at_risk(self) -> bool:
        """The broker is unreachable: what is held in memory goes to disk."""
        return self._outage_since is not None and not self._connected.is_set()

    def _spiller(self) -> None:
        """Hands over the events a publishing thread could not hand over itself, and those
        of a burst at its hand-over time (``coalesce_ms``); writes the events held longer
        than ``spill_after_s`` without an acknowledgement, and, during an outage, everything
        held, once per commit window.  With nothing to do it sleeps until an event comes or
        the oldest held event is due."""
        next_spill = time.monotonic()
        while not self._spool_stop.is_set():
            wait = IDLE_S
            if self.spool.path is not None and not self.spool.durable:  # retried on time
                wait = min(wait, self.spool.retry_s)
            due = self.spool.spill_due()
            if due is not None:
                if self._at_risk():
                    due = min(due, next_spill)
                wait = min(wait, due - time.monotonic())
            if self.spool.dirty:  # at once, or a burst at its hand-over time
                coalescing = self._coalescing and not self._flushing
                wait = min(wait, self._next_hand_over - time.monotonic()) if coalescing else 0.0
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()
            now = time.monotonic()
            if (
                self._coalescing
                and now < self._next_hand_over
                and not (self._flushing or self._at_risk() or self._spool_stop.is_set())
                and (due is None or now < due)
            ):
                continue  # woken before the burst's hand-over time, with nothing due
            spill_all = self._at_risk() and now >= next_spill
            if spill_all:
                next_spill = now + self.commit_s
            with self._owner:
                # the flag goes down before the hand-over: an event added after it raises
                # it again and wakes this thread; one added before is handed over here
                if self._coalescing:
                    self._coalescing = False
                    self._next_hand_over = now + self.coalesce_s
                self._cycle(spill_all=spill_all)
        with self._owner:
            self._cycle(hand_over=False, spill_all=True)

    def _cycle(self, hand_over: bool = True, commit: bool = True, spill_all: bool = False) -> None:
        try:
            with self._lock:
                busy = {i.id for i in self._inflight.values() if isinstance(i, Spooled)}
            if commit:
                self.spool.commit(busy, spill_all=spill_all)
            if hand_over:
                self._hand_over(busy)
        except Exception:
            self.callback_errors += 1
            log.exception("error in the event spool")

    def _hand_over(self, busy: set[int]) -> None:
        """``busy``: the spool ids in flight (a commit does not change them)."""
        with self._lock:
            if not self._connected.is_set() or self._resending:
                return
        room = self.window - len(busy)
        if room <= 0:
            self._starved = True
            return
        if self.spool.rewind:  # rows the spool could not read before: from the oldest again
            self.spool.rewind = False
            self._cursor = 0
        # one row more than there is room for tells whether events wait for room
        rows = [r for r in self.spool.after(self._cursor, room + len(busy) + 1) if r.id not in busy]
        self._starved = len(rows) > room
        for row in rows[:room]:
            info = self.client.publish(self.topic(row.topic), row.payload, qos=row.qos)
            if info.rc == mqtt.MQTT_ERR_SUCCESS or (
                row.qos > 0 and info.rc != mqtt.MQTT_ERR_QUEUE_SIZE  # paho keeps it to re-send
            ):
                self._cursor = row.id
                self._track(info.mid, row)  # QoS 0 too: paho reports it once written
            elif info.rc in (mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_CONN_LOST):
                return  # QoS 0 with no connection: it stays in the spool
            else:
                self._cursor = row.id
                self.spool.ack((row.id,))
                self.dropped += 1
                log.error(
                    "MQTT: event %d to %s given up: %s",
                    row.id,
                    row.topic,
                    mqtt.error_string(info.rc),
                )

    # -- the network thread -----------------------------------------------------------------
    def _network(self) -> None:
        delay = self.cfg.reconnect_min_s
        linked = False
        while not self._net_stop.is_set():
            if not linked:
                if self._stopping:
                    return
                self._connack = False
                try:
                    self.client.reconnect()
                    linked = True
                except (OSError, ValueError) as exc:
                    self._connect_failed(exc)
                    self._net_stop.wait(delay)
                    delay = min(delay * 2, self.cfg.reconnect_max_s)
                    continue
            rc = self.client.loop(timeout=0.1)
            if rc == mqtt.MQTT_ERR_SUCCESS:
                if self._connected.is_set():
                    delay = self.cfg.reconnect_min_s
                continue
            linked = False
            if self._net_stop.is_set():
                return
            if not self._connack:
                self._closed_before_connack()
            self._net_stop.wait(delay)
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    def _begin_outage(self, reason: str, level: int = logging.WARNING) -> None:
        """One WARNING per outage (its first reason); a later reason only when it is an
        error the operator has to fix (refused, TLS) and differs from the last one."""
        self._attempts += 1
        first = self._outage_since is None
        if first:
            self._outage_since = time.monotonic()
        if reason == self._outage_reason or not (first or level >= logging.ERROR):
            log.debug("MQTT broker %s:%d: %s", self.host, self.port, reason)
            return
        self._outage_reason = reason
        log.log(
            level,
            "MQTT broker %s:%d: %s; retrying with backoff (%g to %g s), events wait in the spool",
            self.host,
            self.port,
            reason,
            self.cfg.reconnect_min_s,
            self.cfg.reconnect_max_s,
        )

    def _connect_failed(self, exc: BaseException) -> None:
        reason = describe_connect_error(exc, self.tls, self.cfg.ca_file)
        tls_failure = isinstance(exc, ssl.SSLError) or (
            self.tls and isinstance(exc, ConnectionResetError | EOFError)
        )
        level = logging.ERROR if tls_failure else logging.WARNING  # the operator must act
        self._begin_outage(f"unreachable ({reason})" if level < logging.ERROR else reason, level)

    def _closed_before_connack(self) -> None:
        """The broker closed the connection before accepting it: on a plain URL, find out
        once per outage whether the port speaks TLS."""
        if not self.tls and not self._probed:
            self._probed = True
            if self._probe(self.host, self.port):
                self._begin_outage(
                    "the broker speaks TLS on this port, but mqtt.url is plain mqtt://: "
                    "use mqtts:// (with mqtt.ca_file for a private CA)",
                    logging.ERROR,
                )
                return
        self._begin_outage("the connection was closed before the broker accepted it")

    @_guarded
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connack = True
        if reason.is_failure:
            text = str(reason)
            hint = (
                " (check mqtt.username and the password)"
                if "auth" in text.lower() or "password" in text.lower()
                else ""
            )
            self._begin_outage(f"refused the connection: {text}{hint}", logging.ERROR)
            return
        self._connects += 1
        if self._connects > 1:
            self.reconnects += 1
        with self._lock:
            # paho drops QoS 0 messages not written before the connection was lost (and
            # never reports them): those events are handed over again, from the oldest
            lost = [m for m, i in self._inflight.items() if isinstance(i, Spooled) and not i.qos]
            for mid in lost:
                del self._inflight[mid]
            if lost:
                self.spool.rewind = True
            self._resending = any(isinstance(i, Spooled) for i in self._inflight.values())
            state = dict(self._state)
        self._end_outage()
        if self.status:
            self._send_state(wire.Suffix.STATUS, ONLINE, 1)
        for topic, (payload, qos) in state.items():
            self._send_state(topic, payload, qos)
        self._connected.set()
        self._wake.set()
        for sub in self._subscriptions:
            client.subscribe(sub, qos=1)
        for hook in self._connect_hooks:
            try:
                hook()
            except Exception:
                self.callback_errors += 1
                log.exception("error in an MQTT connect hook")

    def subscribe(self, topic: str, handler: Callable[[Message], None]) -> None:
        self._subscriptions[topic] = handler

    def on_connect(self, hook: Callable[[], None]) -> None:
        self._connect_hooks.append(hook)

    @_guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            response_topic=getattr(props, "ResponseTopic", None) or None,
            correlation_data=getattr(props, "CorrelationData", None),
            user_properties=tuple(getattr(props, "UserProperty", None) or ()),
            retain=bool(msg.retain),
        )
        for sub, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(sub, msg.topic):
                handler(message)

    def send(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
        user_properties: tuple[tuple[str, str], ...] = (),
    ) -> None:
        props = None
        if self._v5 and (correlation_data is not None or user_properties):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation_data is not None:
                props.CorrelationData = correlation_data
            if user_properties:
                props.UserProperty = list(user_properties)
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("MQTT: message to %s not sent: %s", topic, mqtt.error_string(info.rc))

    def _end_outage(self) -> None:
        since, self._outage_since = self._outage_since, None
        self._outage_reason = None
        self._probed = False
        attempts, self._attempts = self._attempts, 0
        evicted = self.spool.end_of_outage()
        if since is None:
            log.info("MQTT: connected to %s:%d", self.host, self.port)
            return
        log.info(
            "MQTT: connected to %s:%d again after %.1f s (%d failed attempt(s)); %d event(s) "
            "waiting in the spool%s",
            self.host,
            self.port,
            time.monotonic() - since,
            attempts,
            self.spool.backlog,
            f"; {evicted} oldest event(s) evicted meanwhile (mqtt.spool_max_mb)" if evicted else "",
        )

    @_guarded
    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stopping:
            self._begin_outage(f"disconnected ({reason})")
        self._wake.set()  # in spill mode, what is held is at risk now

    @_guarded
    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        with self._lock:
            self._resending = False  # paho re-sends everything before it reads an ack
            item = self._inflight.pop(mid, None)
            if item is None:
                now = time.monotonic()
                self._early_acks[mid] = now
                for old in [m for m, t in self._early_acks.items() if now - t > EARLY_ACK_S]:
                    del self._early_acks[old]
            else:
                self._acked(item)
        # wake the spool thread for room that events wait for, or, when it sleeps with
        # nothing to do, for the acknowledgement to be written with the next commit
        if self._starved or self._flushing or (self._idle and not self.spool.spill):
            self._idle = False
            self._wake.set()

    # -- stopping ---------------------------------------------------------------------------
    def flush(self, timeout: float, stall: float = 0.3) -> bool:
        """Wait (at most ``timeout`` seconds, only while connected, and only while the broker
        acknowledges something at least every ``stall`` seconds) until every event and
        retained message has been acknowledged; True if nothing is left."""
        self._flushing = True
        try:
            return self._flush(time.monotonic() + timeout, stall)
        finally:
            self._flushing = False

    def _flush(self, deadline: float, stall: float) -> bool:
        self._wake.set()
        last, progress_at = -1, time.monotonic()
        while True:
            with self._lock:
                waiting = bool(self._inflight) or self.spool.backlog > 0
                acked = self.published + self.resent
            if not waiting:
                return True
            now = time.monotonic()
            if acked != last:
                last, progress_at = acked, now
            if now - progress_at > stall:
                self._stalled = True  # the broker takes messages but acknowledges none
            if self._stalled or not self._connected.is_set() or now >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, timeout: float = 1.5) -> None:
        """Within ``timeout`` seconds: deliver what the broker will acknowledge, publish
        ``offline`` (best effort), disconnect.  What is not acknowledged stays in the spool."""
        deadline = time.monotonic() + timeout
        reserve = min(0.3, timeout / 2)  # for offline, the disconnect and the last commit
        self.flush(deadline - reserve - time.monotonic())
        self._spool_stop.set()
        self._wake.set()
        for t in self._threads[1:]:
            t.join(max(0.05, deadline - reserve / 2 - time.monotonic()))
        if self.status and self._connected.is_set() and not self._stalled:
            info = self.client.publish(self.topic(wire.Suffix.STATUS), OFFLINE, qos=1, retain=True)
            until = min(deadline - reserve / 2, time.monotonic() + 0.2)
            while not info.is_published() and time.monotonic() < until:
                time.sleep(0.01)
        self._stopping = True
        self.client.disconnect()
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))  # the loop sends it
        self._net_stop.set()
        for t in self._threads[:1]:
            t.join(max(0.05, deadline - time.monotonic()))
        spool_thread_done = not any(t.is_alive() for t in self._threads[1:])
        if spool_thread_done:  # the acknowledgements that came meanwhile; the rest to disk
            with self._owner:
                self._cycle(hand_over=False, spill_all=True)
        left = self.spool.backlog
        if left:
            if self.spool.durable:
                log.warning(
                    "MQTT: %d event(s) not acknowledged before stop; kept in %s for the next start",
                    left,
                    self.spool.path,
                )
            else:
                self.dropped += left
                self.lost_events = left
                log.warning(
                    "MQTT: %d event(s) not acknowledged before stop are lost (%s)",
                    left,
                    "no event spool" if self.spool.path is None else self.spool.problem,
                )
        if spool_thread_done:
            self.spool.close()
