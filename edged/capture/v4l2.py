"""USB (UVC) webcams through PyAV's v4l2 input.

The camera is asked for the smallest mode of ``capture.input_format`` that covers the model
input (from the modes the driver lists), so a 1080p webcam is not decoded at 1080p to
classify 224 px.  An unplugged camera is reopened with backoff, like a lost stream.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

from edged.capture.base import register
from edged.capture.cameras import V4l2Mode, pick_mode, v4l2_modes
from edged.capture.live import LiveSource, SourceError
from edged.config import V4l2CaptureConfig

log = logging.getLogger(__name__)

BY_ID = Path("/dev/v4l/by-id")
# capture.input_format -> FFmpeg's v4l2 input_format
FFMPEG_FORMATS = {"mjpeg": "mjpeg", "yuyv": "yuyv422"}


class V4l2Error(RuntimeError):
    pass


def resolve_device(name: str, by_id: Path = BY_ID) -> Path:
    """A path as given; a bare name (no ``/``) is a ``/dev/v4l/by-id`` entry."""
    return Path(name) if "/" in name else by_id / name


@register
class V4l2Source(LiveSource):
    type_key = "v4l2"

    def __init__(self, cfg: V4l2CaptureConfig, input_size: tuple[int, int]) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        super().__init__(
            str(self.device),
            input_size,
            reconnect_min_s=0.5,
            reconnect_max_s=min(5.0, cfg.stall_s / 2),
            stall_s=cfg.stall_s,
        )
        self.mode: V4l2Mode | None = None
        try:
            import av
        except ImportError as exc:
            raise V4l2Error("capture.type 'v4l2' needs PyAV (pip install 'edged[video]')") from exc
        self._av = av

    def describe(self) -> str:
        return f"v4l2 {self.device} ({self.cfg.input_format})"

    def options(self) -> dict[str, str]:
        """FFmpeg's v4l2 options: the configured size, else the smallest covering mode."""
        fmt = FFMPEG_FORMATS[self.cfg.input_format]
        options = {"input_format": fmt, "framerate": f"{self.cfg.fps:g}"}
        if self.cfg.width:
            options["video_size"] = f"{self.cfg.width}x{self.cfg.height}"
            return options
        modes = v4l2_modes(self.device)
        mode = pick_mode(modes, fmt, self.want)
        if mode is None and modes:
            offered = sorted({m.format for m in modes})
            raise SourceError(
                f"the camera does not offer input_format {self.cfg.input_format!r} "
                f"(FFmpeg {fmt!r}); it offers {', '.join(offered)}",
                permanent=True,
            )
        if mode is not None:
            if mode != self.mode:
                log.info("%s: mode %s chosen for a %dx%d input", self.name, mode, *self.want)
            self.mode = mode
            options["video_size"] = f"{mode.width}x{mode.height}"
            if mode.fps and self.cfg.fps not in mode.fps:
                # the camera's nearest rate at or above the one asked for, else its fastest
                above = [f for f in mode.fps if f >= self.cfg.fps]
                options["framerate"] = f"{min(above) if above else max(mode.fps):g}"
        return options

    def connect(self) -> Any:
        if not self.device.exists():
            raise SourceError(f"{self.device} is not there (unplugged?)")
        return self._av.open(
            str(self.device), mode="r", format="v4l2", options=self.options(), timeout=(10, 10)
        )

    def explain(self, exc: Exception) -> SourceError:
        av = self._av
        if isinstance(exc, av.PermissionError):
            return SourceError(f"{exc}: the service user needs the 'video' group", permanent=True)
        if isinstance(exc, av.FileNotFoundError) or getattr(exc, "errno", None) == errno.ENODEV:
            return SourceError(f"{self.device} is not there (unplugged?)")
        return SourceError(str(exc))
