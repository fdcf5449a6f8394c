"""A fake of paho-mqtt 2.x's ``Client`` for driving the publisher without a network, honouring
paho's real API: ``publish()`` returns an ``MQTTMessageInfo`` with a ``mid`` and an ``rc``;
VERSION2 callbacks ``on_connect(client, userdata, flags, reason_code, properties)``,
``on_disconnect(client, userdata, flags, reason_code, properties)`` and
``on_publish(client, userdata, mid, reason_code, properties)``; ``reconnect()`` raises
``OSError`` when the broker is away; ``loop()`` returns ``MQTT_ERR_CONN_LOST`` when the
connection drops; a QoS 1 message published while disconnected is kept and re-sent (with the
dup flag) after the next CONNACK, before anything else, as paho does.

Writes follow paho's ``_packet_queue`` and ``_packet_write``: a packet goes to an out queue, and
``publish()`` writes the queue itself, in the calling thread, unless ``on_socket_register_write``
is set or a callback is running (then ``loop()`` writes it).  A write takes the oldest packet
and then sends it, two steps: a thread that stops between them can be overtaken by another
writer.  A write into a connection the broker left returns ``MQTT_ERR_CONN_LOST`` (from
``publish()`` too) and reports the disconnect, as paho's ``_loop_rc_handle`` does.

The broker side is a :class:`FakeBroker` the test controls: up or down, gone with or without
closing the connection, acknowledging or frozen, a socket that takes nothing for now (``full``),
a hook between taking a packet and sending it, or acknowledging before ``publish()`` returns
(paho's network thread can run ``on_publish`` before the publishing thread has its ``mid``)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags, MQTTMessageInfo
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    writer: str = ""  # the name of the client's thread that sent it


@dataclass(frozen=True)
class _Packet:
    mid: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    info: MQTTMessageInfo


@dataclass
class FakeBroker:
    up: bool = True
    closes: bool = True  # going down closes the connection; False: only a write finds out
    frozen: bool = False  # the connection stays open but nothing is acknowledged
    full: bool = False  # the client's socket takes nothing for now (a write would block)
    ack_in_publish: bool = False
    refuse: str = ""  # a CONNACK reason name, e.g. "Not authorized"
    refused: int = 0  # connection attempts refused while down
    # called by the writing thread (its name) between taking a packet and sending it
    on_take: Callable[[str], None] | None = None
    received: list[Received] = field(default_factory=list)
    clients: list[FakeClient] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def factory(self, *args: Any, **kwargs: Any) -> FakeClient:
        client = FakeClient(self, *args, **kwargs)
        self.clients.append(client)
        return client

    def payloads(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [r.payload for r in self.received if r.topic.endswith("/" + suffix)]


class FakeClient:
    def __init__(
        self,
        broker: FakeBroker,
        callback_api_version: CallbackAPIVersion,
        client_id: str = "",
        clean_session: bool | None = None,
        userdata: Any = None,
        protocol: int = mqtt.MQTTv311,
    ) -> None:
        if callback_api_version is not CallbackAPIVersion.VERSION2:
            raise ValueError("edged uses VERSION2 callbacks")
        self.broker = broker
        self.client_id = client_id
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.on_log: Any = None
        self.logger: Any = None
        self.on_socket_register_write: Any = None
        self.will: tuple[str, bytes, int, bool] | None = None
        self.max_inflight = 20
        self.host = ""
        self._mid = 0
        self._linked = False  # a socket is open
        self._connack_due = False
        self._out: dict[int, tuple[str, bytes, int, bool, MQTTMessageInfo]] = {}
        self._unacked: list[int] = []  # sent, waiting for PUBACK, in order
        self._packets: deque[_Packet] = deque()  # paho's _out_packet
        self._resend: list[int] = []  # in flight at the last reconnect: re-sent after CONNACK
        self._in_callback = threading.Lock()  # paho's _in_callback_mutex
        self._loop_thread: threading.Thread | None = None
        self._cond = threading.Condition()

    # configuration calls the publisher makes
    def max_inflight_messages_set(self, inflight: int) -> None:
        self.max_inflight = inflight

    def max_queued_messages_set(self, queue_size: int) -> FakeClient:
        return self

    def will_set(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.will = (topic, payload, qos, retain)

    def username_pw_set(self, username: str | None, password: str | None = None) -> None:
        pass

    def enable_logger(self, logger: Any = None) -> None:
        self.logger = logger

    def tls_set(self, **kwargs: Any) -> None:
        pass

    def connect_async(self, host: str, port: int = 1883, keepalive: int = 60) -> None:
        self.host = host

    # network
    def reconnect(self) -> MQTTErrorCode:
        if not self.broker.up:
            self.broker.refused += 1
            raise ConnectionRefusedError(111, "Connection refused")
        with self._cond:
            self._linked = True
            self._connack_due = True
            self._unacked.clear()
            self._packets.clear()
            self._resend = sorted(self._out)  # paho's _messages_reconnect_reset
        return mqtt.MQTT_ERR_SUCCESS

    def is_connected(self) -> bool:
        return self._linked and not self._connack_due

    def loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        self._loop_thread = threading.current_thread()
        with self._cond:
            self._cond.wait(min(timeout, 0.01))
        if not self._linked:
            return mqtt.MQTT_ERR_NO_CONN
        if not self.broker.up and self.broker.closes:
            self._drop(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"))
            return mqtt.MQTT_ERR_CONN_LOST
        if self._connack_due:
            self._connack_due = False
            if self.broker.refuse:
                self._callback(
                    self.on_connect,
                    ConnectFlags(False),
                    ReasonCode(PacketTypes.CONNACK, self.broker.refuse),
                    None,
                )
                self._linked = False
                return mqtt.MQTT_ERR_CONN_REFUSED
            self._callback(
                self.on_connect,
                ConnectFlags(False),
                ReasonCode(PacketTypes.CONNACK, "Success"),
                None,
            )
            with self._cond:  # paho re-sends what was in flight after on_connect returns
                for mid in self._resend:
                    if mid in self._out:
                        topic, payload, qos, retain, info = self._out[mid]
                        self._packets.append(_Packet(mid, topic, payload, qos, retain, True, info))
        rc = self._write()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return rc
        if not self.broker.frozen:
            self._ack_all()
        return mqtt.MQTT_ERR_SUCCESS

    def _callback(self, callback: Any, *args: Any) -> None:
        """As paho's network thread calls back: holding its in-callback lock."""
        with self._in_callback:
            callback(self, None, *args)

    def _drop(self, reason: ReasonCode) -> None:
        with self._cond:
            self._linked = False
            self._unacked.clear()
            self._packets.clear()
        self.on_disconnect(self, None, DisconnectFlags(False), reason, None)

    def _queue(self, packet: _Packet) -> MQTTErrorCode:
        """paho's ``_packet_queue``: the calling thread writes unless an external loop takes
        the writes (``on_socket_register_write``) or a callback is running."""
        with self._cond:
            self._packets.append(packet)
            self._cond.notify_all()  # paho's socket pair wakes the loop
        if self.on_socket_register_write is None and self._in_callback.acquire(blocking=False):
            self._in_callback.release()
            return self._write()
        return mqtt.MQTT_ERR_SUCCESS

    def _write(self) -> MQTTErrorCode:
        """paho's ``_packet_write``: take the oldest packet, then send it."""
        while True:
            try:
                packet = self._packets.popleft()
            except IndexError:
                return mqtt.MQTT_ERR_SUCCESS
            if self.broker.full:  # BlockingIOError: back to the front, try again later
                self._packets.appendleft(packet)
                return mqtt.MQTT_ERR_SUCCESS
            if not self.broker.up:  # the socket is dead: paho's _loop_rc_handle
                self._packets.appendleft(packet)
                self._drop(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"))
                return mqtt.MQTT_ERR_CONN_LOST
            writer = threading.current_thread().name
            if self.broker.on_take is not None:
                self.broker.on_take(writer)
            with self.broker.lock:
                self.broker.received.append(
                    Received(
                        packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, writer
                    )
                )
            if packet.qos:
                with self._cond:
                    self._unacked.append(packet.mid)
                continue
            # paho reports a QoS 0 message once it is written, from the writing thread
            self._callback(
                self.on_publish, packet.mid, ReasonCode(PacketTypes.PUBACK, "Success"), None
            )
            packet.info._set_as_published()

    def _ack_all(self) -> None:
        with self._cond:
            mids, self._unacked = self._unacked, []
            acked = [(mid, self._out.pop(mid)[4]) for mid in mids if mid in self._out]
        for mid, info in acked:
            self._callback(self.on_publish, mid, ReasonCode(PacketTypes.PUBACK, "Success"), None)
            info._set_as_published()  # after on_publish, as paho's _do_on_publish

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> MQTTMessageInfo:
        with self._cond:
            self._mid += 1
            mid = self._mid
            info = MQTTMessageInfo(mid)
            connected = self._linked and not self._connack_due
            if qos == 0 and not connected:
                info.rc = mqtt.MQTT_ERR_NO_CONN
                return info
            if qos:  # kept until acknowledged; without a connection, sent after CONNACK
                self._out[mid] = (topic, payload, qos, retain, info)
        info.rc = mqtt.MQTT_ERR_NO_CONN
        if connected:
            info.rc = self._queue(_Packet(mid, topic, payload, qos, retain, False, info))
        ack_now = self.broker.ack_in_publish and not self.broker.frozen
        if qos and info.rc == mqtt.MQTT_ERR_SUCCESS and ack_now:
            if threading.current_thread() is self._loop_thread:
                self._ack_all()
            else:  # the network thread writes it and runs on_publish before this returns
                info.wait_for_publish(1.0)
        return info

    def disconnect(self) -> MQTTErrorCode:
        if self._linked:
            self._drop(ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"))
        return mqtt.MQTT_ERR_SUCCESS
