"""The small interface the pipeline publishes through."""

from __future__ import annotations

from abc import ABC, abstractmethod


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
    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None: ...

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for everything published to be acknowledged."""
        return True

    @abstractmethod
    def stop(self, timeout: float = 1.5) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...
