"""The small interface the pipeline publishes through."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    """A message received on a subscribed topic (MQTT 5 properties where the sender set
    them)."""

    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    retain: bool = False  # a retained message, delivered because we subscribed


class Publisher(ABC):
    """Topics are relative to the device (``events``, ``health``, ``status``)."""

    published = 0  # this run's events the broker acknowledged (QoS 0: handed to the socket)
    resent = 0  # events kept from an earlier run that the broker acknowledged
    dropped = 0  # events given up (no spool at stop, or refused by the client library)
    reconnects = 0
    lost_events = 0  # events neither delivered nor kept for the next start, known at stop

    @property
    def evicted(self) -> int:
        """Oldest events evicted from a full spool."""
        return 0

    @property
    def spool_kind(self) -> str | None:
        """Where waiting events are kept: "disk" or "memory"."""
        return None

    @property
    def backlog(self) -> int:
        """Events not acknowledged yet."""
        return 0

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def publish(
        self, topic: str, payload: bytes, qos: int | None = None, retain: bool = False
    ) -> None:
        """``qos`` None: the publisher's own choice, ``mqtt.qos`` for events and
        :func:`edged.wire.retained_qos` for retained state."""

    def flush(self, timeout: float, stall: float = 0.3) -> bool:
        """Wait up to ``timeout`` seconds for everything published to be acknowledged."""
        return True

    def subscribe(self, topic: str, handler: Callable[[Message], None]) -> None:  # noqa: B027
        """Receive messages on ``topic`` (absolute), subscribed again on every connect.
        Called before ``start``; ``handler`` runs in the client's thread and must not block.
        A publisher that cannot receive ignores it (no commands then)."""

    def on_connect(self, hook: Callable[[], None]) -> None:  # noqa: B027
        """Run ``hook`` after every (re)connection, in the client's thread (never, for a
        publisher without connections)."""

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
        """Publish on an absolute ``topic``, outside the ordered event stream (replies,
        discovery, snapshots); MQTT 5 properties are dropped under 3.1.1."""
        raise NotImplementedError(f"{type(self).__name__} cannot send")

    @abstractmethod
    def stop(self, timeout: float = 1.5) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...
