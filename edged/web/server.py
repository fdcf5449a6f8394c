"""The status page server: the stdlib's ThreadingHTTPServer, one thread per connection.

A Pi serves a handful of viewers at most, the routes are few and fixed, and the page is one
HTML file with a few lines of JavaScript: the standard library does this without adding a
dependency (or its security updates) to every device.

Routes: ``/`` (the page), ``/frame.jpg`` (the latest frame the pipeline already holds, with
the top-k drawn over it, encoded only when asked for and once per frame however many
viewers; an AI camera whose sensor classifies copies its frames' pixels only while someone
looks, so a viewer's first request waits for the next frame), ``/api/status`` (last
classification and health), ``/api/config`` (the effective config with secrets redacted),
``/metrics`` (when metrics are on) and ``/healthz`` (200 while frames flow, else 503; no
auth, for probes).  With ``[learn]`` on, ``/learn`` (the Learn view) and the Learn API
(:mod:`edged.learn.api`) are served behind the same auth.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import numpy.typing as npt

from edged.config import WebConfig, parse_listen
from edged.serving import stop_server
from edged.web.overlay import render_jpeg
from edged.wire import CLASS_FIELDS as C
from edged.wire import EVENT_FIELDS as E

if TYPE_CHECKING:
    from edged.learn.api import LearnApi

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
LEARN_PAGE = Path(__file__).with_name("learn.html")
MAX_BODY = 64 * 1024
# the event fields the page's script reads, named by the wire format (not spelled in it)
PAGE_FIELDS = json.dumps(
    {
        "label": E.label,
        "score": E.score,
        "topK": E.top_k,
        "classLabel": C.label,
        "classScore": C.score,
    }
)
_SECRET_WORDS = ("password", "secret", "token", "passphrase")
REDACTED = "***"


class WebStartError(RuntimeError):
    """The page cannot start as configured (address in use, LAN without a password)."""


def redact(value: Any, key: str = "") -> Any:
    """A copy of a config mapping with every secret-looking value replaced: keys naming a
    password, secret or token (files holding them included), and credentials in URLs."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if any(w in key.lower() for w in _SECRET_WORDS) and value not in ("", None):
        return REDACTED
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1]:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://{REDACTED}@{rest.rsplit('@', 1)[1]}"
    return value


@dataclass(frozen=True)
class WebSource:
    """What the page shows, read when a viewer asks (never pushed by the pipeline)."""

    frame: Callable[[], tuple[int, npt.NDArray[np.uint8]] | None]  # (number, RGB image)
    result: Callable[[], Mapping[str, Any] | None]  # last classification (event fields)
    health: Callable[[], Mapping[str, Any]]
    config: Callable[[], Mapping[str, Any]]
    healthy: Callable[[], bool]
    paused: Callable[[], bool] = lambda: False
    metrics: Callable[[], bytes] | None = None
    metrics_type: str = "text/plain; version=0.0.4; charset=utf-8"
    # [[cameras]]: their names, and a camera's frame and last classification by name (the
    # page's camera picker; ``frame`` and ``result`` are the first camera's)
    cameras: tuple[str, ...] = ()
    camera_frame: Callable[[str], tuple[int, npt.NDArray[np.uint8]] | None] | None = None
    camera_result: Callable[[str], Mapping[str, Any] | None] | None = None

    def frame_of(self, camera: str | None) -> tuple[int, npt.NDArray[np.uint8]] | None:
        if camera is None or self.camera_frame is None:
            return self.frame()
        return self.camera_frame(camera)

    def result_of(self, camera: str | None) -> Mapping[str, Any] | None:
        if camera is None or self.camera_result is None:
            return self.result()
        return self.camera_result(camera)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StatusPage:
    def __init__(
        self,
        cfg: WebConfig,
        source: WebSource,
        device: str,
        password: str | None = None,
        learn: LearnApi | None = None,
    ) -> None:
        self.cfg = cfg
        self.learn = learn
        self.source = source
        self.device = device
        self.host, self.port = parse_listen(cfg.listen)
        if password is None and not is_loopback(self.host):
            raise WebStartError(
                f"web.listen {cfg.listen!r} is not a loopback address: set web.password_file "
                "or the systemd credential web_password (basic auth is required off loopback)"
            )
        self._auth = (
            None
            if password is None
            else "Basic " + base64.b64encode(f"{cfg.username}:{password}".encode()).decode()
        )
        self._jpeg_lock = threading.Lock()
        self._jpegs: dict[str | None, tuple[tuple[Any, ...], bytes]] = {}  # by camera
        self.frames_encoded = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        page = self

        class Handler(_Handler):
            owner = page

        try:
            server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise WebStartError(f"web.listen {self.cfg.listen!r}: {exc.strerror or exc}") from exc
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},  # close() waits up to this: stop is 2 s
            name="edged-web",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "status page: http://%s:%d/%s",
            self.host if ":" not in self.host else f"[{self.host}]",
            self.port,
            "" if self._auth is None else " (basic auth)",
        )
        return self.host, self.port

    def close(self) -> None:
        stop_server(self._server, self._thread)
        self._server, self._thread = None, None
        if self.learn is not None:
            self.learn.close()

    # -- content -------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if self._auth is None:
            return True
        return header is not None and hmac.compare_digest(header.encode(), self._auth.encode())

    def camera(self, query: str) -> str | None:
        """The ``camera`` of a query string, if it names one of the cameras (else None:
        the first camera)."""
        for name, value in parse_qsl(query):
            if name == "camera" and value in self.source.cameras:
                return value
        return None

    def jpeg(self, camera: str | None = None) -> bytes | None:
        """A camera's latest frame with the top-k over it, encoded once per (frame,
        result)."""
        frame = self.source.frame_of(camera)
        if frame is None:
            return None
        number, image = frame
        result = self.source.result_of(camera) or {}
        paused = self.source.paused()
        key = (number, result.get(E.frame), result.get(E.label), paused)
        with self._jpeg_lock:
            cached = self._jpegs.get(camera)
            if cached is None or cached[0] != key:
                jpeg = render_jpeg(
                    image,
                    list(result.get(E.top_k) or []),
                    ambiguous=bool(result.get(E.ambiguous)),
                    paused=paused,
                )
                cached = self._jpegs[camera] = (key, jpeg)
                self.frames_encoded += 1
            return cached[1]

    def status(self, camera: str | None = None) -> dict[str, Any]:
        return {
            "device": self.device,
            "paused": self.source.paused(),
            "cameras": list(self.source.cameras),
            "showing": camera or (self.source.cameras[0] if self.source.cameras else None),
            "classification": self.source.result_of(camera),
            "health": dict(self.source.health()),
        }

    def page(self) -> bytes:
        html = PAGE.read_text(encoding="utf-8")
        html = html.replace("{{device}}", _escape(self.device))
        html = html.replace("{{refresh_ms}}", str(int(self.cfg.refresh_s * 1000)))
        html = html.replace("{{fields}}", PAGE_FIELDS)
        if self.learn is not None:
            html = html.replace("<!--learn-->", '<a id="learn-link" href="learn">Learn</a>')
        return html.encode()

    def learn_page(self) -> bytes:
        html = LEARN_PAGE.read_text(encoding="utf-8")
        return html.replace("{{device}}", _escape(self.device)).encode()


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


class _Handler(BaseHTTPRequestHandler):
    owner: StatusPage
    server_version = "edged"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s: " + format, self.client_address[0], *args)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._learn_call()

    def do_DELETE(self) -> None:
        self._learn_call()

    def _refuse_unauthorized(self) -> bool:
        if self.owner.authorized(self.headers.get("Authorization")):
            return False
        self.send_response(HTTPStatus.UNAUTHORIZED)
        self.send_header("WWW-Authenticate", 'Basic realm="edged", charset="UTF-8"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def _learn_call(self) -> None:
        """POST and DELETE: the Learn API only, JSON in and out."""
        path, _, query = self.path.partition("?")
        learn = self.owner.learn
        try:
            if self._refuse_unauthorized():
                return
            if learn is None or not learn.owns(path):
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.command} {path}")
                return
            origin = self.headers.get("Origin")
            if origin and urlsplit(origin).netloc != self.headers.get("Host", ""):
                # a page of another site cannot drive the device with the viewer's login
                self._error(HTTPStatus.FORBIDDEN, f"cross-origin request from {origin!r}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
                self.close_connection = True
                return
            raw = self.rfile.read(length) if length else b""
            body: Any = None
            if raw:
                ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
                if ctype != "application/json":
                    self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
                    return
                try:
                    body = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}")
                    return
            self._reply(learn.handle(self.command, path, query, body))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("status page: %s %s failed", self.command, path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _reply(self, reply: Any) -> None:
        body = reply.body
        if isinstance(body, dict):
            body = json.dumps(body, default=str).encode()
        self._send(HTTPStatus(reply.status), body, reply.ctype)

    def _error(self, status: HTTPStatus, reason: str) -> None:
        self._send(status, json.dumps({"error": reason}).encode(), "application/json")

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        page = self.owner
        try:
            if path == "/healthz":
                ok = page.source.healthy()
                self._send(
                    HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                    b"ok\n" if ok else b"stalled\n",
                    "text/plain; charset=utf-8",
                )
                return
            if self._refuse_unauthorized():
                return
            if page.learn is not None and page.learn.owns(path):
                self._reply(page.learn.handle("GET", path, query, None))
            elif page.learn is not None and path == "/learn":
                self._send(HTTPStatus.OK, page.learn_page(), "text/html; charset=utf-8")
            elif path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page.page(), "text/html; charset=utf-8")
            elif path == "/frame.jpg":
                jpeg = page.jpeg(page.camera(query))
                if jpeg is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain")
                else:
                    self._send(HTTPStatus.OK, jpeg, "image/jpeg")
            elif path == "/api/status":
                self._json(page.status(page.camera(query)))
            elif path == "/api/config":
                self._json(redact(page.source.config()))
            elif path == "/metrics" and page.source.metrics is not None:
                self._send(HTTPStatus.OK, page.source.metrics(), page.source.metrics_type)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("status page: %s failed", path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain")

    def _json(self, data: Any) -> None:
        self._send(HTTPStatus.OK, json.dumps(data, default=str).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
