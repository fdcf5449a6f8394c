"""A stand-in for kms++'s Python bindings (``pykms``, the python3-kms++ package of
Raspberry Pi OS), which picamera2 imports for its DRM preview window.  edged never opens a
preview, so nothing here draws: the module only lets ``import picamera2`` succeed."""

from __future__ import annotations

from typing import Any


class _PixelFormats:
    def __getattr__(self, name: str) -> str:
        return name


PixelFormat = _PixelFormats()  # enum-like: PixelFormat.RGB888 ...


class Card:
    def __init__(self, *args: Any) -> None:
        raise RuntimeError("no DRM device (preview windows are not simulated)")
