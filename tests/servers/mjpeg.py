"""A real HTTP camera for the tests: a threaded stdlib server streaming JPEG frames as
``multipart/x-mixed-replace`` (what IP cameras and motionEye serve), with basic auth.

Paths: ``/stream`` (the frames, looped), ``/page`` (an HTML page instead of video) and
``/raw`` (any bytes as one body, e.g. an H.264 elementary stream).  ``stop()`` closes the
listening socket and every open connection, like a camera losing power; ``start()`` again
(on the same port) brings it back.
"""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BOUNDARY = "edgedframe"


def jpeg_frames(images: Sequence[Path], size: tuple[int, int], quality: int = 85) -> list[bytes]:
    from PIL import Image

    out = []
    for path in images:
        with Image.open(path) as im:
            buf = io.BytesIO()
            im.convert("RGB").resize(size).save(buf, format="JPEG", quality=quality)
            out.append(buf.getvalue())
    return out


class MjpegServer:
    def __init__(
        self,
        frames: Sequence[bytes],
        *,
        port: int = 0,
        fps: float = 10.0,
        username: str = "",
        password: str = "",
        raw: bytes = b"",
        raw_type: str = "video/h264",
    ) -> None:
        self.frames = list(frames)
        self.port = port
        self.fps = fps
        self.auth = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username
            else ""
        )
        self.raw = raw
        self.raw_type = raw_type
        self.requests: list[tuple[str, str]] = []  # (path, Authorization header) per request
        self.served = 0  # frames sent
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MjpegServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._conns.add(self.connection)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()
                with owner._lock:
                    owner._conns.discard(self.connection)

            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Authorization", "")))
                if owner.auth and self.headers.get("Authorization") != owner.auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/page":
                    body = b"<!doctype html><html><body><h1>Camera login</h1>" + b"x" * 4000
                    body += b"</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path == "/raw":
                    self.send_response(200)
                    self.send_header("Content-Type", owner.raw_type)
                    self.end_headers()
                    self._paced_chunks(owner.raw)
                    return
                if self.path != "/stream":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                i = 0
                period = 1.0 / owner.fps
                with contextlib.suppress(OSError):
                    while not owner._stopping.is_set():
                        jpeg = owner.frames[i % len(owner.frames)]
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        owner.served += 1
                        i += 1
                        time.sleep(period)

            def _paced_chunks(self, data: bytes) -> None:
                with contextlib.suppress(OSError):
                    for start in range(0, len(data), 16384):
                        if owner._stopping.is_set():
                            return
                        self.wfile.write(data[start : start + 16384])
                        self.wfile.flush()
                        time.sleep(0.01)

        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and cut every open connection."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
