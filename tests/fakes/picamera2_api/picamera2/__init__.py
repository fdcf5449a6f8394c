"""A stand-in for picamera2 on machines without a Pi camera.

It honours the parts of the real API that edged uses, with the real signatures:
``Picamera2(camera_num=0)``, ``create_video_configuration(main={}, lores=None, raw={},
transform=..., colour_space=..., buffer_count=6, controls={}, display="main", encode="main",
queue=True, sensor={}, use_case="video")`` returning a dict per stream, ``align_configuration``,
``configure``, ``start``, ``capture_array(name="main")``, ``stop``, ``close`` (idempotent),
``Picamera2.global_camera_info()``, the ``camera_properties`` dict (``PixelArraySize``,
``ScalerCropMaximum``), the ``camera_controls`` dict (control -> (min, max, default); for
``ScalerCrop`` rectangles (x, y, width, height) in pixel-array coordinates) and
``set_controls``: a ``ScalerCrop`` crops that rectangle of the sensor (the image is laid over
the whole pixel array) before the stream is scaled, as the ISP does.  Frames are drawn from
an image given by ``FAKE_PICAMERA2_IMAGE`` (scaled to the configured stream size), in the
memory order the real library produces for the requested format: "BGR888" is R,G,B per
pixel, "RGB888" is B,G,R.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from PIL import Image

FORMATS = {"BGR888", "RGB888", "XBGR8888", "XRGB8888", "YUV420"}
PIXEL_ARRAY = (4608, 2592)  # imx708 (Camera Module 3)
instances: list[Picamera2] = []


class Picamera2:
    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        cams = self.global_camera_info()
        if camera_num >= len(cams):
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.captured = 0
        self.close_calls = 0
        self.controls: dict[str, Any] = {}
        full = (0, 0, *PIXEL_ARRAY)
        self.camera_properties: dict[str, Any] = {
            "Model": "imx708",
            "PixelArraySize": PIXEL_ARRAY,
            "ScalerCropMaximum": full,
        }
        self.camera_controls: dict[str, Any] = {
            "ScalerCrop": ((0, 0, 64, 64), full, full),
            "FrameRate": (1.0, 120.0, 30.0),
        }
        instances.append(self)

    def set_controls(self, controls: dict[str, Any]) -> None:
        for name, value in controls.items():
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            if name == "ScalerCrop":
                x, y, w, h = (int(v) for v in value)
                _, (mx, my, mw, mh), _ = self.camera_controls["ScalerCrop"]
                if w <= 0 or h <= 0 or x < mx or y < my or x + w > mx + mw or y + h > my + mh:
                    raise RuntimeError(f"ScalerCrop {value} outside {(mx, my, mw, mh)}")
            self.controls[name] = value

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        n = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))
        return [
            {"Model": "imx708", "Location": 2, "Rotation": 0, "Id": f"/base/fake{i}", "Num": i}
            for i in range(n)
        ]

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        def stream(cfg: dict[str, Any] | None, default_fmt: str) -> dict[str, Any] | None:
            if cfg is None:
                return None
            fmt = cfg.get("format", default_fmt)
            if fmt not in FORMATS:
                raise RuntimeError(f"Format {fmt} not supported")
            return {"size": tuple(cfg.get("size", (1280, 720))), "format": fmt}

        return {
            "use_case": use_case,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": stream(main or {}, "XBGR8888"),
            "lores": stream(lores, "YUV420"),
            "controls": dict(controls or {}),
            "display": display,
            "encode": encode,
        }

    def align_configuration(self, config: dict[str, Any]) -> None:
        for name in ("main", "lores"):
            if config.get(name):
                w, h = config[name]["size"]
                config[name]["size"] = ((w + 31) // 32 * 32, (h + 1) // 2 * 2)

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = camera_config

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera is not running")
        assert self.camera_config is not None
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name} is not configured")
        time.sleep(1.0 / float(self.camera_config["controls"].get("FrameRate", 30)))
        w, h = stream["size"]
        with Image.open(os.environ["FAKE_PICAMERA2_IMAGE"]) as opened:
            im = opened.convert("RGB")
            crop = self.controls.get("ScalerCrop")
            if crop is not None:  # the sensor rectangle, mapped onto the image
                sx, sy = im.width / PIXEL_ARRAY[0], im.height / PIXEL_ARRAY[1]
                x, y, cw, ch = crop
                im = im.crop(
                    (round(x * sx), round(y * sy), round((x + cw) * sx), round((y + ch) * sy))
                )
            rgb = np.asarray(im.resize((w, h)))
        self.captured += 1
        if stream["format"] == "BGR888":
            return rgb.copy()
        if stream["format"] == "RGB888":
            return rgb[:, :, ::-1].copy()
        raise RuntimeError(f"capture_array of {stream['format']} is not simulated")

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.close_calls += 1
        if self.started:
            self.stop()
        self.closed = True
