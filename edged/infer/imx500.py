"""The IMX500's network: a ``.rpk`` file read without a camera (:func:`inspect_network`,
for ``check-config`` and ``edged models``), and the network on the sensor through
picamera2's own ``IMX500`` helper (:class:`SensorNetwork`: the firmware upload, its progress,
the output tensors, the sensor's timings, the inference ROI).

picamera2 is imported when a network is loaded, never at import time.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.infer.model import sha256_file

log = logging.getLogger(__name__)

FW_NETWORK_STAGE = 2  # picamera2.devices.imx500.imx500.FW_NETWORK_STAGE
NETWORKS_DIR = Path("/usr/share/imx500-models")  # where Raspberry Pi OS's imx500-models puts them
FULL_SENSOR = (4056, 3040)  # the IMX500's pixel array, in which the inference ROI is given


class NetworkError(Exception):
    """A network that cannot run on the sensor (the camera falls back to the CPU)."""


@dataclass(frozen=True)
class NetworkFile:
    """What a ``.rpk`` says about itself: its input size and its intrinsics."""

    path: Path
    sha256: str
    input_size: tuple[int, int]
    task: str | None
    softmax: bool
    labels: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name


def _cpio_offset(data: bytes, name: str) -> int:
    """Where the cpio archive starts: after the firmware blocks ('9464' header, '3695'
    footer, 32 more bytes when the block is device-locked), as picamera2 walks them."""
    offset = 0
    while data[offset : offset + 4] == b"9464":
        (size,) = struct.unpack_from(">I", data, offset + 4)
        flags = data[offset + 8 : offset + 16]
        footer = offset + size + 60
        if data[footer : footer + 4] != b"3695":
            raise NetworkError(f"{name}: firmware block without its footer (a damaged .rpk?)")
        offset = footer + 4
        if len(flags) == 8 and flags[6] & 0x01:
            offset += 32
    if offset == 0:
        raise NetworkError(f"{name} is not an IMX500 network package (no firmware block)")
    return offset


def _cpio_entries(data: bytes, offset: int) -> dict[str, bytes]:
    """The files of a newc cpio archive."""
    entries: dict[str, bytes] = {}
    while data[offset : offset + 6] in (b"070701", b"070702"):
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        start = offset + 110
        entry = data[start : start + namesize - 1].decode(errors="replace")
        body = (start + namesize + 3) // 4 * 4
        if entry == "TRAILER!!!":
            break
        entries[entry] = data[body : body + filesize]
        offset = (body + filesize + 3) // 4 * 4
    return entries


def inspect_network(path: str | Path) -> NetworkFile:
    """Read a ``.rpk`` without a camera: its firmware blocks, ``network_info.txt`` (the
    input size) and ``network_intrinsics`` (task, softmax, labels).  Raises NetworkError."""
    p = Path(path)
    if not p.is_file():
        raise NetworkError(f"network file {str(p)!r} does not exist")
    data = p.read_bytes()
    entries = _cpio_entries(data, _cpio_offset(data, p.name))
    info = entries.get("network_info.txt")
    if info is None:
        raise NetworkError(f"{p.name} has no network_info.txt")
    values: dict[str, str] = {}
    for line in info.decode("ascii", errors="replace").splitlines():
        key, _, value = line.strip().partition("=")
        values.setdefault(key, value)  # the first network's (networkOrdinal=0) come first
    try:
        size = (int(values["inputTensorWidth"]), int(values["inputTensorHeight"]))
    except (KeyError, ValueError) as exc:
        raise NetworkError(f"{p.name}: network_info.txt has no input tensor size") from exc
    intrinsics: dict[str, Any] = {}
    if "network_intrinsics" in entries:
        try:
            intrinsics = json.loads(entries["network_intrinsics"])
        except ValueError as exc:
            raise NetworkError(f"{p.name}: its network_intrinsics are not JSON: {exc}") from exc
    task = intrinsics.get("task")
    if task not in (None, "classification"):
        raise NetworkError(
            f"{p.name} is a {task!r} network; edged needs a classifier (task 'classification')"
        )
    labels = intrinsics.get("classes", {}).get("labels")
    return NetworkFile(
        path=p,
        sha256=sha256_file(p),
        input_size=size,
        task=task,
        softmax=bool(intrinsics.get("cpu", {}).get("softmax", False)),
        labels=tuple(labels) if labels else None,
    )


def list_networks(dirs: list[Path]) -> list[NetworkFile | tuple[Path, str]]:
    """The ``.rpk`` files in ``dirs``: each read, or (path, why it cannot be)."""
    found: list[NetworkFile | tuple[Path, str]] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.rpk")):
            try:
                found.append(inspect_network(path))
            except NetworkError as exc:
                found.append((path, str(exc)))
    return found


def softmax(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    e = np.exp(scores - scores.max())
    out: npt.NDArray[np.float32] = (e / e.sum()).astype(np.float32)
    return out


@dataclass(frozen=True)
class SensorScores:
    """One frame's output tensor as a class vector, with the sensor's timings."""

    scores: npt.NDArray[np.float32]
    dnn_ms: float | None
    dsp_ms: float | None


class SensorNetwork:
    """A network handed to the IMX500 through picamera2's ``IMX500`` class, which must
    exist before the camera is configured (the driver uploads the firmware when the
    camera starts).  Raises NetworkError: no picamera2, no IMX500 behind ``camera_id``,
    the driver refusing the firmware."""

    def __init__(self, network: NetworkFile, camera_id: str) -> None:
        try:
            from picamera2.devices.imx500 import IMX500
            from picamera2.devices.imx500.imx500 import CnnOutputTensorInfoExported
        except ImportError as exc:
            raise NetworkError(f"picamera2's IMX500 support is missing: {exc}") from exc
        self.file = network
        # the tensor info's bytes before its frame counter: the same while the network is
        # (what picamera2 parses from them is kept, not parsed again for every frame)
        self._info_head = int(CnnOutputTensorInfoExported.frameCount.offset)
        self._shapes: tuple[Any, list[Any], int] | None = None
        try:
            self._imx: Any = IMX500(str(network.path), camera_id=camera_id)
        except (RuntimeError, OSError, ValueError, StopIteration) as exc:
            raise NetworkError(f"the sensor did not take {network.name}: {exc}") from exc
        intrinsics = self._imx.network_intrinsics
        self.softmax = bool(intrinsics.softmax) if intrinsics is not None else network.softmax
        labels = intrinsics.labels if intrinsics is not None else None
        if labels and intrinsics is not None and intrinsics.ignore_dash_labels:
            labels = [name for name in labels if name and name != "-"]
        self.labels: tuple[str, ...] | None = tuple(labels) if labels else network.labels
        width, height = self._imx.get_input_size()
        self.input_size = (int(width), int(height))
        self.progress_readable = int(self._imx.fw_progress) != 0  # FwProgressType.NONE
        self.camera_num: int = self._imx.camera_num

    def upload_percent(self) -> float | None:
        """How much of the network firmware has reached the sensor (None: unknown)."""
        if not self.progress_readable:
            return None
        try:
            current, total = self._imx.get_fw_upload_progress(FW_NETWORK_STAGE)
        except (OSError, ValueError, IndexError) as exc:
            log.debug("firmware upload progress unreadable: %s", exc)
            return None
        if not total:
            return 0.0  # the network stage has not begun
        return round(100.0 * min(int(current), int(total)) / int(total), 1)

    def read(self, metadata: dict[str, Any]) -> SensorScores | None:
        """The frame's class vector (softmax applied when the network asks for it), or
        None when the frame came without an output tensor."""
        tensor = metadata.get("CnnOutputTensor")
        if not tensor:
            return None
        shapes, size = self._output_shapes(metadata)
        if len(shapes) != 1:
            raise NetworkError(
                f"{self.file.name} has {len(shapes)} output tensors; a classifier has one"
            )
        # as picamera2's IMX500.get_outputs() gives the one output tensor
        output = np.fromiter(tensor, dtype=np.float32)[:size].reshape(shapes[0], order="F")
        scores = np.ascontiguousarray(output, dtype=np.float32).reshape(-1)
        if self.softmax:
            scores = softmax(scores)
        kpi = self._imx.get_kpi_info(metadata)
        dnn, dsp = (float(kpi[0]), float(kpi[1])) if kpi else (None, None)
        return SensorScores(scores, dnn, dsp)

    def _output_shapes(self, metadata: dict[str, Any]) -> tuple[list[Any], int]:
        """picamera2's ``IMX500.get_output_shapes()`` and the first tensor's size, parsed
        again only when the tensor info (but its frame counter) changes."""
        info = metadata.get("CnnOutputTensorInfo")
        head = info[: self._info_head] if info else None
        cached = self._shapes
        if cached is not None and cached[0] == head:
            return cached[1], cached[2]
        shapes: list[Any] = self._imx.get_output_shapes(metadata)
        size = math.prod(int(d) for d in shapes[0]) if shapes else 0
        self._shapes = (head, shapes, size)
        return shapes, size

    def set_roi(self, rect: tuple[int, int, int, int]) -> None:
        """The sensor's inference crop, in full-sensor pixels (left, top, width, height)."""
        self._imx.set_inference_roi_abs(rect)

    def close(self) -> None:
        """Release the sensor's subdevice (picamera2 keeps it open until collected)."""
        fd = getattr(self._imx, "device_fd", None)
        if fd is not None and not fd.closed:
            fd.close()
