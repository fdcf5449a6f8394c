"""MQTT through paho-mqtt 2.x: retained online/offline status with a last will, QoS-tracked
delivery in order, reconnects with backoff, and callbacks that never lose an exception.

Order across a reconnect: paho re-sends the messages that were in flight when the connection
dropped only after ``on_connect`` has returned, while a publish from another thread goes out
as soon as the client is connected, ahead of them.  So messages published while disconnected
wait in ``_held`` (bounded by ``mqtt.max_queued``), and after a reconnect they, and anything
newer, are sent only once paho has re-sent its own: when no message was in flight, or at the
first acknowledgement after the reconnect (paho re-sends all of them before reading any).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edged import wire
from edged.config import MqttConfig
from edged.publish.base import Publisher

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., None])

ONLINE = wire.ONLINE.encode()
OFFLINE = wire.OFFLINE.encode()


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


class MqttPublisher(Publisher):
    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        password: str | None = None,
        spool_path: Path | None = None,
    ) -> None:
        self.spool_path = spool_path
        self.cfg = cfg
        self.device_id = device_id
        self.base = wire.device_topic(cfg.topic_prefix, device_id)
        self.host, self.port, self.tls = wire.broker_address(cfg.url)
        self.callback_errors = 0
        self.published = 0
        self.dropped = 0
        self.reconnects = 0
        self._connects = 0
        self._connected = threading.Event()
        self._lock = threading.Lock()
        # taken by publishing threads around held + new messages, never in paho's callbacks
        self._order = threading.Lock()
        self._pending: dict[int, tuple[str, bytes, int, bool]] = {}
        self._held: deque[tuple[str, bytes, int, bool]] = deque()
        self._resending = False  # paho still has to re-send what was in flight
        self._early_acks: set[int] = set()
        self._last_refusal: str | None = None
        protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"edged-{device_id}",
            protocol=protocol,
            clean_session=None if protocol == mqtt.MQTTv5 else True,
        )
        paho_log = logging.getLogger("edged.publish.paho")
        paho_log.addFilter(self._quiet_after_stop)
        self.client.enable_logger(paho_log)
        self._stopping = False
        self.client.max_queued_messages_set(cfg.max_queued)
        self.client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)), max_delay=round(cfg.reconnect_max_s)
        )
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
        self.client.on_connect_fail = self._on_connect_fail

    def _quiet_after_stop(self, record: logging.LogRecord) -> bool:
        # paho's loop thread runs once more after a clean disconnect and logs that the
        # socket is gone; that is expected during stop.
        return not (self._stopping and record.getMessage().startswith("Client is not connected"))

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        log.info(
            "MQTT: connecting to %s:%d%s as %s",
            self.host,
            self.port,
            " (TLS)" if self.tls else "",
            self.client._client_id.decode(),
        )
        self.client.connect_async(self.host, self.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        self._replay_spool()

    @_guarded
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            text = str(reason)
            if text != self._last_refusal:
                log.error(
                    "MQTT broker %s:%d refused the connection: %s%s; retrying with backoff",
                    self.host,
                    self.port,
                    text,
                    " (check mqtt.username and the password)"
                    if "auth" in text.lower() or "password" in text.lower()
                    else "",
                )
            self._last_refusal = text
            return
        self._last_refusal = None
        self._connects += 1
        if self._connects > 1:
            self.reconnects += 1
        with self._lock:
            self._resending = bool(self._pending)
        self._connected.set()
        log.info("MQTT: connected to %s:%d", self.host, self.port)
        self._send(wire.Suffix.STATUS, ONLINE, qos=1, retain=True)

    @_guarded
    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self._last_refusal != "unreachable":
            log.warning(
                "MQTT broker %s:%d unreachable; retrying with backoff", self.host, self.port
            )
        self._last_refusal = "unreachable"

    @_guarded
    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and reason.is_failure:
            log.warning("MQTT: disconnected (%s); reconnecting", reason)

    @_guarded
    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        with self._lock:
            self._resending = False  # paho re-sends everything before it reads an ack
            if self._pending.pop(mid, None) is not None:
                self.published += 1
            else:
                self._early_acks.add(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish in order; while disconnected (or paho is still re-sending what was in
        flight) the message waits in ``_held``."""
        with self._order:
            if self._send_held():
                self._send(topic, payload, qos, retain)
                return
            with self._lock:
                if len(self._held) + len(self._pending) < self.cfg.max_queued:
                    self._held.append((topic, payload, qos, retain))
                    return
            self._drop(topic)

    def poll(self) -> None:
        with self._order:
            self._send_held()

    def _send_held(self) -> bool:
        """With ``_order`` held: send the held messages, in order, if the connection is
        ready for them; False if it is not."""
        with self._lock:
            if not self._connected.is_set() or self._resending:
                return False
            held = list(self._held)
            self._held.clear()
        for message in held:
            self._send(*message)
        return True

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = self.client.publish(self.topic(topic), payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._drop(topic)
            return
        # MQTT_ERR_NO_CONN (the connection dropped a moment ago) still queues the message in
        # paho, which re-sends it after the reconnect.
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                self.published += 1
            else:
                self._pending[info.mid] = (topic, payload, qos, retain)

    def _drop(self, topic: str) -> None:
        self.dropped += 1
        log.warning("MQTT queue full (%d): message to %s dropped", self.cfg.max_queued, topic)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._held)

    def flush(self, timeout: float) -> bool:
        """Send what is held and wait until every message has been acknowledged."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.02)
        return not self.pending

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), publish ``offline``, disconnect."""
        if self.connected:
            self.flush(timeout)
            info = self.client.publish(self.topic(wire.Suffix.STATUS), OFFLINE, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(min(timeout, 2.0))
        self._stopping = True
        with self._lock:
            undelivered = [m for _, m in sorted(self._pending.items())] + list(self._held)
        if undelivered:
            spooled = self._spool(undelivered)
            self.dropped += len(undelivered) - spooled
            events = sum(1 for t, _, _, r in undelivered if t == wire.Suffix.EVENTS and not r)
            self.lost_events = events - spooled
            log.warning(
                "MQTT: %d message(s) not delivered before stop%s",
                len(undelivered),
                f"; {spooled} event(s) kept in {self.spool_path} for the next start"
                if spooled
                else "",
            )
        self.client.disconnect()
        self.client.loop_stop()

    # -- spool: events the broker never acknowledged survive a restart -------------------
    def _spool(self, messages: list[tuple[str, bytes, int, bool]]) -> int:
        if self.spool_path is None:
            return 0
        lines = [
            json.dumps({"topic": t, "payload": p.decode(), "qos": q})
            for t, p, q, r in messages
            if t == "events" and not r
        ]
        if not lines:
            return 0
        try:
            with self.spool_path.open("a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.error("cannot keep undelivered events in %s: %s", self.spool_path, exc)
            return 0
        return len(lines)

    def _replay_spool(self) -> None:
        path = self.spool_path
        if path is None or not path.exists():
            return
        replayed = bad = 0
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            path.unlink()
        except OSError as exc:
            log.error("cannot read the event spool %s: %s", path, exc)
            return
        for line in lines:
            try:
                item = json.loads(line)
                topic, payload, qos = str(item["topic"]), str(item["payload"]), int(item["qos"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            self.publish(topic, payload.encode(), qos=qos)
            replayed += 1
        log.info(
            "MQTT: re-sending %d event(s) kept from the last run%s",
            replayed,
            f" ({bad} unreadable line(s) skipped)" if bad else "",
        )
