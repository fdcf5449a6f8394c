"""Waking a thread blocked in FFmpeg on a network read.

PyAV offers no way to abort a read from another thread: its interrupt callback only checks
the ``timeout=`` given to ``av.open``, and closing a container while another thread reads
it frees memory under that thread.  What is safe is to shut down the TCP connection FFmpeg
reads: ``shutdown(2)`` neither closes nor frees its descriptor, and FFmpeg's blocked
``poll``/``recv`` returns at once with end of stream, so the reading thread unwinds and
closes the container itself.

The connection is found through ``/proc`` (Linux): the sockets that appeared while the
source was connecting (a snapshot is taken before) and whose remote port is the camera's.
Each one is checked again by inode after ``dup``, so a descriptor number reused meanwhile is
never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

PROC_FD = Path("/proc/self/fd")
PROC_TCP = (Path("/proc/self/net/tcp"), Path("/proc/self/net/tcp6"))


def socket_inodes(fd_dir: Path = PROC_FD) -> dict[int, int]:
    """Open socket descriptors of this process: fd -> socket inode."""
    found: dict[int, int] = {}
    try:
        entries = list(os.scandir(fd_dir))
    except OSError:
        return found
    for entry in entries:
        try:
            target = os.readlink(entry.path)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            found[int(entry.name)] = int(target[8:-1])
    return found


def remote_ports(tables: tuple[Path, ...] = PROC_TCP) -> dict[int, int]:
    """TCP sockets of this process's network namespace: inode -> remote port."""
    ports: dict[int, int] = {}
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                ports[int(fields[9])] = int(fields[2].rsplit(":", 1)[1], 16)
    return ports


def shutdown_new_connections(before: set[int], port: int) -> int:
    """Shut down the TCP connections to ``port`` opened since the snapshot ``before`` (socket
    inodes).  Returns how many were shut down."""
    ports = remote_ports()
    done = 0
    for fd, inode in socket_inodes().items():
        if inode in before or ports.get(inode) != port:
            continue
        try:
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            if os.fstat(dup).st_ino != inode:  # the number was reused meanwhile
                continue
            with socket.socket(fileno=dup) as sock:
                dup = -1  # the socket object owns (and closes) the duplicate
                with contextlib.suppress(OSError):  # not connected (yet, or any more)
                    sock.shutdown(socket.SHUT_RDWR)
                    done += 1
        finally:
            if dup >= 0:
                os.close(dup)
    if done:
        log.debug("shut down %d connection(s) to port %d", done, port)
    return done
