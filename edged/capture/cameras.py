"""List the cameras attached to this machine: libcamera's (through picamera2, when
installed) and V4L2 nodes with their capture modes.  Nothing happens at import time; the
V4L2 modes are read with the kernel's enumeration ioctls (``ioctl`` is a parameter so the
scan can run against a fake device)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOG = logging.getLogger(__name__)

_VIDEO_RE = re.compile(r"video(\d+)")


@dataclass(frozen=True)
class V4l2Mode:
    """One capture mode of a V4L2 camera: ``format`` is FFmpeg's name for the pixel format
    ("mjpeg", "yuyv422", ...; else the fourcc), ``fps`` the discrete frame rates offered."""

    format: str
    width: int
    height: int
    fps: tuple[float, ...] = ()

    def __str__(self) -> str:
        rates = "/".join(f"{f:g}" for f in self.fps)
        return f"{self.format} {self.width}x{self.height}" + (f" @ {rates} fps" if rates else "")


@dataclass(frozen=True)
class Camera:
    """A camera: ``kind`` is "picamera2" (libcamera) or "v4l2" (a /dev/video node).
    V4L2 cameras carry their stable ``/dev/v4l/by-id`` name and capture modes when known."""

    kind: str
    path: str
    model: str
    by_id: str = ""
    modes: tuple[V4l2Mode, ...] = ()


def list_cameras(
    dev: Path = Path("/dev"), sysfs: Path = Path("/sys"), ioctl: Ioctl | None = None
) -> list[Camera]:
    """Cameras libcamera knows about (through picamera2, if installed), then V4L2 nodes.

    On a Pi the V4L2 list also holds the ISP and codec nodes; their ``model``
    (the sysfs name) tells them apart.
    """
    return _list_picamera2() + _list_v4l2(dev, sysfs, ioctl)


def _list_picamera2() -> list[Camera]:
    try:
        from picamera2 import Picamera2
    except ImportError:
        return []
    except Exception as exc:  # picamera2 can fail in other ways when libcamera is broken
        _LOG.warning("picamera2 could not be imported: %s", exc)
        return []
    try:
        infos = Picamera2.global_camera_info()
    except Exception as exc:
        _LOG.warning("picamera2 could not list cameras: %s", exc)
        return []
    cameras: list[Camera] = []
    for info in infos:
        if not isinstance(info, dict):
            continue
        cameras.append(
            Camera(
                kind="picamera2",
                path=str(info.get("Id", info.get("Num", ""))),
                model=str(info.get("Model", "")),
            )
        )
    return cameras


def _list_v4l2(dev: Path, sysfs: Path, ioctl: Ioctl | None = None) -> list[Camera]:
    nodes: list[tuple[int, str]] = []
    try:
        entries = list(dev.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _VIDEO_RE.fullmatch(entry.name)
        if match:
            nodes.append((int(match.group(1)), entry.name))
    by_id: dict[str, str] = {}
    try:
        for link in sorted((dev / "v4l" / "by-id").iterdir()):
            by_id.setdefault(Path(os.path.realpath(link)).name, str(link))
    except OSError:
        pass
    cameras: list[Camera] = []
    for _, name in sorted(nodes):
        model = _read_text(sysfs / "class" / "video4linux" / name / "name") or ""
        modes = tuple(v4l2_modes(dev / name, ioctl))
        cameras.append(
            Camera(
                kind="v4l2",
                path=str(dev / name),
                model=model,
                by_id=by_id.get(name, ""),
                modes=modes,
            )
        )
    return cameras


# --- V4L2 modes: the kernel's VIDIOC_ENUM_* ioctls (what v4l2-ctl --list-formats-ext does) ---

Ioctl = Callable[[int, int, bytearray], object]


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


VIDIOC_QUERYCAP = _ioc(2, 0, 104)
VIDIOC_ENUM_FMT = _ioc(3, 2, 64)
VIDIOC_ENUM_FRAMESIZES = _ioc(3, 74, 44)
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(3, 75, 52)
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_CAP_VIDEO_CAPTURE = 0x1
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_DISCRETE = 1
# fourcc -> FFmpeg's v4l2 input_format name
FOURCC_NAMES = {"MJPG": "mjpeg", "JPEG": "mjpeg", "YUYV": "yuyv422", "H264": "h264"}
# the steps a stepwise or continuous size range is sampled at
STEPWISE_SIZES = ((320, 240), (640, 480), (800, 600), (1280, 720), (1920, 1080))


def _default_ioctl(fd: int, request: int, buf: bytearray) -> object:
    return fcntl.ioctl(fd, request, buf, True)


def v4l2_modes(path: str | Path, ioctl: Ioctl | None = None) -> list[V4l2Mode]:
    """The capture modes of a V4L2 node, smallest first per format; [] when it is not a
    capture device or cannot be opened (busy, gone, no permission)."""
    call = ioctl or _default_ioctl
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        _LOG.debug("cannot open %s: %s", path, exc)
        return []
    try:
        cap = bytearray(104)
        call(fd, VIDIOC_QUERYCAP, cap)
        caps, device_caps = struct.unpack_from("<II", cap, 84)
        if caps & V4L2_CAP_DEVICE_CAPS:
            caps = device_caps
        if not caps & V4L2_CAP_VIDEO_CAPTURE:
            return []
        modes: list[V4l2Mode] = []
        for fourcc in _enum(call, fd, VIDIOC_ENUM_FMT, _fmtdesc):
            modes.extend(_sizes(call, fd, fourcc))
        return modes
    except OSError as exc:
        _LOG.debug("%s: no V4L2 modes: %s", path, exc)
        return []
    finally:
        os.close(fd)


def _enum(call: Ioctl, fd: int, request: int, build: Callable[[int], bytearray]) -> list[Any]:
    """Run an enumerating ioctl with index 0, 1, ... until the driver says EINVAL."""
    out: list[Any] = []
    for index in range(256):
        buf = build(index)
        try:
            call(fd, request, buf)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
        out.append(_parse(request, buf))
    return out


def _fmtdesc(index: int) -> bytearray:
    buf = bytearray(64)
    struct.pack_into("<II", buf, 0, index, V4L2_BUF_TYPE_VIDEO_CAPTURE)
    return buf


def _parse(request: int, buf: bytearray) -> Any:
    if request == VIDIOC_ENUM_FMT:
        return struct.unpack_from("<I", buf, 44)[0]
    return bytes(buf)


def _fourcc_name(fourcc: int) -> str:
    code = fourcc.to_bytes(4, "little").decode("ascii", "replace")
    return FOURCC_NAMES.get(code, code.strip())


def _sizes(call: Ioctl, fd: int, fourcc: int) -> list[V4l2Mode]:
    def build(index: int) -> bytearray:
        buf = bytearray(44)
        struct.pack_into("<II", buf, 0, index, fourcc)
        return buf

    sizes: list[tuple[int, int]] = []
    for raw in _enum(call, fd, VIDIOC_ENUM_FRAMESIZES, build):
        kind = struct.unpack_from("<I", raw, 8)[0]
        if kind == V4L2_FRMSIZE_TYPE_DISCRETE:
            sizes.append(struct.unpack_from("<II", raw, 12))
        else:  # stepwise or continuous: one range, sampled at common sizes
            min_w, max_w, _, min_h, max_h, _ = struct.unpack_from("<6I", raw, 12)
            sizes.extend(
                (w, h) for w, h in STEPWISE_SIZES if min_w <= w <= max_w and min_h <= h <= max_h
            )
            break
    name = _fourcc_name(fourcc)
    return [
        V4l2Mode(name, w, h, _rates(call, fd, fourcc, w, h))
        for w, h in sorted(set(sizes), key=lambda s: (s[0] * s[1], s))
    ]


def _rates(call: Ioctl, fd: int, fourcc: int, width: int, height: int) -> tuple[float, ...]:
    def build(index: int) -> bytearray:
        buf = bytearray(52)
        struct.pack_into("<IIII", buf, 0, index, fourcc, width, height)
        return buf

    rates: list[float] = []
    for raw in _enum(call, fd, VIDIOC_ENUM_FRAMEINTERVALS, build):
        kind, num, den = struct.unpack_from("<III", raw, 16)
        if kind != V4L2_FRMIVAL_TYPE_DISCRETE:
            break
        if num:
            rates.append(round(den / num, 3))
    return tuple(sorted(set(rates), reverse=True))


def pick_mode(
    modes: Sequence[V4l2Mode], input_format: str, want: tuple[int, int]
) -> V4l2Mode | None:
    """The smallest mode of ``input_format`` whose both sides cover ``want`` (width,
    height); the largest one when none does; None when the format is not offered."""
    offered = [m for m in modes if m.format == input_format]
    if not offered:
        return None
    covering = [m for m in offered if m.width >= want[0] and m.height >= want[1]]
    if covering:
        return min(covering, key=lambda m: (m.width * m.height, m.width))
    return max(offered, key=lambda m: (m.width * m.height, m.width))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
