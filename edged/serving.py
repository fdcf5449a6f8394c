"""The HTTP servers edged runs in a thread beside the pipeline (metrics, status page)."""

from __future__ import annotations

import socketserver
import threading


def stop_server(server: socketserver.BaseServer | None, thread: threading.Thread | None) -> None:
    """Stop serving, close the socket and wait (at most 2 s) for the serving thread."""
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=2.0)
