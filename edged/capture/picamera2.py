"""The Raspberry Pi camera through picamera2 (libcamera).

The ISP scales frames to (about) the model's input size, so the CPU never resizes full
frames.  picamera2 comes from Pi OS (``apt install python3-picamera2``); it is imported
when this source is opened, never at import time.

A camera that is not there (picamera2 missing, no camera detected) is an error for a
one-shot command.  The daemon opens the source with ``wait=True``: it then starts without
the camera, says what is missing (health, ``systemctl status``, one log line) and tries again
every ``retry_s``, since restarting the service cannot bring a camera.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from edged.capture.base import Frame, FrameSource, Framing, register
from edged.config import Picamera2CaptureConfig, RegionConfig
from edged.wire import HEALTH_FIELDS as H

log = logging.getLogger(__name__)

# libcamera names formats by their 32-bit word order: "BGR888" is R, G, B in memory, which is
# the RGB array edged wants.
RGB_FORMAT = "BGR888"


class CameraError(RuntimeError):
    pass


class CameraAbsent(CameraError):
    """No camera to open: picamera2 is not installed, or no camera is detected."""


RETRY_S = 10.0  # between attempts to open a camera that is not there


def _covering(want: tuple[int, int], aspect: float) -> tuple[int, int]:
    """The smallest (width, height) of the given aspect that covers ``want``, even-sized."""
    width = max(want[0], math.ceil(want[1] * aspect))
    height = max(want[1], math.ceil(width / aspect))
    return width + width % 2, height + height % 2


@register
class Picamera2Source(FrameSource):
    type_key = "picamera2"
    live = True
    crops_one_region = True
    frames_on_device = True
    waits_for_device = True

    def __init__(
        self,
        cfg: Picamera2CaptureConfig,
        input_size: tuple[int, int],
        framing: Framing | None = None,
        *,
        wait: bool = False,
        retry_s: float = RETRY_S,
    ) -> None:
        """``wait``: a camera that is not there is waited for (see the module) instead of
        raising :class:`CameraAbsent`."""
        super().__init__()
        self.cfg = cfg
        self.retry_s = retry_s
        # the model's center crop by the ISP: frames arrive at the model's size, final
        center = (
            framing
            if framing is not None
            and framing.crop_fraction < 1.0
            and cfg.stream == "main"
            and not (cfg.width or cfg.height or cfg.regions)
            else None
        )
        if center is not None:
            input_size = center.size
        self._input_size = input_size
        self._center = center
        self._region = cfg.regions[0] if len(cfg.regions) == 1 else None
        # known from the configuration, camera or not: the pipeline reads it at start
        self.cropped_region = self._region.name if self._region is not None else None
        self._cam: Any = None
        self._started = False
        self.absent_reason: str | None = None
        try:
            self._open()
        except CameraAbsent as exc:
            if not wait:
                raise
            self.absent_reason = str(exc)
            log.warning("%s; waiting for it (trying again every %g s)", exc, retry_s)

    def _open(self) -> None:
        cfg = self.cfg
        width = cfg.width or self._input_size[0]
        height = cfg.height or self._input_size[1]
        try:
            importlib.invalidate_caches()  # a package installed while the daemon waited
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraAbsent(
                "capture.type 'picamera2' needs picamera2 (on Raspberry Pi OS: "
                f"apt install python3-picamera2, and a venv with --system-site-packages): {exc}"
            ) from exc
        try:
            cam: Any = Picamera2(cfg.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise CameraAbsent(
                f"camera {cfg.camera_num} cannot be opened: {exc} (is a camera connected? "
                "rpicam-hello --list-cameras lists those detected)"
            ) from exc
        try:  # the camera is ours from here: a failed configure must not leave it open
            region = self._region
            if region is not None and not cfg.width:
                # the ISP scales the region, not the frame: keep the region's own aspect
                pw, ph = cam.camera_properties["PixelArraySize"]
                width, height = _covering(
                    self._input_size, region.width * pw / (region.height * ph)
                )
            small = {"size": (width, height), "format": RGB_FORMAT}
            controls = {"FrameRate": cfg.fps}
            if cfg.stream == "lores":
                config = cam.create_video_configuration(
                    main={"size": (cfg.main_width, cfg.main_height), "format": RGB_FORMAT},
                    lores=small,
                    controls=controls,
                    buffer_count=4,
                )
            else:
                config = cam.create_video_configuration(
                    main=small, controls=controls, buffer_count=4
                )
            cam.align_configuration(config)
            cam.configure(config)
            self._cam = cam
            size = config[cfg.stream]["size"]
            log.info(
                "camera %d: %s stream %sx%s %s at %g fps",
                cfg.camera_num,
                cfg.stream,
                size[0],
                size[1],
                RGB_FORMAT,
                cfg.fps,
            )
            if region is not None:
                self._crop_on_isp(region)
            elif self._center is not None:
                self._crop_center_on_isp(self._center.crop_fraction)
        except BaseException:
            self._cam = None
            cam.close()
            raise

    def absent(self) -> str | None:
        return self.absent_reason

    def _wait_for_camera(self, stop: threading.Event) -> bool:
        """Try to open the camera every ``retry_s`` until it opens (True) or ``stop``."""
        while not stop.wait(self.retry_s):
            try:
                self._open()
            except CameraAbsent as exc:
                if str(exc) != self.absent_reason:
                    log.warning("%s; still waiting for it", exc)
                self.absent_reason = str(exc)
                continue
            log.info("camera %d found", self.cfg.camera_num)
            self.absent_reason = None
            return True
        return False

    def _crop_on_isp(self, region: RegionConfig) -> None:
        """One region: the ISP crops it (``ScalerCrop``, in pixel-array coordinates within
        the configured mode's largest crop), so the CPU never sees the rest of the frame."""
        _, (x0, y0, w, h), _ = self._cam.camera_controls["ScalerCrop"]
        rect = (
            x0 + round(region.x * w),
            y0 + round(region.y * h),
            max(1, round(region.width * w)),
            max(1, round(region.height * h)),
        )
        self._cam.set_controls({"ScalerCrop": rect})
        self.cropped_region = region.name
        log.info(
            "camera %d: region %r cropped by the ISP: ScalerCrop %s",
            self.cfg.camera_num,
            region.name,
            rect,
        )

    def _crop_center_on_isp(self, fraction: float) -> None:
        """The model's center crop (a square of ``fraction`` of the shorter side) by the
        ISP, which then scales it to the stream's size: the same framing as cropping the
        frame on the CPU, at no CPU cost."""
        _, (x0, y0, w, h), _ = self._cam.camera_controls["ScalerCrop"]
        side = max(1, round(min(w, h) * fraction))
        rect = (x0 + (w - side) // 2, y0 + (h - side) // 2, side, side)
        self._cam.set_controls({"ScalerCrop": rect})
        log.info(
            "camera %d: the model's center crop (%g) by the ISP: ScalerCrop %s",
            self.cfg.camera_num,
            fraction,
            rect,
        )

    def describe(self) -> str:
        return f"picamera2 (camera {self.cfg.camera_num}, {self.cfg.stream} stream)"

    def status(self) -> dict[str, Any]:
        if self.absent_reason is None:
            return {}
        return {H.source_state: "connecting", H.source_error: self.absent_reason}

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        if self._cam is None and not self._wait_for_camera(stop):
            return
        self._cam.start()
        self._started = True
        number = 0
        while not stop.is_set():
            array = self._cam.capture_array(self.cfg.stream)
            if array is None:
                self.skipped += 1
                continue
            image = np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)
            number += 1
            yield Frame(number, image, f"camera{self.cfg.camera_num}", time.time())

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._cam is None:
            return
        try:
            if self._started:
                self._cam.stop()
        finally:
            self._cam.close()
