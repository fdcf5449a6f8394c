"""The small interface the pipeline publishes through."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Publisher(ABC):
    """Topics are relative to the device (``events``, ``health``, ``status``)."""

    published = 0  # messages the broker acknowledged (QoS 0: handed to the socket)
    dropped = 0  # messages that could not be queued or were still unsent at stop
    reconnects = 0
    lost_events = 0  # events neither delivered nor kept for the next start, known at stop

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None: ...

    def poll(self) -> None:  # noqa: B027 - optional hook
        """Periodic work, called by the publishing thread when it has nothing to publish."""

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...
