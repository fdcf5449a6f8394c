"""systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

The datagram is written to ``$NOTIFY_SOCKET`` by edged itself, never through
systemd-python's ``systemd.daemon.notify``: that one blocks in ``sendmsg`` while holding the
GIL, so a notify socket whose queue is full (a reader that stopped reading, a busy PID 1)
froze every thread of the daemon, its SIGTERM handler included.  A send here waits at most
``SEND_TIMEOUT_S`` with the GIL released; a message that does not fit by then is dropped, with
one warning until a send succeeds again.  Without a notify socket every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 0.1  # stop() sends STOPPING=1 inside its 2 s budget


def _socket_sender(address: str, timeout_s: float) -> Callable[[str], None]:
    if address.startswith("@"):
        address = "\0" + address[1:]

    def send(message: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
            sock.sendall(message.encode())

    return send


class Notifier:
    def __init__(
        self, environ: Mapping[str, str] | None = None, send_timeout_s: float = SEND_TIMEOUT_S
    ) -> None:
        """``send_timeout_s``: how long one message may wait for room in the socket."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._send: Callable[[str], None] | None = (
            _socket_sender(address, send_timeout_s) if address else None
        )
        self._failing = False
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        valid_pid = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and valid_pid else None
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, message: str) -> None:
        if self._send is None:
            return
        try:
            self._send(message)
        except OSError as exc:  # socket.timeout included: the reader's queue is full
            if not self._failing:
                log.warning(
                    "sd_notify(%s) failed: %s; notify messages are dropped until the socket "
                    "takes them again",
                    message.split("=")[0],
                    exc or "timed out",
                )
            self._failing = True
        else:
            if self._failing:
                log.info("sd_notify works again")
            self._failing = False

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
