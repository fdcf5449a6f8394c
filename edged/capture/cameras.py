"""List the cameras attached to this machine: libcamera's (through picamera2, when
installed) and V4L2 nodes.  Reads files only; nothing happens at import time."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)

_VIDEO_RE = re.compile(r"video(\d+)")


@dataclass(frozen=True)
class Camera:
    """A camera: ``kind`` is "picamera2" (libcamera) or "v4l2" (a /dev/video node)."""

    kind: str
    path: str
    model: str


def list_cameras(dev: Path = Path("/dev"), sysfs: Path = Path("/sys")) -> list[Camera]:
    """Cameras libcamera knows about (through picamera2, if installed), then V4L2 nodes.

    On a Pi the V4L2 list also holds the ISP and codec nodes; their ``model``
    (the sysfs name) tells them apart.
    """
    return _list_picamera2() + _list_v4l2(dev, sysfs)


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


def _list_v4l2(dev: Path, sysfs: Path) -> list[Camera]:
    nodes: list[tuple[int, str]] = []
    try:
        entries = list(dev.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _VIDEO_RE.fullmatch(entry.name)
        if match:
            nodes.append((int(match.group(1)), entry.name))
    cameras: list[Camera] = []
    for _, name in sorted(nodes):
        model = _read_text(sysfs / "class" / "video4linux" / name / "name") or ""
        cameras.append(Camera(kind="v4l2", path=str(dev / name), model=model))
    return cameras


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
