"""A fake of paho-mqtt 2.x's ``Client`` for driving the publisher without a network, honouring
paho's real API: ``publish()`` returns an ``MQTTMessageInfo`` with a ``mid`` and an ``rc``;
VERSION2 callbacks ``on_connect(client, userdata, flags, reason_code, properties)``,
``on_disconnect(client, userdata, flags, reason_code, properties)`` and
``on_publish(client, userdata, mid, reason_code, properties)``; ``reconnect()`` raises
``OSError`` when the broker is away; ``loop()`` returns ``MQTT_ERR_CONN_LOST`` when the
connection drops; a QoS 1 message published while disconnected is kept and re-sent (with the
dup flag) after the next CONNACK, before anything else, as paho does.

The broker side is a :class:`FakeBroker` the test controls: up or down, acknowledging or
frozen, or acknowledging inside ``publish()`` before it returns (paho's network thread can
run ``on_publish`` before the publishing thread has its ``mid``)."""

from __future__ import annotations

import threading
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


@dataclass
class FakeBroker:
    up: bool = True
    frozen: bool = False  # the connection stays open but nothing is acknowledged
    ack_in_publish: bool = False
    refuse: str = ""  # a CONNACK reason name, e.g. "Not authorized"
    refused: int = 0  # connection attempts refused while down
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
        self.will: tuple[str, bytes, int, bool] | None = None
        self.max_inflight = 20
        self.host = ""
        self._mid = 0
        self._linked = False  # a socket is open
        self._connack_due = False
        self._out: dict[int, tuple[str, bytes, int, bool, MQTTMessageInfo]] = {}
        self._unacked: list[int] = []  # sent, waiting for PUBACK, in order
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
        return mqtt.MQTT_ERR_SUCCESS

    def is_connected(self) -> bool:
        return self._linked and not self._connack_due

    def loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        with self._cond:
            self._cond.wait(min(timeout, 0.01))
        if not self._linked:
            return mqtt.MQTT_ERR_NO_CONN
        if not self.broker.up:
            self._drop(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"))
            return mqtt.MQTT_ERR_CONN_LOST
        if self._connack_due:
            self._connack_due = False
            if self.broker.refuse:
                self.on_connect(
                    self,
                    None,
                    ConnectFlags(False),
                    ReasonCode(PacketTypes.CONNACK, self.broker.refuse),
                    None,
                )
                self._linked = False
                return mqtt.MQTT_ERR_CONN_REFUSED
            self.on_connect(
                self, None, ConnectFlags(False), ReasonCode(PacketTypes.CONNACK, "Success"), None
            )
            with self._cond:  # paho re-sends what was in flight after on_connect returns
                for mid, (topic, payload, qos, retain, _info) in sorted(self._out.items()):
                    if mid not in self._unacked:
                        self._deliver(mid, topic, payload, qos, retain, dup=True)
        if not self.broker.frozen:
            self._ack_all()
        return mqtt.MQTT_ERR_SUCCESS

    def _drop(self, reason: ReasonCode) -> None:
        with self._cond:
            self._linked = False
            self._unacked.clear()
        self.on_disconnect(self, None, DisconnectFlags(False), reason, None)

    def _deliver(
        self, mid: int, topic: str, payload: bytes, qos: int, retain: bool, dup: bool
    ) -> None:
        """With ``_cond`` held."""
        with self.broker.lock:
            self.broker.received.append(Received(topic, payload, qos, retain, dup))
        if qos:
            self._unacked.append(mid)

    def _ack_all(self) -> None:
        with self._cond:
            mids, self._unacked = self._unacked, []
            infos = [self._out.pop(mid)[4] for mid in mids if mid in self._out]
        for mid, info in zip(mids, infos, strict=False):
            info._set_as_published()
            self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, "Success"), None)

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> MQTTMessageInfo:
        with self._cond:
            self._mid += 1
            mid = self._mid
            info = MQTTMessageInfo(mid)
            connected = self._linked and not self._connack_due and self.broker.up
            if qos == 0:
                if not connected:
                    info.rc = mqtt.MQTT_ERR_NO_CONN
                    return info
                self._deliver(mid, topic, payload, qos, retain, dup=False)
        if qos == 0:  # paho reports a QoS 0 message once it is written, from its thread
            info._set_as_published()
            self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, "Success"), None)
            return info
        with self._cond:
            self._out[mid] = (topic, payload, qos, retain, info)
            info.rc = mqtt.MQTT_ERR_SUCCESS if connected else mqtt.MQTT_ERR_NO_CONN
            if connected:
                self._deliver(mid, topic, payload, qos, retain, dup=False)
            self._cond.notify_all()
        if connected and self.broker.ack_in_publish and not self.broker.frozen:
            self._ack_all()  # the ack is seen before this publish() returns
        return info

    def disconnect(self) -> MQTTErrorCode:
        if self._linked:
            self._drop(ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"))
        return mqtt.MQTT_ERR_SUCCESS
