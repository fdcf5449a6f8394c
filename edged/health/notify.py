"""systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1.

Uses ``systemd.daemon.notify`` when systemd-python is importable, else writes the datagram
to ``$NOTIFY_SOCKET`` itself.  Without a notify socket every call is a no-op.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _socket_sender(address: str) -> Callable[[str], None]:
    if address.startswith("@"):
        address = "\0" + address[1:]

    def send(message: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())

    return send


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._send: Callable[[str], None] | None = None
        if address and environ is not None:
            self._send = _socket_sender(address)  # an explicit environment: speak it directly
        elif address:
            try:
                daemon = importlib.import_module("systemd.daemon")

                def send(message: str) -> None:
                    daemon.notify(message)

                self._send = send
            except ImportError:
                self._send = _socket_sender(address)
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
        except OSError as exc:
            log.warning("sd_notify(%s) failed: %s", message.split("=")[0], exc)

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
