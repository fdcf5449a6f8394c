"""A USB webcam for machines without /dev/video: both sides edged talks to.

- The kernel: ``ioctl(fd, VIDIOC_QUERYCAP / ENUM_FMT / ENUM_FRAMESIZES /
  ENUM_FRAMEINTERVALS, buf)`` answered with the structs' real layouts (videodev2.h), and
  EINVAL past the last entry, for a device node that is a plain file.
- PyAV: ``av.open(file, format="v4l2", options={...})``.  Like FFmpeg's v4l2 input it takes
  ``input_format`` (mjpeg / yuyv422; another one is EINVAL), ``video_size`` (the driver
  picks its nearest mode) and ``framerate``.  What it returns is PyAV's own container
  demuxing a real MJPEG or raw YUYV 4:2:2 stream made from a photo at the chosen size,
  looped and paced at the frame rate like a camera (ENODEV once unplugged);
  ``container.streams.video``,
  ``demux``, ``packet.decode()``, ``frame.to_ndarray`` are the real library's.  Any other
  ``av.open`` goes to PyAV unchanged.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from edged.capture import cameras as devices

FOURCC = {"mjpeg": b"MJPG", "yuyv422": b"YUYV"}


@dataclass
class FakeCamera:
    path: Path
    image: Path
    modes: dict[str, list[tuple[int, int]]]  # FFmpeg format name -> sizes
    fps: tuple[float, ...] = (30.0, 15.0)
    opened: list[dict[str, str]] = field(default_factory=list)  # options of each av.open
    unplugged: threading.Event = field(default_factory=threading.Event)


class FakeV4l2:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cameras: dict[str, FakeCamera] = {}
        self._real_open: Callable[..., Any] = av.open
        monkeypatch.setattr(av, "open", self.open)
        monkeypatch.setattr(devices, "_default_ioctl", self.ioctl)

    def add(self, camera: FakeCamera) -> FakeCamera:
        camera.path.touch()
        self.cameras[os.path.realpath(camera.path)] = camera
        return camera

    def unplug(self, camera: FakeCamera) -> None:
        camera.unplugged.set()
        camera.path.unlink()
        del self.cameras[os.path.realpath(camera.path)]

    def replug(self, camera: FakeCamera) -> None:
        camera.unplugged.clear()
        self.add(camera)

    # -- the kernel --------------------------------------------------------------------------
    def ioctl(self, fd: int, request: int, buf: bytearray) -> None:
        camera = self.cameras.get(os.readlink(f"/proc/self/fd/{fd}"))
        if camera is None:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        formats = list(camera.modes)
        if request == devices.VIDIOC_QUERYCAP:
            struct.pack_into("<16s32s32s", buf, 0, b"uvcvideo", b"Fake Webcam", b"usb-1")
            struct.pack_into("<III", buf, 80, 0x060100, 0x84A00001, 0x04200001)
        elif request == devices.VIDIOC_ENUM_FMT:
            index, kind = struct.unpack_from("<II", buf, 0)
            if kind != 1 or index >= len(formats):
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("<I32sI", buf, 8, 0, formats[index].encode(), 0)
            struct.pack_into("<4s", buf, 44, FOURCC[formats[index]])
        elif request == devices.VIDIOC_ENUM_FRAMESIZES:
            index, fourcc = struct.unpack_from("<II", buf, 0)
            sizes = self._sizes(camera, fourcc)
            if index >= len(sizes):
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("<III", buf, 8, 1, *sizes[index])
        elif request == devices.VIDIOC_ENUM_FRAMEINTERVALS:
            index, fourcc, width, height = struct.unpack_from("<IIII", buf, 0)
            if (width, height) not in self._sizes(camera, fourcc) or index >= len(camera.fps):
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("<III", buf, 16, 1, 1, int(camera.fps[index]))
        else:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    @staticmethod
    def _sizes(camera: FakeCamera, fourcc: int) -> list[tuple[int, int]]:
        for name, sizes in camera.modes.items():
            if struct.unpack("<I", FOURCC[name])[0] == fourcc:
                return sizes
        raise OSError(errno.EINVAL, "Invalid argument")

    # -- PyAV ----------------------------------------------------------------------------------
    def open(self, file: Any, mode: str = "r", **kwargs: Any) -> Any:
        camera = self.cameras.get(os.path.realpath(str(file)))
        if kwargs.get("format") != "v4l2" or camera is None:
            return self._real_open(file, mode, **kwargs)
        options = dict(kwargs.get("options") or {})
        camera.opened.append(options)
        fmt = options.get("input_format", next(iter(camera.modes)))
        if fmt not in camera.modes:
            raise av.error.ArgumentError(errno.EINVAL, "Invalid argument", str(file))
        sizes = camera.modes[fmt]
        asked = options.get("video_size")
        if asked:
            w, h = (int(v) for v in asked.split("x"))
            size = min(sizes, key=lambda s: abs(s[0] - w) + abs(s[1] - h))
        else:
            size = max(sizes, key=lambda s: s[0] * s[1])
        fps = float(options.get("framerate", camera.fps[0]))
        return _LiveContainer(camera, fmt, size, fps, self._real_open)


class _LiveContainer:
    """PyAV's container over the camera's bytes, reopened when they run out (a camera never
    ends) and paced at the frame rate; it ends when the camera is unplugged."""

    def __init__(
        self, camera: FakeCamera, fmt: str, size: tuple[int, int], fps: float, real_open: Any
    ) -> None:
        self.camera = camera
        self.size = size
        self.fps = fps
        with Image.open(camera.image) as im:
            rgb = np.asarray(im.convert("RGB").resize(size))
        if fmt == "mjpeg":
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
            self._data = buf.getvalue() * 10
            self._open: Callable[[], Any] = lambda: real_open(
                io.BytesIO(self._data), format="mjpeg"
            )
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuyv422")
            self._data = bytes(frame.planes[0]) * 10
            opts = {"video_size": f"{size[0]}x{size[1]}", "pixel_format": "yuyv422"}
            self._open = lambda: real_open(io.BytesIO(self._data), format="rawvideo", options=opts)
        self._inner = self._open()
        self.format = self._inner.format
        self.streams = self._inner.streams

    def demux(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        period = 1.0 / self.fps
        while True:
            for packet in self._inner.demux(*args, **kwargs):
                if packet.size == 0:  # the flush packet at the end of each pass
                    continue
                if self.camera.unplugged.wait(period):
                    # what FFmpeg's v4l2 input raises when VIDIOC_DQBUF fails on a gone device
                    raise av.error.OSError(errno.ENODEV, "No such device", str(self.camera.path))
                yield packet
            self._inner.seek(0)

    def close(self) -> None:
        self._inner.close()
