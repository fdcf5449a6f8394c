"""A stand-in for libcamera's Python bindings (``import libcamera``), beneath the real
picamera2 package, on machines without a Pi camera.

It offers what picamera2 0.3.38 touches when it is imported and when its ``IMX500`` helper
runs: the geometry types (``Rectangle``, ``Size`` with the methods of libcamera's
``geometry.h`` that picamera2 calls), the enums and control/property ids read at import,
``CameraManager.singleton().cameras`` (each camera with ``id`` and a ``properties`` dict keyed
by ``ControlId``), and ``Request`` objects whose ``metadata`` maps ``ControlId`` to values as
the bindings return them (array controls come as tuples: ``CnnOutputTensor`` of float32,
``CnnOutputTensorInfo`` of bytes laid out as libcamera's ``CnnOutputTensorInfoExported``,
``CnnKpiInfo``: two int32 microsecond values).

Cameras come from ``FAKE_IMX500_CAMERAS`` (comma-separated sensor models, default
``imx500``).  Importing this package also installs the simulated IMX500 sensor, kernel and
camera of :mod:`imx500_sim` (they hook the real ``picamera2`` modules as they load).
"""

from __future__ import annotations

import enum
import importlib
import os
from typing import Any


class Size:
    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width = int(width)
        self.height = int(height)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    def __repr__(self) -> str:
        return f"{self.width}x{self.height}"

    def bounded_to(self, bound: Size) -> Size:
        return Size(min(self.width, bound.width), min(self.height, bound.height))

    def bounded_to_aspect_ratio(self, ratio: Size) -> Size:
        w = self.height * ratio.width // ratio.height
        if w <= self.width:
            return Size(w, self.height)
        return Size(self.width, self.width * ratio.height // ratio.width)

    def centered_to(self, center: Point) -> Rectangle:
        return Rectangle(
            center.x - self.width // 2, center.y - self.height // 2, self.width, self.height
        )


class Point:
    def __init__(self, x: int = 0, y: int = 0) -> None:
        self.x = int(x)
        self.y = int(y)

    def __neg__(self) -> Point:
        return Point(-self.x, -self.y)


class Rectangle:
    def __init__(self, *args: Any) -> None:
        if len(args) == 2:  # (Point, Size)
            p, s = args
            args = (p.x, p.y, s.width, s.height)
        x, y, w, h = ((*args, 0, 0, 0, 0))[:4] if args else (0, 0, 0, 0)
        self.x, self.y, self.width, self.height = int(x), int(y), int(w), int(h)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rectangle) and (self.x, self.y, self.width, self.height) == (
            other.x,
            other.y,
            other.width,
            other.height,
        )

    def __repr__(self) -> str:
        return f"({self.x}, {self.y})/{self.width}x{self.height}"

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    @property
    def topLeft(self) -> Point:
        return Point(self.x, self.y)

    @property
    def center(self) -> Point:
        return Point(self.x + self.width // 2, self.y + self.height // 2)

    def bounded_to(self, b: Rectangle) -> Rectangle:
        x0, y0 = max(self.x, b.x), max(self.y, b.y)
        x1 = min(self.x + self.width, b.x + b.width)
        y1 = min(self.y + self.height, b.y + b.height)
        return Rectangle(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def enclosed_in(self, b: Rectangle) -> Rectangle:
        w, h = min(self.width, b.width), min(self.height, b.height)
        x = min(max(self.x, b.x), b.x + b.width - w)
        y = min(max(self.y, b.y), b.y + b.height - h)
        return Rectangle(x, y, w, h)

    def scaled_by(self, numerator: Size, denominator: Size) -> Rectangle:
        return Rectangle(
            self.x * numerator.width // denominator.width,
            self.y * numerator.height // denominator.height,
            self.width * numerator.width // denominator.width,
            self.height * numerator.height // denominator.height,
        )

    def translated_by(self, p: Point) -> Rectangle:
        return Rectangle(self.x + p.x, self.y + p.y, self.width, self.height)


class Transform:
    def __init__(
        self, other: Transform | None = None, hflip: int = 0, vflip: int = 0, transpose: int = 0
    ) -> None:
        if other is not None:
            hflip, vflip, transpose = other.hflip, other.vflip, other.transpose
        self.hflip: bool = bool(hflip)
        self.vflip: bool = bool(vflip)
        self.transpose: bool = bool(transpose)

    def __str__(self) -> str:
        flips = f"hflip={self.hflip} vflip={self.vflip} transpose={self.transpose}"
        return f"<libcamera.Transform {flips}>"

    def __hash__(self) -> int:
        return hash((self.hflip, self.vflip, self.transpose))


class ColorSpace:
    class YcbcrEncoding(enum.Enum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.Enum):
        Full = 0
        Limited = 1

    def __init__(
        self,
        other: ColorSpace | None = None,
        primaries: str = "",
        transferFunction: str = "",
        ycbcrEncoding: Any = None,
        range: Any = None,
    ) -> None:
        if other is not None:
            primaries, transferFunction = other.primaries, other.transferFunction
            ycbcrEncoding, range = other.ycbcrEncoding, other.range
        self.primaries: str = primaries
        self.transferFunction: str = transferFunction
        self.ycbcrEncoding: Any = ycbcrEncoding
        self.range: Any = range

    def __str__(self) -> str:
        return f"<libcamera.ColorSpace {self.primaries}/{self.transferFunction}>"

    def __hash__(self) -> int:
        return hash((self.primaries, self.transferFunction))

    @staticmethod
    def Raw() -> ColorSpace:
        return ColorSpace(
            None, "Raw", "Linear", ColorSpace.YcbcrEncoding.Null, ColorSpace.Range.Full
        )

    @staticmethod
    def Sycc() -> ColorSpace:
        return ColorSpace(
            None, "Rec709", "Srgb", ColorSpace.YcbcrEncoding.Rec601, ColorSpace.Range.Full
        )

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace(
            None, "Smpte170m", "Rec709", ColorSpace.YcbcrEncoding.Rec601, ColorSpace.Range.Limited
        )

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace(
            None, "Rec709", "Rec709", ColorSpace.YcbcrEncoding.Rec709, ColorSpace.Range.Limited
        )


class Orientation(enum.Enum):
    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate90 = 7
    Rotate270Mirror = 8


class StreamRole(enum.Enum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


class ControlType(enum.Enum):
    None_ = 0
    Bool = 1
    Byte = 2
    Integer32 = 4
    Integer64 = 5
    Float = 6
    String = 7
    Rectangle = 8
    Size = 9


class ControlId:
    """A control or property id: the bindings' dict keys, with a ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"libcamera.ControlId({self.name})"


class _Ids:
    """A namespace of ids created on first use (``controls.ExposureTime``...)."""

    def __init__(self) -> None:
        self._ids: dict[str, ControlId] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._ids:
            self._ids[name] = ControlId(name)
        return self._ids[name]


class _Draft(_Ids):
    class NoiseReductionModeEnum(enum.Enum):
        Off = 0
        Fast = 1
        HighQuality = 2
        Minimal = 3
        ZSL = 4

    class ColorFilterArrangementEnum(enum.Enum):
        RGGB = 0
        GRBG = 1
        GBRG = 2
        BGGR = 3
        RGB = 4
        MONO = 5


class _Controls(_Ids):
    draft = _Draft()

    class ExposureTimeModeEnum(enum.Enum):
        Auto = 0
        Manual = 1

    class AnalogueGainModeEnum(enum.Enum):
        Auto = 0
        Manual = 1


controls = _Controls()
properties = _Ids()
properties.draft = _Draft()  # type: ignore[attr-defined]


class Request:
    """A completed request: ``metadata`` maps :class:`ControlId` to values, ``buffers``
    maps streams to frame buffers (pixels here are the simulation's)."""

    class Status(enum.Enum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    def __init__(
        self, metadata: dict[ControlId, Any], buffers: dict[Any, Any] | None = None
    ) -> None:
        self.metadata = metadata
        self.buffers = buffers or {}
        self.status = Request.Status.Complete

    def reuse(self) -> None:
        pass


class _Camera:
    def __init__(self, model: str, index: int) -> None:
        self.id = f"/base/axi/pcie@120000/rp1/i2c@88000/{model}@1a"
        if index:
            self.id = f"/base/axi/pcie@120000/rp1/i2c@80000/{model}@1a"
        self.properties = {
            properties.Model: model,
            properties.Location: 2,
            properties.Rotation: 0,
        }


class CameraManager:
    _instance: CameraManager | None = None

    def __init__(self) -> None:
        models = [
            m.strip()
            for m in os.environ.get("FAKE_IMX500_CAMERAS", "imx500").split(",")
            if m.strip()
        ]
        self.cameras = [_Camera(m, i) for i, m in enumerate(models)]
        self.event_fd = -1

    @classmethod
    def singleton(cls) -> CameraManager:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


# names picamera2 reads only inside functions a simulated camera never calls
class _Unsimulated:
    def __init__(self, *a: Any, **k: Any) -> None:
        raise RuntimeError("not simulated by the fake libcamera")


PixelFormat = FrameBufferAllocator = FrameBuffer = SensorConfiguration = Camera = _Unsimulated
CameraConfiguration = _Unsimulated


class FrameMetadata:
    class Status(enum.Enum):
        Success = 0
        Error = 1
        Cancelled = 2


importlib.import_module("imx500_sim").install()  # the simulated sensor beneath picamera2
