"""IP cameras: ``rtsp://``, ``rtsps://`` and ``http(s)://`` streams (MJPEG, or anything FFmpeg
reads) through PyAV, with reconnects.

RTSP runs over TCP by default.  Credentials come from ``capture.password_file`` or the
systemd credential ``camera_password``, never from the URL in the config: for HTTP they go
in a basic ``Authorization`` header, for RTSP into the URL handed to FFmpeg only.  Every
message this source logs or reports has them removed.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any
from urllib.parse import quote, urlsplit

from edged.capture.base import register
from edged.capture.live import LiveSource, SourceError
from edged.config import StreamCaptureConfig, read_secret, redact_url

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
# FFmpeg probes a live input for 5 s by default; a second is plenty for one video stream
PROBE_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@", re.IGNORECASE)


class StreamConfigError(ValueError):
    pass


@register
class StreamSource(LiveSource):
    type_key = "stream"

    def __init__(self, cfg: StreamCaptureConfig, input_size: tuple[int, int]) -> None:
        self.cfg = cfg
        parts = urlsplit(cfg.url)
        self.scheme = parts.scheme
        super().__init__(
            f"{parts.scheme}://{parts.netloc}{parts.path}",
            input_size,
            reconnect_min_s=cfg.reconnect_min_s,
            reconnect_max_s=cfg.reconnect_max_s,
            stall_s=cfg.stall_s,
        )
        password = read_secret(cfg.password_file, cfg.credential)
        if password and not cfg.username:
            raise StreamConfigError(
                "a camera password is set but capture.username is empty (HTTP basic auth and "
                "RTSP need both)"
            )
        self._secrets = [s for s in {password, quote(password or "", safe="")} if s]
        self._password = password or ""
        try:
            import av
        except ImportError as exc:
            raise StreamConfigError(
                "capture.type 'stream' needs PyAV (pip install 'edged[video]')"
            ) from exc
        self._av = av

    def describe(self) -> str:
        user = f", user {self.cfg.username}" if self.cfg.username else ""
        transport = f" over {self.cfg.rtsp_transport.upper()}" if self.is_rtsp else ""
        return f"stream {redact_url(self.cfg.url)}{transport}{user}"

    @property
    def is_rtsp(self) -> bool:
        return self.scheme in ("rtsp", "rtsps")

    def interrupt_port(self) -> int | None:
        parts = urlsplit(self.cfg.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    def redact(self, text: str) -> str:
        """``text`` (an FFmpeg message may quote the URL) without the password or any
        ``user:password@`` part of a URL in it."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _USERINFO.sub(r"\1***@", text)

    def _target(self) -> tuple[str, dict[str, str]]:
        cfg = self.cfg
        options = dict(PROBE_OPTIONS)
        url = cfg.url
        if self.is_rtsp:
            options["rtsp_transport"] = cfg.rtsp_transport
            if cfg.username:
                user = quote(cfg.username, safe="")
                secret = f":{quote(self._password, safe='')}" if self._password else ""
                parts = urlsplit(url)
                url = parts._replace(netloc=f"{user}{secret}@{parts.netloc}").geturl()
        elif cfg.username:
            token = base64.b64encode(f"{cfg.username}:{self._password}".encode()).decode()
            options["headers"] = f"Authorization: Basic {token}\r\n"
        options.update(cfg.ffmpeg_options)
        return url, options

    def connect(self) -> Any:
        url, options = self._target()
        return self._av.open(
            url,
            mode="r",
            options=options,
            timeout=(self.cfg.connect_timeout_s, self.cfg.read_timeout_s),
        )

    def explain(self, exc: Exception) -> SourceError:
        av = self._av
        detail = self.redact(str(exc))
        if isinstance(exc, av.HTTPUnauthorizedError | av.HTTPForbiddenError):
            return SourceError(
                f"the camera refused the credentials ({detail}); check capture.username and "
                "the password in capture.password_file or the camera_password credential",
                permanent=True,
            )
        if isinstance(exc, av.HTTPNotFoundError):
            return SourceError(f"no stream at this URL ({detail})", permanent=True)
        if isinstance(exc, av.InvalidDataError):
            return SourceError(
                f"it does not serve a video stream FFmpeg can read, e.g. a web page instead "
                f"of the stream's URL ({detail})",
                permanent=True,
            )
        if isinstance(exc, av.ExitError):
            return SourceError(
                f"no answer within {self.cfg.connect_timeout_s:g} s (connect) or "
                f"{self.cfg.read_timeout_s:g} s (read)"
            )
        return SourceError(detail)
