"""The Raspberry Pi AI Camera (Sony IMX500) simulated beneath the real picamera2 package.

What is simulated is only what no machine here has:

- **the kernel's view of the sensor**: ``/sys/class/video4linux/v4l-subdevN/device`` (its
  ``driver/module`` and ``of_node`` links), the ``/dev/v4l-subdevN`` node and its V4L2
  controls (the network firmware's file descriptor, the inference ROI, the device id) as
  ``ioctl`` calls on that node, and the debugfs firmware-upload progress files
  (``imx500-fw:*/fw_progress``, ``rp2040-spi:*/transfer_progress``) that picamera2 reads with
  ``cat``.  They live under ``$FAKE_IMX500_ROOT`` and are mapped there for the module
  ``picamera2.devices.imx500.imx500`` only, which otherwise runs as it is;
- **the kernel's DMA heap** (``/dev/dma_heap/vidbuf_cached`` under the root): picamera2's
  default ``DmaAllocator`` allocates its frame buffers there with ``DMA_HEAP_IOCTL_ALLOC``
  (each a memfd of the size asked, which it maps as it would a dma-buf), names them and
  brackets CPU access with ``DMA_BUF_IOCTL_SYNC``; mapped for ``picamera2.dma_heap`` and
  ``picamera2.allocators.dmaallocator`` only;
- **the camera modules** (:class:`CameraModule`, listed by :func:`attached_cameras`) that
  the simulated libcamera (``libcamera/_libcamera.py``) drives: their sensor modes, their
  frames, and for the IMX500 the metadata its network adds to each request:
  ``CnnOutputTensor`` (float32 values, as libcamera's IMX500 helper dequantizes the
  sensor's output), ``CnnOutputTensorInfo`` (bytes of libcamera's
  ``CnnOutputTensorInfoExported``, packed here by hand from the C layout) and
  ``CnnKpiInfo`` (DNN and DSP microseconds).  picamera2's ``Picamera2`` class runs as it
  is above them.

The sensor: a network given through the firmware control is uploaded when the camera
starts; until the upload is done no frame comes (as with the real driver), and progress
advances in the debugfs files.  Frames cycle through ``$FAKE_IMX500_IMAGES``
(``os.pathsep``-separated), each with the tensor of that photo from ``$FAKE_IMX500_SCORES``
(an ``.npz`` from :func:`write_scores`: the bundled model's int8 scores on the photo).

Knobs (environment): ``FAKE_IMX500_UPLOAD_S`` (seconds an upload takes, default 0.3),
``FAKE_IMX500_FAIL_LOADS`` (the first N firmware loads fail with EIO),
``FAKE_IMX500_TENSORS_FOR`` (after N frames with tensors, frames come without them until the
camera is started again), ``FAKE_IMX500_NO_PROGRESS`` (no debugfs progress files),
``FAKE_IMX500_DNN_US`` / ``FAKE_IMX500_DSP_US`` (the KPI), ``FAKE_IMX500_HOLD`` (frames
per photo, default 1), read when the camera starts.  ``$FAKE_IMX500_ROOT/roi`` records
the last inference ROI set; ``$FAKE_IMX500_ROOT/loads`` counts firmware loads.

The simulation's own CPU time (what libcamera, the ISP and the camera would spend on a Pi:
the simulated libcamera's thread that paces the frames, writes each into its buffer and
builds its request's metadata) is counted on that thread's clock in
``$FAKE_IMX500_ROOT/cpu/<pid>`` (:func:`simulation_cpu`), so that a bench can leave it out
of the daemon's figure.  picamera2's own work (its listening and event-loop threads,
``CompletedRequest``, ``get_metadata``, the ``IMX500`` parsing, ``make_array``'s copy of
the frame) is not in it: it runs on a Pi too.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import importlib
import importlib.abc
import importlib.machinery
import mmap
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

FULL_SENSOR = (4056, 3040)
DEVICE = "11-001a"  # the imx500's i2c device, as on a Pi 5's CAM1 port
SPI_DEVICE = "11-0040"
NETWORK_STAGE = 2
NETWORK_FW_FD_CTRL_ID = 0x00982901
ROI_CTRL_ID = 0x00982900
GET_DEVICE_ID_CTRL_ID = 0x00982902


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


# V4L2 ioctls (videodev2.h), computed from the ABI here rather than taken from picamera2
VIDIOC_G_CTRL = _ioc(3, 27, 8)
VIDIOC_S_CTRL = _ioc(3, 28, 8)
VIDIOC_G_EXT_CTRLS = _ioc(3, 71, 32)
VIDIOC_S_EXT_CTRLS = _ioc(3, 72, 32)


def root() -> Path:
    return Path(os.environ["FAKE_IMX500_ROOT"])


# -- the sensor ----------------------------------------------------------------------------
class Sensor:
    """The IMX500's state, as the driver and the camera share it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.network: str | None = None  # path of the firmware handed to the driver
        self.owner = -1  # the subdevice file that handed it (closing it drops the network)
        self.loaded: str | None = None  # the network running on the sensor
        self.uploading = threading.Event()
        self.loads = 0
        self.roi = (0, 0, *FULL_SENSOR)

    def set_firmware(self, fd: int, subdev: int) -> None:
        fails = int(os.environ.get("FAKE_IMX500_FAIL_LOADS", "0"))
        with self.lock:
            self.loads += 1
            (root() / "loads").write_text(str(self.loads))
            if self.loads <= fails:
                raise OSError(errno.EIO, "Input/output error")
            head = os.pread(fd, 4, 0)
            if head != b"9464":
                raise OSError(errno.EINVAL, "Invalid argument")
            self.network = os.readlink(f"/proc/self/fd/{fd}")
            self.owner = subdev
            self.loaded = None

    def set_roi(self, roi: tuple[int, int, int, int]) -> None:
        self.roi = roi
        (root() / "roi").write_text(" ".join(str(v) for v in roi))

    def start_streaming(self) -> None:
        """The driver uploads a new network when streaming starts."""
        try:
            held = os.readlink(f"/proc/self/fd/{self.owner}").endswith("/dev/v4l-subdev2")
        except OSError:
            held = False
        if not held:  # the subdevice was closed: the driver released the network
            self.network = self.loaded = None
            self.uploading.clear()
        if self.network is None or self.loaded == self.network:
            return
        self.uploading.set()
        threading.Thread(target=self._upload, args=(self.network,), daemon=True).start()

    def _upload(self, network: str) -> None:
        total = os.path.getsize(network)
        seconds = float(os.environ.get("FAKE_IMX500_UPLOAD_S", "0.3"))
        steps = max(1, int(seconds / 0.05))
        where = root()
        for i in range(steps + 1):
            if self.network != network:
                return  # the driver dropped it
            _write_progress(total * i // steps, total, where)
            time.sleep(seconds / steps)
        with self.lock:
            if self.network == network:
                self.loaded = network
                self.uploading.clear()


SENSOR = Sensor()


def _write_progress(done: int, total: int, where: Path | None = None) -> None:
    if os.environ.get("FAKE_IMX500_NO_PROGRESS"):
        return
    # the block counter moves in 4 KiB blocks; the SPI chunk counter adds the rest
    block = done // 4096 * 4096
    debug = (where or root()) / "sys" / "kernel" / "debug"
    fw = debug / f"imx500-fw:{DEVICE}" / "fw_progress"
    spi = debug / f"rp2040-spi:{SPI_DEVICE}" / "transfer_progress"
    for path, text in ((fw, f"{NETWORK_STAGE} {block} {total}\n"), (spi, f"{done - block}\n")):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def make_tree(camera_id: str) -> None:
    """The sysfs, /dev and debugfs entries of one IMX500 (``camera_id``: libcamera's id)."""
    r = root()
    devices = r / "sys" / "devices" / "platform" / "axi" / "i2c" / DEVICE
    (devices / "driver").mkdir(parents=True, exist_ok=True)
    module = r / "sys" / "module" / "imx500"
    module.mkdir(parents=True, exist_ok=True)
    of_node = r / "sys" / "firmware" / "devicetree" / camera_id.strip("/")
    of_node.mkdir(parents=True, exist_ok=True)
    for link, target in ((devices / "driver" / "module", module), (devices / "of_node", of_node)):
        if not link.is_symlink():
            link.symlink_to(target)
    subdev = r / "sys" / "class" / "video4linux" / "v4l-subdev2"
    subdev.mkdir(parents=True, exist_ok=True)
    if not (subdev / "device").is_symlink():
        (subdev / "device").symlink_to(devices)
    (r / "dev").mkdir(exist_ok=True)
    (r / "dev" / "v4l-subdev2").touch()
    for d in (f"imx500-fw:{DEVICE}", f"rp2040-spi:{SPI_DEVICE}"):
        (r / "sys" / "kernel" / "debug" / d).mkdir(parents=True, exist_ok=True)
    _write_progress(0, 0)


# -- the kernel, as picamera2's imx500 module sees it --------------------------------------
def _mapped(path: Any) -> Any:
    if isinstance(path, str) and (path.startswith("/sys/") or path.startswith("/dev/v4l-subdev")):
        return str(root()) + path
    return path


class _OsPath:
    def __getattr__(self, name: str) -> Any:
        return getattr(os.path, name)

    def exists(self, p: str) -> bool:
        return os.path.exists(_mapped(p))

    def islink(self, p: str) -> bool:
        return os.path.islink(_mapped(p))

    def isfile(self, p: str) -> bool:
        return os.path.isfile(_mapped(p))


class _Os:
    path = _OsPath()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def readlink(self, p: str) -> str:
        return str(os.readlink(_mapped(p)))


_subdev_fds: set[int] = set()


def _open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    mapped = _mapped(file)
    handle = open(mapped, mode, *args, **kwargs)  # noqa: SIM115
    if mapped != file:
        _subdev_fds.add(handle.fileno())
    return handle


class _Subprocess:
    CalledProcessError = subprocess.CalledProcessError
    DEVNULL = subprocess.DEVNULL

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def check_output(self, cmd: list[str], **kwargs: Any) -> Any:
        if cmd[0] == "sudo":  # no passwordless sudo for debug_stream_*.sh here
            raise subprocess.CalledProcessError(1, cmd)
        return subprocess.check_output([_mapped(c) for c in cmd], **kwargs)


class _Fcntl:
    """``ioctl`` on the fake subdevice is the driver; any other file goes to the kernel."""

    def __getattr__(self, name: str) -> Any:
        import fcntl

        return getattr(fcntl, name)

    def ioctl(self, fd: Any, request: int, arg: Any = 0, mutate: bool = True) -> Any:
        import fcntl

        number = fd if isinstance(fd, int) else fd.fileno()
        if number not in _subdev_fds:
            return fcntl.ioctl(fd, request, arg, mutate)
        request &= 0xFFFFFFFF
        raw = ctypes.string_at(ctypes.addressof(arg), ctypes.sizeof(arg))
        if request == VIDIOC_S_CTRL:
            ctrl_id, value = struct.unpack_from("<Ii", raw)
            if ctrl_id == NETWORK_FW_FD_CTRL_ID:
                SENSOR.set_firmware(value, number)
                return 0
        elif request in (VIDIOC_S_EXT_CTRLS, VIDIOC_G_EXT_CTRLS):
            count = struct.unpack_from("<I", raw, 4)[0]
            controls = struct.unpack_from("<Q", raw, 24)[0]
            if count == 1:
                ctrl = ctypes.string_at(controls, 20)  # struct v4l2_ext_control is packed
                ctrl_id, size = struct.unpack_from("<II", ctrl)
                pointer = struct.unpack_from("<Q", ctrl, 12)[0]
                if ctrl_id == ROI_CTRL_ID and request == VIDIOC_S_EXT_CTRLS and size == 16:
                    x, y, w, h = struct.unpack("<4I", ctypes.string_at(pointer, 16))
                    SENSOR.set_roi((x, y, w, h))
                    return 0
                if ctrl_id == GET_DEVICE_ID_CTRL_ID and request == VIDIOC_G_EXT_CTRLS:
                    ctypes.memmove(pointer, struct.pack("<4I", 0x1234, 0x5678, 0x9ABC, 0xDEF0), 16)
                    return 0
        raise OSError(errno.EINVAL, "Invalid argument")


def _patch_imx500_module(module: Any) -> None:
    module.os = _Os()
    module.open = _open
    module.subprocess = _Subprocess()
    module.fcntl = _Fcntl()


# -- the simulation's own CPU time -----------------------------------------------------------
class _CpuMeter:
    """Frames and nanoseconds of the simulation's own work in this process, kept in a
    16-byte file (two little-endian uint64) mapped in memory: updated per frame without a
    system call, read by another process at any time.  Added to from the simulated
    libcamera's thread (per frame) and from picamera2's threads (the simulated kernel's
    share of their ioctls)."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()
        self.frames = 0
        self.ns = 0

    def add(self, ns: int, frame: bool = True) -> None:
        with self._lock:
            self.frames += frame
            self.ns += ns
            if self._map is None:
                path = root() / "cpu" / str(os.getpid())
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(bytes(16))
                with open(path, "r+b") as f:
                    self._map = mmap.mmap(f.fileno(), 16)
            struct.pack_into("<QQ", self._map, 0, self.frames, self.ns)


METER = _CpuMeter()


def simulation_cpu(fake_root: Path, pid: int) -> tuple[int, float]:
    """(frames, CPU seconds) the simulated camera has spent so far in process ``pid``."""
    try:
        frames, ns = struct.unpack("<QQ", (fake_root / "cpu" / str(pid)).read_bytes()[:16])
    except (OSError, struct.error):
        return 0, 0.0
    return frames, ns / 1e9


# -- the camera ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _tensor_info_head(name: str, classes: int) -> bytes:
    out = struct.pack("<64sI", name.encode()[:63], 1)
    for i in range(16):
        dims = (classes,) if i == 0 else ()
        size = list(dims) + [0] * (16 - len(dims))
        out += struct.pack("<II16H", classes if i == 0 else 0, len(dims), *size)
    return out


def _tensor_info(name: str, classes: int, frame: int) -> tuple[int, ...]:
    """libcamera's ``CnnOutputTensorInfoExported`` (one output tensor), as the bindings
    hand an array control of bytes over: a tuple of ints."""
    out = _tensor_info_head(name, classes) + struct.pack("<B", frame & 0xFF)
    out += b"\0" * (-len(out) % 4)  # the struct's alignment (its uint32 members)
    return tuple(out)


class _Scores:
    def __init__(self) -> None:
        path = os.environ.get("FAKE_IMX500_SCORES", "")
        self.by_name: dict[str, np.ndarray] = {}
        if path:
            with np.load(path) as data:
                scale, zero = float(data["_scale"]), int(data["_zero_point"])
                for key in data.files:
                    if not key.startswith("_"):
                        q = data[key].astype(np.float32)
                        # the sensor's int8 output, dequantized as libcamera hands it over
                        self.by_name[key] = (q - np.float32(zero)) * np.float32(scale)


@dataclass(frozen=True)
class SensorMode:
    """One of the sensor's modes as libcamera lists them for the raw stream."""

    format: str
    size: tuple[int, int]
    bit_depth: int
    min_frame_us: int


# the modes libcamera lists for these sensors on a Pi (packed 10-bit Bayer)
MODES: dict[str, tuple[tuple[int, int], list[SensorMode]]] = {
    "imx500": (
        FULL_SENSOR,
        [
            SensorMode("SRGGB10_CSI2P", (2028, 1520), 10, 33333),
            SensorMode("SRGGB10_CSI2P", (4056, 3040), 10, 100000),
        ],
    ),
    "imx708": (
        (4608, 2592),
        [
            SensorMode("SRGGB10_CSI2P", (1536, 864), 10, 8333),
            SensorMode("SRGGB10_CSI2P", (2304, 1296), 10, 17857),
            SensorMode("SRGGB10_CSI2P", (4608, 2592), 10, 69444),
        ],
    ),
}


class CameraModule:
    """A camera module as libcamera's pipeline handler drives it: its sensor's modes,
    streaming on and off (an IMX500 uploads its network then, and gives no frame until the
    upload is done), and each frame's image and the sensor's own metadata (the IMX500's
    output tensor, its info and KPI)."""

    def __init__(self, model: str, index: int) -> None:
        self.model = model
        bus = "i2c@80000" if index else "i2c@88000"
        self.id = f"/base/axi/pcie@120000/rp1/{bus}/{model}@1a"
        self.location = 2
        self.rotation = 0
        self.pixel_array, self.modes = MODES.get(model, MODES["imx500"])
        self._images: list[tuple[str, np.ndarray]] = []
        self._scores = _Scores()
        self.with_tensors = 0
        self._hold = 1
        self._tensors_for = 0
        self._kpi = (0, 0)

    def configure(self, size: tuple[int, int]) -> None:
        """The ISP's output size: the photos, scaled to it."""
        self._images = [
            (Path(p).name, _photo(p, size))
            for p in os.environ.get("FAKE_IMX500_IMAGES", "").split(os.pathsep)
            if p
        ]
        self._scores = _Scores()

    def stream_on(self) -> None:
        if self.model == "imx500":
            SENSOR.start_streaming()
        self.with_tensors = 0
        env = os.environ.get
        self._hold = int(env("FAKE_IMX500_HOLD", "1"))
        self._tensors_for = int(env("FAKE_IMX500_TENSORS_FOR", "0"))
        self._kpi = (int(env("FAKE_IMX500_DNN_US", "2400")), int(env("FAKE_IMX500_DSP_US", "600")))

    def stream_off(self) -> None:
        pass

    def blocked(self) -> bool:
        """No frame comes while the sensor uploads its network."""
        return self.model == "imx500" and SENSOR.uploading.is_set() and bool(SENSOR.network)

    def account(self, ns: int) -> None:
        METER.add(ns)

    def frame(
        self, sequence: int, crop: tuple[int, int, int, int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Frame ``sequence`` (from 1): its pixels and the sensor's metadata by control
        name (the ISP's ``crop`` is recorded, not applied)."""
        if not self._images:
            raise RuntimeError("no photos in FAKE_IMX500_IMAGES")
        name, pixels = self._images[(sequence - 1) // self._hold % len(self._images)]
        metadata: dict[str, Any] = {}
        limit = self._tensors_for
        scores = self._scores.by_name.get(name)
        if (
            self.model == "imx500"
            and SENSOR.loaded is not None
            and SENSOR.loaded == SENSOR.network
            and scores is not None
            and (not limit or self.with_tensors < limit)
        ):
            self.with_tensors += 1
            network = Path(str(SENSOR.loaded)).stem
            metadata["CnnOutputTensor"] = tuple(scores.tolist())
            metadata["CnnOutputTensorInfo"] = _tensor_info(network, scores.size, sequence)
            metadata["CnnKpiInfo"] = self._kpi
        return pixels, metadata


@functools.lru_cache(maxsize=32)
def _photo(path: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB").resize(size))
    pixels.flags.writeable = False
    return pixels


def attached_cameras() -> list[CameraModule]:
    """The camera modules attached (``FAKE_IMX500_CAMERAS``: comma-separated sensor models,
    default ``imx500``), in libcamera's order."""
    models = [
        m.strip() for m in os.environ.get("FAKE_IMX500_CAMERAS", "imx500").split(",") if m.strip()
    ]
    return [CameraModule(m, i) for i, m in enumerate(models)]


# -- the kernel's DMA heap, as picamera2's DmaAllocator sees it ------------------------------
DMA_HEAP = "/dev/dma_heap/vidbuf_cached"
DMA_BUF_PREFIX = "/memfd:dmabuf:"


def _dma_ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


DMA_HEAP_IOCTL_ALLOC = _dma_ioc(3, "H", 0, 24)  # struct dma_heap_allocation_data
DMA_BUF_IOCTL_SYNC = _dma_ioc(1, "b", 0, 8)  # struct dma_buf_sync
DMA_BUF_SET_NAME = _dma_ioc(1, "b", 1, 8)  # const char *
DMA_BUF_SYNC_VALID = 0b111


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class _DmaOs:
    """``os`` for picamera2's dma_heap module: the heap node lives under the root."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        if path.startswith("/dev/dma_heap/") and "FAKE_IMX500_ROOT" in os.environ:
            path = str(root()) + path
        return os.open(path, flags, mode)


class _DmaFcntl:
    """``ioctl`` on the heap (allocations: a memfd of the size asked, as a dma-buf is a
    file of that size) and on its buffers (name, cache sync); any other file goes to the
    kernel."""

    def __getattr__(self, name: str) -> Any:
        import fcntl

        return getattr(fcntl, name)

    def ioctl(self, fd: Any, request: int, arg: Any = 0, mutate: bool = True) -> Any:
        """The emulation's own CPU (not the kernel's on a Pi) goes to the meter."""
        t0 = time.thread_time_ns()
        try:
            return self._ioctl(fd, request, arg, mutate)
        finally:
            if "FAKE_IMX500_ROOT" in os.environ:
                METER.add(time.thread_time_ns() - t0, frame=False)

    def _ioctl(self, fd: Any, request: int, arg: Any, mutate: bool) -> Any:
        number = fd if isinstance(fd, int) else fd.fileno()
        target = _fd_target(number)
        request &= 0xFFFFFFFF
        if target.startswith(DMA_BUF_PREFIX):  # a buffer (the frequent case: syncs)
            if request == DMA_BUF_IOCTL_SYNC:
                if arg.flags & ~DMA_BUF_SYNC_VALID or not arg.flags & 3:
                    raise OSError(errno.EINVAL, "Invalid argument")
                return 0
            if request == DMA_BUF_SET_NAME:
                return arg.encode() if isinstance(arg, str) else 0
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        if (
            target.endswith(DMA_HEAP)
            and "FAKE_IMX500_ROOT" in os.environ
            and target == (str(root()) + DMA_HEAP)
        ):
            if request != DMA_HEAP_IOCTL_ALLOC:
                raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
            length = int(arg.len)
            if length <= 0 or arg.heap_flags:
                raise OSError(errno.EINVAL, "Invalid argument")
            buf = os.memfd_create("dmabuf:", os.MFD_CLOEXEC if arg.fd_flags & os.O_CLOEXEC else 0)
            os.ftruncate(buf, length)
            arg.fd = buf
            return 0
        import fcntl

        return fcntl.ioctl(fd, request, arg, mutate)


def _patch_dma_module(module: Any) -> None:
    module.fcntl = _DmaFcntl()
    if hasattr(module, "os"):
        module.os = _DmaOs()


# -- the import hook -----------------------------------------------------------------------
class _Finder(importlib.abc.MetaPathFinder):
    HOOKS: ClassVar[dict[str, Any]] = {
        "picamera2.dma_heap": _patch_dma_module,
        "picamera2.allocators.dmaallocator": _patch_dma_module,
        "picamera2.devices.imx500.imx500": _patch_imx500_module,
    }

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        hook = self.HOOKS.get(name)
        if hook is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_hook(module: Any) -> None:
            exec_module(module)
            hook(module)

        loader.exec_module = exec_and_hook  # type: ignore[method-assign]
        return spec


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    if "FAKE_IMX500_ROOT" in os.environ:
        heap = root() / DMA_HEAP.lstrip("/")
        heap.parent.mkdir(parents=True, exist_ok=True)
        heap.touch()
        for cam in attached_cameras():
            if cam.model == "imx500":
                make_tree(cam.id)


# -- files for tests and bench -------------------------------------------------------------
def _cpio(entries: dict[str, bytes]) -> bytes:
    """A newc cpio archive (what the rpk's tail is)."""
    out = b""
    for ino, (name, data) in enumerate([*entries.items(), ("TRAILER!!!", b"")], start=1):
        mode = 0o100644 if data or name != "TRAILER!!!" else 0
        header = "070701" + "".join(
            f"{v:08X}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        )
        out += header.encode() + name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


def write_rpk(
    path: Path,
    *,
    width: int = 224,
    height: int = 224,
    labels: list[str] | None = None,
    softmax: bool = False,
    task: str = "classification",
    firmware_bytes: int = 64 * 1024,
) -> Path:
    """A network package laid out as picamera2 reads one: firmware blocks ('9464' header,
    '3695' footer), then a cpio archive with ``network_info.txt`` and
    ``network_intrinsics``."""
    import json

    body = bytes(8) + os.urandom(firmware_bytes)  # 8 flag bytes (no device lock), payload
    size = len(body) - 52  # header (8) + size + 52 bytes + footer (4) = size + 64
    block = b"9464" + struct.pack(">I", size) + body + b"3695"
    info = (
        "networkID=000004\napParamSize=1024\nnetworkNum=1\nnetworkOrdinal=0\n"
        f"inputTensorWidth={width}\ninputTensorHeight={height}\ninputTensorFormat=RGB\n"
        "inputTensorNorm_K00=0x0\ninputTensorNorm_K02=0x0\ninputTensorNorm_K03=0x0\n"
        "inputTensorNorm_K11=0x0\ninputTensorNorm_K13=0x0\ninputTensorNorm_K20=0x0\n"
        "inputTensorNorm_K22=0x0\ninputTensorNorm_K23=0x0\n"
    )
    intrinsics: dict[str, Any] = {"task": task}
    if softmax:
        intrinsics["cpu"] = {"softmax": True}
    if labels is not None:
        intrinsics["classes"] = {"labels": labels}
    entries = {
        "network_info.txt": info.encode(),
        "network_intrinsics": json.dumps(intrinsics).encode(),
    }
    path.write_bytes(block + _cpio(entries))
    return path


def write_scores(path: Path, images: list[Path]) -> Path:
    """The bundled model's int8 output on each photo (as the edged daemon prepares it), with
    its output quantization: what an IMX500 running that network would hand over."""
    from edged.config import ClassifyConfig, ModelConfig
    from edged.engine import open_engine

    engine = open_engine(ModelConfig(num_threads=1), ClassifyConfig())
    try:
        spec = engine.backend.output_spec
        arrays: dict[str, Any] = {
            image.name: engine.backend.infer(engine.load(image)).raw.copy() for image in images
        }
    finally:
        engine.close()
    arrays["_scale"] = np.float32(spec.scale)
    arrays["_zero_point"] = np.int32(spec.zero_point)
    np.savez(path, **arrays)
    return path
