"""libcamera's Python bindings (the ``_libcamera`` extension module), simulated in Python
over simulated camera modules, deep enough for picamera2 0.3.38's own ``Picamera2`` class.

Names, types and semantics follow libcamera's ``src/py/libcamera/`` (``py_main.cpp``,
``py_camera_manager.cpp``, ``py_geometry.cpp``, ``py_transform.cpp``,
``py_color_space.cpp``, ``py_enums.cpp``):

- ``CameraManager.singleton()`` is shared while referenced (the bindings keep a weak
  pointer); its ``event_fd`` is an ``eventfd`` written once per completed request and read
  by ``get_ready_requests()``, which hands over every request completed since;
- ``Camera`` goes through libcamera's states: ``acquire`` (EBUSY when already acquired),
  ``generate_configuration(roles)``, ``configure`` (validated first), ``create_request``,
  ``start(controls)``, ``queue_request`` (only while running), ``stop`` (pending requests
  complete as cancelled), ``release`` (EBUSY while running).  Errors are ``RuntimeError``
  naming the errno, as pybind11 turns libcamera's ``std::system_error`` into;
- ``FrameBuffer.Plane.fd`` duplicates the descriptor it is given (libcamera's
  ``SharedFD``) and closes its copy when the last plane holding it goes;
- a started camera runs a thread of its own (libcamera's pipeline handler): it takes the
  queued requests in order, one per frame period (``FrameDurationLimits``), writes the
  camera module's frame into the request's buffer through its file descriptor (the ISP's
  DMA), fills the buffer's ``FrameMetadata`` and the request's metadata, and completes it.

The camera modules (sensor, frames, the IMX500's network and tensors) are
``imx500_sim``'s: :func:`imx500_sim.attached_cameras`.
"""

from __future__ import annotations

import enum
import errno
import importlib
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

__all__ = [
    "Camera",
    "CameraConfiguration",
    "CameraManager",
    "ColorSpace",
    "ControlId",
    "ControlInfo",
    "ControlType",
    "FrameBuffer",
    "FrameBufferAllocator",
    "FrameMetadata",
    "Orientation",
    "PixelFormat",
    "Point",
    "Rectangle",
    "Request",
    "SensorConfiguration",
    "Size",
    "SizeRange",
    "Stream",
    "StreamConfiguration",
    "StreamFormats",
    "StreamRole",
    "Transform",
    "controls",
    "formats",
    "log_set_level",
    "properties",
]


def _error(code: int, what: str) -> RuntimeError:
    """pybind11's translation of libcamera's ``std::system_error(code, what)``."""
    return RuntimeError(f"{what}: {os.strerror(code)}")


def log_set_level(category: str, level: str) -> None:
    pass


# -- geometry (py_geometry.cpp) ------------------------------------------------------------
class Point:
    def __init__(self, x: int = 0, y: int = 0) -> None:
        self.x = int(x)
        self.y = int(y)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]

    def __neg__(self) -> Point:
        return Point(-self.x, -self.y)

    def __repr__(self) -> str:
        return f"libcamera.Point({self.x}, {self.y})"


class Size:
    def __init__(self, width: int = 0, height: int = 0) -> None:
        if width < 0 or height < 0:
            raise TypeError("Size: width and height are unsigned")
        self.width = int(width)
        self.height = int(height)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    __hash__ = None  # type: ignore[assignment]

    def __lt__(self, other: Size) -> bool:
        return (self.width, self.height) < (other.width, other.height)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    def __repr__(self) -> str:
        return f"libcamera.Size({self.width}, {self.height})"

    @property
    def is_null(self) -> bool:
        return not self.width and not self.height

    def to_tuple(self) -> tuple[int, int]:
        return (self.width, self.height)

    def bounded_to(self, bound: Size) -> Size:
        return Size(min(self.width, bound.width), min(self.height, bound.height))

    def expanded_to(self, bound: Size) -> Size:
        return Size(max(self.width, bound.width), max(self.height, bound.height))

    def aligned_up_to(self, h: int, v: int) -> Size:
        return Size((self.width + h - 1) // h * h, (self.height + v - 1) // v * v)

    def bounded_to_aspect_ratio(self, ratio: Size) -> Size:
        w = self.height * ratio.width // ratio.height
        if w <= self.width:
            return Size(w, self.height)
        return Size(self.width, self.width * ratio.height // ratio.width)

    def centered_to(self, center: Point) -> Rectangle:
        return Rectangle(
            center.x - self.width // 2, center.y - self.height // 2, self.width, self.height
        )


class SizeRange:
    def __init__(
        self, min: Size | None = None, max: Size | None = None, hStep: int = 1, vStep: int = 1
    ) -> None:
        self.min = min or Size()
        self.max = max or self.min
        self.hStep = hStep
        self.vStep = vStep

    def contains(self, size: Size) -> bool:
        return (
            self.min.width <= size.width <= self.max.width
            and self.min.height <= size.height <= self.max.height
            and (size.width - self.min.width) % self.hStep == 0
            and (size.height - self.min.height) % self.vStep == 0
        )


class Rectangle:
    def __init__(self, *args: Any) -> None:
        if len(args) == 1:  # (Size)
            args = (0, 0, args[0].width, args[0].height)
        elif len(args) == 3:  # (x, y, Size)
            args = (args[0], args[1], args[2].width, args[2].height)
        elif len(args) not in (0, 4):
            raise TypeError(f"Rectangle(): incompatible arguments {args!r}")
        x, y, w, h = args or (0, 0, 0, 0)
        self.x, self.y, self.width, self.height = int(x), int(y), int(w), int(h)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rectangle) and self.to_tuple() == other.to_tuple()

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return f"({self.x}, {self.y})/{self.width}x{self.height}"

    def __repr__(self) -> str:
        return f"libcamera.Rectangle({self.x}, {self.y}, {self.width}, {self.height})"

    def to_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    @property
    def is_null(self) -> bool:
        return not self.width and not self.height

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


# -- transform, orientation, colour space (py_transform.cpp, py_color_space.cpp) -----------
class Transform:
    def __init__(
        self,
        rotation: int | Transform = 0,
        hflip: bool = False,
        vflip: bool = False,
        transpose: bool = False,
    ) -> None:
        self.hflip: bool
        self.vflip: bool
        self.transpose: bool
        if isinstance(rotation, Transform):  # the copy constructor
            self.hflip, self.vflip, self.transpose = rotation._key()
            return
        flips = {0: (0, 0, 0), 90: (1, 0, 1), 180: (1, 1, 0), 270: (0, 1, 1)}
        if rotation not in flips:
            raise ValueError("Invalid rotation")
        h, v, t = flips[rotation]
        self.hflip = bool(h) ^ bool(hflip)
        self.vflip = bool(v) ^ bool(vflip)
        self.transpose = bool(t) ^ bool(transpose)

    def _key(self) -> tuple[bool, bool, bool]:
        return (self.hflip, self.vflip, self.transpose)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        names = [n for n, f in zip(("hflip", "vflip", "transpose"), self._key(), strict=True) if f]
        return f"<libcamera.Transform '{'|'.join(names) or 'identity'}'>"


class Orientation(enum.Enum):
    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate90 = 7
    Rotate270Mirror = 8


class ColorSpace:
    class Primaries(enum.Enum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.Enum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

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
        primaries: Any = None,
        transferFunction: Any = None,
        ycbcrEncoding: Any = None,
        range: Any = None,
    ) -> None:
        if isinstance(primaries, ColorSpace):  # the copy constructor
            other = primaries
            primaries, transferFunction = other.primaries, other.transferFunction
            ycbcrEncoding, range = other.ycbcrEncoding, other.range
        self.primaries: Any = primaries
        self.transferFunction: Any = transferFunction
        self.ycbcrEncoding: Any = ycbcrEncoding
        self.range: Any = range

    def _key(self) -> tuple[Any, ...]:
        return (self.primaries, self.transferFunction, self.ycbcrEncoding, self.range)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColorSpace) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return "/".join(str(getattr(v, "name", v)) for v in self._key())

    __repr__ = __str__

    @staticmethod
    def Raw() -> ColorSpace:
        c = ColorSpace
        return c(c.Primaries.Raw, c.TransferFunction.Linear, c.YcbcrEncoding.Null, c.Range.Full)

    @staticmethod
    def Sycc() -> ColorSpace:
        c = ColorSpace
        return c(c.Primaries.Rec709, c.TransferFunction.Srgb, c.YcbcrEncoding.Rec601, c.Range.Full)

    @staticmethod
    def Smpte170m() -> ColorSpace:
        c = ColorSpace
        return c(
            c.Primaries.Smpte170m,
            c.TransferFunction.Rec709,
            c.YcbcrEncoding.Rec601,
            c.Range.Limited,
        )

    @staticmethod
    def Rec709() -> ColorSpace:
        c = ColorSpace
        return c(
            c.Primaries.Rec709, c.TransferFunction.Rec709, c.YcbcrEncoding.Rec709, c.Range.Limited
        )


# -- enums (py_enums.cpp) ------------------------------------------------------------------
class StreamRole(enum.Enum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


class ControlType(enum.Enum):
    None_ = 0
    Bool = 1
    Byte = 2
    Unsigned16 = 3
    Unsigned32 = 4
    Integer32 = 5
    Integer64 = 6
    Float = 7
    String = 8
    Rectangle = 9
    Size = 10
    Point = 11


# -- pixel formats (libcamera's formats.yaml, the ones the Pi's pipeline offers) ----------
# name: (bits per pixel of the first plane, planes' height factor in halves, Bayer/raw)
_FORMATS: dict[str, tuple[int, int, bool]] = {
    "RGB888": (24, 2, False),
    "BGR888": (24, 2, False),
    "XBGR8888": (32, 2, False),
    "XRGB8888": (32, 2, False),
    "YUV420": (8, 3, False),
    "YVU420": (8, 3, False),
    "NV12": (8, 3, False),
    "NV21": (8, 3, False),
    "YUYV": (16, 2, False),
    "SRGGB10_CSI2P": (10, 2, True),
    "SRGGB10": (16, 2, True),
    "SRGGB12_CSI2P": (12, 2, True),
    "SRGGB12": (16, 2, True),
}


class PixelFormat:
    def __init__(self, name: str | PixelFormat = "") -> None:
        name = str(name)
        self._name = name if name in _FORMATS else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PixelFormat) and self._name == other._name

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return self._name or "<INVALID>"

    def __repr__(self) -> str:
        return f"libcamera.PixelFormat('{self}')"

    @property
    def valid(self) -> bool:
        return bool(self._name)


class _Formats:
    def __getattr__(self, name: str) -> PixelFormat:
        if name not in _FORMATS:
            raise AttributeError(name)
        return PixelFormat(name)


formats = _Formats()


def _stride_and_size(fmt: str, size: Size, align: int) -> tuple[int, int]:
    bits, halves, _ = _FORMATS[fmt]
    stride = (size.width * bits + 7) // 8
    stride = (stride + align - 1) // align * align
    return stride, stride * size.height * halves // 2


# -- controls and properties (the generated py_controls / py_properties) -------------------
class ControlId:
    def __init__(
        self, id: int, name: str, type: ControlType, vendor: str = "libcamera", size: int = 0
    ) -> None:
        self._id, self._name, self._type, self._vendor, self._size = id, name, type, vendor, size

    id = property(lambda self: self._id)
    name = property(lambda self: self._name)
    type = property(lambda self: self._type)
    vendor = property(lambda self: self._vendor)
    isArray = property(lambda self: self._size != 0)
    size = property(lambda self: self._size)

    def __str__(self) -> str:
        return str(self._name)

    def __repr__(self) -> str:
        return f"libcamera.ControlId({self._id}, {self._vendor}.{self._name}, {self._type})"


class ControlInfo:
    def __init__(self, min: Any, max: Any, default: Any = None) -> None:
        self.min, self.max, self.default = min, max, default
        self.values: list[Any] = []

    def __repr__(self) -> str:
        return f"libcamera.ControlInfo([{self.min}..{self.max}])"


T = ControlType
N = 1 << 30  # a dynamically sized array
_CONTROLS: list[tuple[str, ControlType, str, int]] = [
    ("AeEnable", T.Bool, "libcamera", 0),
    ("ExposureTimeMode", T.Integer32, "libcamera", 0),
    ("ExposureTime", T.Integer32, "libcamera", 0),
    ("AnalogueGainMode", T.Integer32, "libcamera", 0),
    ("AnalogueGain", T.Float, "libcamera", 0),
    ("AwbEnable", T.Bool, "libcamera", 0),
    ("ColourGains", T.Float, "libcamera", 2),
    ("Brightness", T.Float, "libcamera", 0),
    ("Contrast", T.Float, "libcamera", 0),
    ("Saturation", T.Float, "libcamera", 0),
    ("Sharpness", T.Float, "libcamera", 0),
    ("Lux", T.Float, "libcamera", 0),
    ("ColourTemperature", T.Integer32, "libcamera", 0),
    ("DigitalGain", T.Float, "libcamera", 0),
    ("SensorTimestamp", T.Integer64, "libcamera", 0),
    ("FrameDuration", T.Integer64, "libcamera", 0),
    ("FrameDurationLimits", T.Integer64, "libcamera", 2),
    ("ScalerCrop", T.Rectangle, "libcamera", 0),
    ("ScalerCrops", T.Rectangle, "rpi", N),
    ("SensorBlackLevels", T.Integer32, "libcamera", 4),
    ("CnnOutputTensor", T.Float, "rpi", N),
    ("CnnOutputTensorInfo", T.Byte, "rpi", N),
    ("CnnEnableInputTensor", T.Bool, "rpi", 0),
    ("CnnInputTensor", T.Byte, "rpi", N),
    ("CnnInputTensorInfo", T.Byte, "rpi", N),
    ("CnnKpiInfo", T.Integer32, "rpi", 2),
]
_DRAFT_CONTROLS: list[tuple[str, ControlType, str, int]] = [
    ("NoiseReductionMode", T.Integer32, "draft", 0),
]
_PROPERTIES: list[tuple[str, ControlType, str, int]] = [
    ("Location", T.Integer32, "libcamera", 0),
    ("Rotation", T.Integer32, "libcamera", 0),
    ("Model", T.String, "libcamera", 0),
    ("UnitCellSize", T.Size, "libcamera", 0),
    ("PixelArraySize", T.Size, "libcamera", 0),
    ("PixelArrayActiveAreas", T.Rectangle, "libcamera", N),
    ("ScalerCropMaximum", T.Rectangle, "libcamera", 0),
    ("SensorSensitivity", T.Float, "libcamera", 0),
    ("SystemDevices", T.Integer64, "libcamera", N),
]
_DRAFT_PROPERTIES: list[tuple[str, ControlType, str, int]] = [
    ("ColorFilterArrangement", T.Integer32, "draft", 0),
]


class _Namespace:
    """A generated module of ids (``controls``, ``controls.draft``, ``controls.rpi``...):
    an unknown name is an AttributeError, as in the bindings."""

    def __init__(self, ids: dict[str, ControlId]) -> None:
        self.__dict__.update(ids)


def _ids(table: list[tuple[str, ControlType, str, int]], base: int) -> dict[str, ControlId]:
    return {name: ControlId(base + i, name, t, v, s) for i, (name, t, v, s) in enumerate(table)}


class _ControlsDraft(_Namespace):
    class NoiseReductionModeEnum(enum.IntEnum):
        Off = 0
        Fast = 1
        HighQuality = 2
        Minimal = 3
        ZSL = 4


class _Controls(_Namespace):
    class ExposureTimeModeEnum(enum.IntEnum):
        Auto = 0
        Manual = 1

    class AnalogueGainModeEnum(enum.IntEnum):
        Auto = 0
        Manual = 1


class _PropertiesDraft(_Namespace):
    class ColorFilterArrangementEnum(enum.IntEnum):
        RGGB = 0
        GRBG = 1
        GBRG = 2
        BGGR = 3
        RGB = 4
        MONO = 5


_control_ids = _ids(_CONTROLS, 1)
_draft_control_ids = _ids(_DRAFT_CONTROLS, 10001)
controls: Any = _Controls(_control_ids)
controls.draft = _ControlsDraft(_draft_control_ids)
controls.rpi = _Namespace({k: v for k, v in _control_ids.items() if v.vendor == "rpi"})
properties: Any = _Namespace(_ids(_PROPERTIES, 1))
properties.draft = _PropertiesDraft(_ids(_DRAFT_PROPERTIES, 10001))


# -- frame buffers -------------------------------------------------------------------------
class _SharedFD:
    """libcamera's SharedFD: its own duplicate of a descriptor, closed with the last
    holder."""

    def __init__(self, fd: int) -> None:
        self.fd = os.dup(fd) if fd >= 0 else -1

    def __del__(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FrameMetadata:
    class Status(enum.Enum):
        Success = 0
        Error = 1
        Cancelled = 2

    class Plane:
        def __init__(self, bytes_used: int = 0) -> None:
            self.bytes_used = bytes_used

    def __init__(self) -> None:
        self.status = FrameMetadata.Status.Success
        self.sequence = 0
        self.timestamp = 0
        self._planes: list[FrameMetadata.Plane] = []

    @property
    def planes(self) -> list[FrameMetadata.Plane]:
        return [FrameMetadata.Plane(p.bytes_used) for p in self._planes]  # copies


class FrameBuffer:
    class Plane:
        def __init__(self, fd: int | None = None, offset: int = 0, length: int = 0) -> None:
            self._fd = _SharedFD(fd) if fd is not None else None
            self.offset = offset
            self.length = length

        @property
        def fd(self) -> int:
            return self._fd.fd if self._fd is not None else -1

        @fd.setter
        def fd(self, fd: int) -> None:
            self._fd = _SharedFD(fd)

        def _copy(self) -> FrameBuffer.Plane:
            p = FrameBuffer.Plane(None, self.offset, self.length)
            p._fd = self._fd
            return p

    def __init__(self, planes: list[FrameBuffer.Plane], cookie: int = 0) -> None:
        self._planes = [p._copy() for p in planes]
        self.cookie = cookie
        self._metadata = FrameMetadata()
        self._metadata._planes = [FrameMetadata.Plane(p.length) for p in self._planes]

    @property
    def planes(self) -> list[FrameBuffer.Plane]:
        return [p._copy() for p in self._planes]

    @property
    def metadata(self) -> FrameMetadata:
        return self._metadata


class FrameBufferAllocator:
    """libcamera's own allocator (picamera2's ``LibcameraAllocator``): buffers exported by
    the pipeline, here memfds, one plane each."""

    def __init__(self, camera: Camera) -> None:
        self._camera = camera
        self._buffers: dict[Stream, list[FrameBuffer]] = {}

    def allocate(self, stream: Stream) -> int:
        cfg = stream.configuration
        if cfg is None or stream not in self._camera._streams_in_use:
            raise _error(errno.EINVAL, "Failed to allocate buffers")
        buffers = []
        for i in range(cfg.buffer_count):
            fd = os.memfd_create(f"libcamera-{i}", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, cfg.frame_size)
                buffers.append(FrameBuffer([FrameBuffer.Plane(fd, 0, cfg.frame_size)]))
            finally:
                os.close(fd)
        self._buffers[stream] = buffers
        return len(buffers)

    @property
    def allocated(self) -> bool:
        return bool(self._buffers)

    def buffers(self, stream: Stream) -> list[FrameBuffer]:
        return list(self._buffers.get(stream, []))


# -- configurations ------------------------------------------------------------------------
class Stream:
    def __init__(self, name: str) -> None:
        self._name = name
        self._configuration: StreamConfiguration | None = None

    @property
    def configuration(self) -> StreamConfiguration | None:
        return self._configuration

    def __repr__(self) -> str:
        return f"<libcamera.Stream {self._name}>"


class StreamFormats:
    def __init__(self, table: dict[str, list[SizeRange]]) -> None:
        self._table = table

    @property
    def pixel_formats(self) -> list[PixelFormat]:
        return [PixelFormat(f) for f in self._table]

    def sizes(self, pixel_format: PixelFormat) -> list[Size]:
        out = []
        for r in self._table.get(str(pixel_format), []):
            if r.min == r.max:
                out.append(Size(r.min.width, r.min.height))
        return out

    def range(self, pixel_format: PixelFormat) -> SizeRange:
        ranges = self._table.get(str(pixel_format), [])
        if not ranges:
            return SizeRange()
        return SizeRange(
            Size(min(r.min.width for r in ranges), min(r.min.height for r in ranges)),
            Size(max(r.max.width for r in ranges), max(r.max.height for r in ranges)),
        )


class StreamConfiguration:
    def __init__(self, role: StreamRole, formats: StreamFormats) -> None:
        self._role = role
        self._formats = formats
        self._stream: Stream | None = None
        self.size = Size()
        self.pixel_format = PixelFormat()
        self.stride = 0
        self.frame_size = 0
        self.buffer_count = 0
        self.color_space: ColorSpace | None = None

    @property
    def stream(self) -> Stream | None:
        return self._stream

    @property
    def formats(self) -> StreamFormats:
        return self._formats

    def __str__(self) -> str:
        return f"{self.size}-{self.pixel_format}"


class SensorConfiguration:
    def __init__(self) -> None:
        self.bit_depth = 0
        self.analog_crop = Rectangle()
        self.binning = (1, 1)
        self.skipping = (1, 1, 1, 1)
        self.output_size = Size()

    def is_valid(self) -> bool:
        return self.bit_depth > 0 and not self.output_size.is_null


class CameraConfiguration:
    class Status(enum.Enum):
        Valid = 0
        Adjusted = 1
        Invalid = 2

    def __init__(self, camera: Camera, configs: list[StreamConfiguration]) -> None:
        self._camera = camera
        self._configs = configs
        self.sensor_config: SensorConfiguration | None = None
        self.orientation = Orientation.Rotate0

    def __iter__(self) -> Iterator[StreamConfiguration]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)

    @property
    def size(self) -> int:
        return len(self._configs)

    @property
    def empty(self) -> bool:
        return not self._configs

    def at(self, index: int) -> StreamConfiguration:
        if not 0 <= index < len(self._configs):
            raise IndexError(f"CameraConfiguration.at({index}): {len(self._configs)} streams")
        return self._configs[index]

    def validate(self) -> CameraConfiguration.Status:
        return self._camera._validate(self)


# -- requests ------------------------------------------------------------------------------
class Request:
    class Status(enum.Enum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    class Reuse(enum.Enum):
        Default = 0
        ReuseBuffers = 1

    def __init__(self, camera: Camera, cookie: int) -> None:
        self._camera = camera
        self._cookie = cookie
        self._buffers: dict[Stream, FrameBuffer] = {}
        self._controls: dict[ControlId, Any] = {}
        self._metadata: dict[ControlId, Any] = {}
        self._status = Request.Status.Pending
        self._sequence = 0

    def add_buffer(self, stream: Stream, buffer: FrameBuffer) -> None:
        if stream is None or buffer is None:
            raise _error(errno.EINVAL, "Failed to add buffer")
        if stream in self._buffers:
            raise _error(errno.EEXIST, "Failed to add buffer")
        self._buffers[stream] = buffer

    status = property(lambda self: self._status)
    cookie = property(lambda self: self._cookie)
    sequence = property(lambda self: self._sequence)
    has_pending_buffers = property(lambda self: self._status == Request.Status.Pending)

    @property
    def buffers(self) -> dict[Stream, FrameBuffer]:
        return dict(self._buffers)

    @property
    def metadata(self) -> dict[ControlId, Any]:
        return dict(self._metadata)

    def set_control(self, id: ControlId, value: Any) -> None:
        self._controls[id] = value

    def reuse(self) -> None:
        """``Request::reuse(ReuseBuffers)``: pending again, with its buffers, no controls."""
        self._status = Request.Status.Pending
        self._controls = {}
        self._metadata = {}
        self._sequence = 0
        for buffer in self._buffers.values():
            buffer._metadata.status = FrameMetadata.Status.Success

    def __str__(self) -> str:
        return f"Request({self._sequence}:{self._status.name[0]}:{self._cookie})"


# -- the camera ----------------------------------------------------------------------------
PROCESSED_FORMATS = ("BGR888", "RGB888", "XBGR8888", "XRGB8888", "YUV420", "YVU420")
STRIDE_ALIGN = 32  # the ISP's output line alignment assumed here
MAX_OUTPUT = Size(4096, 4096)
MIN_OUTPUT = Size(32, 32)


class Camera:
    """One camera module behind libcamera's Raspberry Pi pipeline handler: a viewfinder
    (or video/still) output at a time from the ISP, up to two, plus the raw stream."""

    def __init__(self, manager: CameraManager, module: Any) -> None:
        self._manager = weakref.ref(manager)
        self._module = module
        self._acquired = False
        self._configured: CameraConfiguration | None = None
        self._running = False
        self._streams = [Stream("isp0"), Stream("isp1"), Stream("raw")]
        self._streams_in_use: list[Stream] = []
        self._queue: list[Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._sequence = 0
        self._frame_us = 0
        self._crop: Rectangle | None = None

    # -- what the camera says of itself
    @property
    def id(self) -> str:
        return str(self._module.id)

    def __str__(self) -> str:
        return f"<libcamera.Camera '{self.id}'>"

    @property
    def properties(self) -> dict[ControlId, Any]:
        m = self._module
        w, h = m.pixel_array
        full = Rectangle(0, 0, w, h)
        return {
            properties.Model: m.model,
            properties.Location: m.location,
            properties.Rotation: m.rotation,
            properties.PixelArraySize: Size(w, h),
            properties.PixelArrayActiveAreas: [full],
            properties.ScalerCropMaximum: full,
            properties.UnitCellSize: Size(1550, 1550),
            properties.draft.ColorFilterArrangement: 0,
        }

    def _mode(self) -> Any:
        cfg = self._configured
        if cfg is None or cfg.sensor_config is None:
            return None
        for mode in self._module.modes:
            if mode.size == cfg.sensor_config.output_size.to_tuple():
                return mode
        return None

    @property
    def controls(self) -> dict[ControlId, ControlInfo]:
        m = self._module
        w, h = m.pixel_array
        mode = self._mode()
        fastest = mode.min_frame_us if mode is not None else min(x.min_frame_us for x in m.modes)
        c = controls
        out = {
            c.AeEnable: ControlInfo(False, True, True),
            c.ExposureTimeMode: ControlInfo(0, 1, 0),
            c.ExposureTime: ControlInfo(1, 66666, 20000),
            c.AnalogueGainMode: ControlInfo(0, 1, 0),
            c.AnalogueGain: ControlInfo(1.0, 16.0, 1.0),
            c.AwbEnable: ControlInfo(False, True, True),
            c.ColourGains: ControlInfo(0.0, 32.0, None),
            c.Brightness: ControlInfo(-1.0, 1.0, 0.0),
            c.Contrast: ControlInfo(0.0, 32.0, 1.0),
            c.Saturation: ControlInfo(0.0, 32.0, 1.0),
            c.Sharpness: ControlInfo(0.0, 16.0, 1.0),
            c.FrameDurationLimits: ControlInfo(fastest, 1_000_000, 33333),
            c.ScalerCrop: ControlInfo(
                Rectangle(0, 0, 64, 64), Rectangle(0, 0, w, h), Rectangle(0, 0, w, h)
            ),
            c.draft.NoiseReductionMode: ControlInfo(0, 4, 0),
        }
        if m.model == "imx500":
            out[c.CnnEnableInputTensor] = ControlInfo(False, True, False)
        return out

    @property
    def streams(self) -> set[Stream]:
        return set(self._streams_in_use)

    # -- the states
    def acquire(self) -> None:
        if self._acquired:
            raise _error(errno.EBUSY, "Failed to acquire camera")
        self._acquired = True

    def release(self) -> None:
        if self._running:
            raise _error(errno.EBUSY, "Failed to release camera")
        self._acquired = False
        self._configured = None
        for stream in self._streams:
            stream._configuration = None
        self._streams_in_use = []

    def generate_configuration(self, roles: list[StreamRole]) -> CameraConfiguration:
        m = self._module
        table: dict[str, list[SizeRange]] = {}
        for mode in m.modes:
            table.setdefault(mode.format, []).append(SizeRange(Size(*mode.size)))
        raw_formats = StreamFormats(table)
        processed = StreamFormats(
            {f: [SizeRange(MIN_OUTPUT, MAX_OUTPUT, 2, 2)] for f in PROCESSED_FORMATS}
        )
        configs = []
        for role in roles:
            if role == StreamRole.Raw:
                sc = StreamConfiguration(role, raw_formats)
                biggest = max(m.modes, key=lambda x: x.size[0] * x.size[1])
                sc.pixel_format, sc.size = PixelFormat(biggest.format), Size(*biggest.size)
                sc.color_space = ColorSpace.Raw()
            else:
                sc = StreamConfiguration(role, processed)
                if role == StreamRole.StillCapture:
                    sc.pixel_format, sc.size = PixelFormat("YUV420"), Size(*m.pixel_array)
                else:
                    sc.pixel_format, sc.size = PixelFormat("YUV420"), Size(1920, 1080)
                sc.color_space = (
                    ColorSpace.Sycc() if role == StreamRole.StillCapture else (ColorSpace.Rec709())
                )
            sc.buffer_count = 1 if role == StreamRole.StillCapture else 4
            configs.append(sc)
        config = CameraConfiguration(self, configs)
        config.validate()
        return config

    def _validate(self, config: CameraConfiguration) -> CameraConfiguration.Status:
        """The Raspberry Pi pipeline's ``validate()``: adjusts what it can, says so."""
        S = CameraConfiguration.Status
        m = self._module
        raws = [c for c in config if c._role == StreamRole.Raw]
        outputs = [c for c in config if c._role != StreamRole.Raw]
        if not config._configs or len(raws) > 1 or len(outputs) > 2:
            return S.Invalid
        adjusted = False
        # the sensor mode: the one asked for in sensor_config, else the best for the outputs
        if config.sensor_config is not None:
            sc = config.sensor_config
            mode = next(
                (
                    x
                    for x in m.modes
                    if x.size == sc.output_size.to_tuple() and x.bit_depth == sc.bit_depth
                ),
                None,
            )
            if mode is None:
                return S.Invalid
        else:
            want = (raws or outputs)[0].size
            mode = min(
                m.modes,
                key=lambda x: abs(x.size[0] - want.width) + abs(x.size[1] - want.height),
            )
        for c in raws:
            if str(c.pixel_format) != mode.format or c.size.to_tuple() != mode.size:
                c.pixel_format, c.size = PixelFormat(mode.format), Size(*mode.size)
                adjusted = True
            if c.color_space != ColorSpace.Raw():
                c.color_space = ColorSpace.Raw()
                adjusted = True
            c.stride, c.frame_size = _stride_and_size(mode.format, c.size, STRIDE_ALIGN)
        for c in outputs:
            if str(c.pixel_format) not in PROCESSED_FORMATS:
                c.pixel_format = PixelFormat("YUV420")
                adjusted = True
            size = c.size.bounded_to(MAX_OUTPUT).expanded_to(MIN_OUTPUT)
            size = Size(size.width - size.width % 2, size.height - size.height % 2)
            if size != c.size:
                c.size = size
                adjusted = True
            if c.color_space is None:
                c.color_space = ColorSpace.Sycc()
                adjusted = True
            stride, frame_size = _stride_and_size(str(c.pixel_format), c.size, STRIDE_ALIGN)
            if c.stride != stride:
                adjusted = adjusted or c.stride != 0
                c.stride = stride
            c.frame_size = frame_size
        for c in config:
            if c.buffer_count < 1:
                c.buffer_count = 1
                adjusted = True
        if config.orientation not in (
            Orientation.Rotate0,
            Orientation.Rotate0Mirror,
            Orientation.Rotate180,
            Orientation.Rotate180Mirror,
        ):  # the sensor flips; it does not transpose
            config.orientation = Orientation.Rotate0
            adjusted = True
        return S.Adjusted if adjusted else S.Valid

    def configure(self, config: CameraConfiguration) -> None:
        if not self._acquired or self._running:
            raise _error(errno.EACCES, "Failed to configure camera")
        if config.validate() == CameraConfiguration.Status.Invalid:
            raise _error(errno.EINVAL, "Failed to configure camera")
        if config.sensor_config is None:
            want = config.at(0).size
            mode = min(
                self._module.modes,
                key=lambda x: abs(x.size[0] - want.width) + abs(x.size[1] - want.height),
            )
            config.sensor_config = SensorConfiguration()
            config.sensor_config.bit_depth = mode.bit_depth
            config.sensor_config.output_size = Size(*mode.size)
        for stream in self._streams:
            stream._configuration = None
        self._streams_in_use = []
        outputs = iter(self._streams[:2])
        for c in config:
            stream = self._streams[2] if c._role == StreamRole.Raw else next(outputs)
            c._stream = stream
            stream._configuration = c
            self._streams_in_use.append(stream)
        self._configured = config
        main = next((c for c in config if c._role != StreamRole.Raw), None)
        if main is not None:
            self._module.configure(main.size.to_tuple())

    def create_request(self, cookie: int = 0) -> Request:
        if self._configured is None:
            raise _error(errno.ENOMEM, "Failed to create request")
        return Request(self, cookie)

    def start(self, controls: dict[ControlId, Any] | None = None) -> None:
        if self._configured is None or self._running:
            raise _error(errno.EACCES, "Failed to start camera")
        mode = self._mode()
        self._frame_us = mode.min_frame_us if mode is not None else 33333
        self._crop = None
        self._apply(controls or {})
        self._sequence = 0
        self._module.stream_on()
        self._running = True
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"libcamera {self._module.model}", daemon=True
        )
        self._thread.start()

    def queue_request(self, request: Request) -> None:
        if not self._running:
            raise _error(errno.EACCES, "Failed to queue request")
        if request._camera is not self or request._status != Request.Status.Pending:
            raise _error(errno.EINVAL, "Failed to queue request")
        if not request._buffers:
            raise _error(errno.EINVAL, "Failed to queue request")
        with self._cond:
            self._queue.append(request)
            self._cond.notify_all()

    def stop(self) -> None:
        if not self._running:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        assert self._thread is not None
        self._thread.join()
        self._thread = None
        self._running = False
        self._module.stream_off()
        with self._cond:
            pending, self._queue = self._queue, []
        for request in pending:  # libcamera cancels what it has not completed
            for buffer in request._buffers.values():
                buffer._metadata.status = FrameMetadata.Status.Cancelled
            self._complete(request, Request.Status.Cancelled)

    # -- the pipeline handler
    def _apply(self, values: dict[ControlId, Any]) -> None:
        for id, value in values.items():
            if id is controls.FrameDurationLimits:
                lo, hi = value
                mode = self._mode()
                fastest = mode.min_frame_us if mode is not None else 1
                self._frame_us = max(int(lo), fastest, min(int(hi), 1_000_000))
            elif id is controls.ScalerCrop:
                w, h = self._module.pixel_array
                self._crop = value.bounded_to(Rectangle(0, 0, w, h))

    def _complete(self, request: Request, status: Request.Status) -> None:
        request._status = status
        manager = self._manager()
        if manager is not None:
            manager._push(request)

    def _run(self) -> None:
        period = 0.0
        next_at = time.monotonic()
        cpu0 = time.thread_time_ns()
        while True:
            with self._cond:
                while not self._stopping and (not self._queue or self._module.blocked()):
                    self._cond.wait(0.02)
                if self._stopping:
                    return
                request = self._queue[0]
            # one frame period after the last; a late request does not bring a burst
            period = self._frame_us / 1e6
            next_at = max(next_at + period, time.monotonic() - period)
            with self._cond:
                while not self._stopping and time.monotonic() < next_at:
                    self._cond.wait(next_at - time.monotonic())
                if self._stopping:
                    return
                self._queue.pop(0)
            self._apply(request._controls)
            self._fill(request)
            self._complete(request, Request.Status.Complete)
            cpu1 = time.thread_time_ns()
            self._module.account(cpu1 - cpu0)
            cpu0 = cpu1

    def _fill(self, request: Request) -> None:
        self._sequence += 1
        now = time.monotonic_ns()
        w, h = self._module.pixel_array
        crop = self._crop or Rectangle(0, 0, w, h)
        pixels, extra = self._module.frame(self._sequence, crop.to_tuple())
        for stream, buffer in request._buffers.items():
            cfg = stream.configuration
            assert cfg is not None
            if stream is not self._streams[2]:
                _write_frame(buffer, cfg, pixels)
            md = buffer._metadata
            md.status = FrameMetadata.Status.Success
            md.sequence = self._sequence
            md.timestamp = now
            md._planes = [FrameMetadata.Plane(p.length) for p in buffer._planes]
        request._sequence = self._sequence
        c = controls
        metadata: dict[ControlId, Any] = {
            c.SensorTimestamp: now,
            c.FrameDuration: self._frame_us,
            c.ExposureTime: min(20000, self._frame_us),
            c.AnalogueGain: 1.0,
            c.DigitalGain: 1.0,
            c.ScalerCrop: crop,
        }
        for name, value in extra.items():
            metadata[_control_ids[name]] = value
        request._metadata = metadata


def _write_frame(buffer: FrameBuffer, cfg: StreamConfiguration, pixels: Any) -> None:
    """The ISP's output: the frame (RGB, ``cfg.size``) in the stream's pixel format, row by
    row at its stride, through the buffer's descriptor."""
    import numpy as np

    fmt = str(cfg.pixel_format)
    if fmt == "BGR888":  # libcamera's BGR888 is R, G, B in memory
        data = pixels
    elif fmt == "RGB888":
        data = pixels[:, :, ::-1]
    elif fmt in ("XBGR8888", "XRGB8888"):
        rgb = pixels if fmt == "XBGR8888" else pixels[:, :, ::-1]
        data = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    else:
        return  # YUV outputs are not drawn here
    plane = buffer._planes[0]
    rows = np.ascontiguousarray(data).reshape(cfg.size.height, -1)
    if rows.shape[1] < cfg.stride:
        rows = np.pad(rows, ((0, 0), (0, cfg.stride - rows.shape[1])))
    os.pwrite(plane.fd, rows.tobytes(), plane.offset)


class CameraManager:
    """``libcamera.CameraManager``: one while anything holds it (the bindings' weak
    singleton)."""

    _instance: weakref.ReferenceType[CameraManager] | None = None
    _lock = threading.Lock()
    version = "v0.5.0+rpi (simulated)"

    def __init__(self) -> None:
        self._event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._completed: list[Request] = []
        self._completed_lock = threading.Lock()
        sim: Any = importlib.import_module("imx500_sim")
        self._cameras = [Camera(self, module) for module in sim.attached_cameras()]

    def __del__(self) -> None:
        fd, self._event_fd = getattr(self, "_event_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    @classmethod
    def singleton(cls) -> CameraManager:
        with cls._lock:
            cm = cls._instance() if cls._instance is not None else None
            if cm is None:
                cm = cls()
                cls._instance = weakref.ref(cm)
            return cm

    @property
    def cameras(self) -> list[Camera]:
        return list(self._cameras)

    def get(self, id: str) -> Camera | None:
        return next((c for c in self._cameras if c.id == id), None)

    @property
    def event_fd(self) -> int:
        return self._event_fd

    def _push(self, request: Request) -> None:
        """``handleRequestCompleted``: called from the camera's thread."""
        with self._completed_lock:
            self._completed.append(request)
        os.eventfd_write(self._event_fd, 1)

    def get_ready_requests(self) -> list[Request]:
        try:
            os.eventfd_read(self._event_fd)
        except BlockingIOError:
            return []
        with self._completed_lock:
            ready, self._completed = self._completed, []
        return ready
