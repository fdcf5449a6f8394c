"""Waking a blocked network read: only the camera's connections opened since the snapshot
are shut down (real sockets on 127.0.0.1)."""

from __future__ import annotations

import os
import socket

import pytest

from edged.capture import sockets

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc"
)


def test_shuts_down_new_connections_to_the_port_only() -> None:
    camera = socket.create_server(("127.0.0.1", 0))
    other = socket.create_server(("127.0.0.1", 0))
    port = camera.getsockname()[1]
    old = socket.create_connection(("127.0.0.1", port))  # before the snapshot
    before = set(sockets.socket_inodes().values())
    new = socket.create_connection(("127.0.0.1", port))
    unrelated = socket.create_connection(("127.0.0.1", other.getsockname()[1]))
    peers = [camera.accept()[0], camera.accept()[0], other.accept()[0]]
    try:
        assert sockets.socket_inodes()[new.fileno()] == os.fstat(new.fileno()).st_ino
        assert sockets.remote_ports()[os.fstat(new.fileno()).st_ino] == port

        assert sockets.shutdown_new_connections(before, port) == 1
        new.settimeout(2)
        assert new.recv(1) == b""  # woken: end of stream, the descriptor still open
        assert new.fileno() >= 0
        for untouched in (old, unrelated):
            untouched.settimeout(0.05)  # a shut-down socket would read b'' at once
            with pytest.raises(TimeoutError):
                untouched.recv(1)
    finally:
        for s in (old, new, unrelated, camera, other, *peers):
            s.close()
