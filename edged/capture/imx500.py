"""The Raspberry Pi AI Camera (Sony IMX500): a source that is also a backend.

The network runs on the sensor; each frame comes with its output tensor, which the daemon
classifies like any backend's output, with no preprocessing and no invoke on the CPU.
While the network is not running (its file is missing, the camera is not an IMX500, the
driver refuses the firmware, the upload takes longer than ``upload_timeout_s``, or the
camera stops sending tensors) the frames come without one and the CPU classifies them with
the CPU model; the sensor is tried again with a doubling backoff.

The first upload of a network can take minutes, during which no frame comes: the source
then reports "loading network N %" and counts as making progress, so that the service is
ready and its watchdog fed (see :meth:`progressing`).

One region becomes the sensor's inference ROI (and the ISP's crop, so that frames
classified on the CPU show the same region); more regions are cropped on the CPU from the
ISP's frames, without the sensor.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from edged.capture.base import Frame, FrameSource, register
from edged.config import Imx500CaptureConfig, RegionConfig
from edged.infer.imx500 import (
    FULL_SENSOR,
    NetworkError,
    NetworkFile,
    SensorNetwork,
    inspect_network,
)
from edged.infer.model import read_labels
from edged.tensor import SensorOutput
from edged.wire import HEALTH_FIELDS as H

log = logging.getLogger(__name__)

RGB_FORMAT = "BGR888"  # libcamera's name for R, G, B in memory
POLL_S = 0.5  # a frame wait, between which the upload's progress and stop are looked at
BACKEND = "imx500"


class CameraError(RuntimeError):
    pass


def roi_of(region: RegionConfig) -> tuple[int, int, int, int]:
    """A region (fractions of the frame) in full-sensor pixels."""
    w, h = FULL_SENSOR
    return (
        round(region.x * w),
        round(region.y * h),
        max(1, round(region.width * w)),
        max(1, round(region.height * h)),
    )


@register
class Imx500Source(FrameSource):
    type_key = "imx500"
    live = True
    crops_one_region = True
    pixels_on_demand = True

    def __init__(
        self,
        cfg: Imx500CaptureConfig,
        input_size: tuple[int, int],
        *,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.size = input_size
        self._clock = clock
        try:
            import picamera2
        except ImportError as exc:
            raise CameraError(
                "capture.type 'imx500' needs picamera2 (on Raspberry Pi OS: apt install "
                "python3-picamera2 imx500-all, and a venv with --system-site-packages)"
            ) from exc
        self._picamera2 = picamera2
        cameras = picamera2.Picamera2.global_camera_info()
        if cfg.camera_num >= len(cameras):
            raise CameraError(
                f"camera {cfg.camera_num} cannot be opened: {len(cameras)} camera(s) attached"
            )
        self._camera = cameras[cfg.camera_num]
        self._labels_file = tuple(read_labels(cfg.labels)) if cfg.labels else None
        region = cfg.regions[0] if len(cfg.regions) == 1 else None
        self._region = region
        if region is not None:
            self.cropped_region = region.name
        self._net: SensorNetwork | None = None
        self._cam: Any = None
        self._job: Any = None  # picamera2's capture job waited for across polls
        self._started = False
        # state: "loading" (uploading, no frames), "running" (tensors), "fallback" (CPU)
        self.state = "fallback"
        self.reason: str | None = None
        self.fallbacks = 0
        self._network: NetworkFile | None = None
        self._loading_since = 0.0
        self._upload: float | None = None
        self._last_tensor = 0.0
        self._retry_s = cfg.retry_min_s
        self._retry_at: float | None = None
        self._kpi: deque[tuple[float, float]] = deque(maxlen=64)
        self._sensor_frames = 0
        self._lock = threading.Lock()
        self._open(with_network=len(cfg.regions) <= 1)
        if len(cfg.regions) > 1:
            self._fall_back(
                f"{len(cfg.regions)} regions: the sensor classifies one region, so the CPU "
                "crops and classifies them",
                retry=False,
            )

    # -- the camera ------------------------------------------------------------------------
    def _open(self, with_network: bool) -> None:
        """The network first (picamera2's IMX500 must exist before the camera is
        configured), then the camera; a network that will not load leaves the camera on
        the CPU path."""
        if with_network:
            try:
                self._load_network()
            except NetworkError as exc:
                self._fall_back(str(exc))
        try:
            self._cam = self._picamera2.Picamera2(self.cfg.camera_num)
        except (IndexError, RuntimeError) as exc:
            self._close_network()
            raise CameraError(f"camera {self.cfg.camera_num} cannot be opened: {exc}") from exc
        try:
            config = self._cam.create_video_configuration(
                main={"size": self.size, "format": RGB_FORMAT},
                controls={"FrameRate": self.cfg.fps},
                buffer_count=4,
            )
            self._cam.align_configuration(config)
            self._cam.configure(config)
            if self._region is not None:
                rect = roi_of(self._region)
                self._cam.set_controls({"ScalerCrop": rect})
                if self._net is not None:
                    self._net.set_roi(rect)
                    log.info(
                        "camera %d: region %r is the sensor's inference ROI %s",
                        self.cfg.camera_num,
                        self._region.name,
                        rect,
                    )
        except BaseException:
            self._close_camera()
            self._close_network()
            raise

    def _load_network(self) -> None:
        if self._camera.get("Model") != "imx500":
            raise NetworkError(
                f"camera {self.cfg.camera_num} is a {self._camera.get('Model')!r}, not an "
                "IMX500 (the Raspberry Pi AI Camera)"
            )
        network = inspect_network(self.cfg.network)
        self._network = network
        self._net = SensorNetwork(network, camera_id=str(self._camera.get("Id", "")))
        self.state, self.reason = "loading", None
        self._loading_since = self._clock()
        self._upload = self._net.upload_percent()
        log.info(
            "camera %d: network %s (input %dx%d) handed to the sensor",
            self.cfg.camera_num,
            network.name,
            *self._net.input_size,
        )

    def _close_camera(self) -> None:
        cam, self._cam = self._cam, None
        job, self._job = self._job, None
        if cam is None:
            return
        try:
            if job is not None:  # picamera2 would run its stop job only after this one
                cam.cancel_all_and_flush()
            if self._started:
                cam.stop()
        finally:
            self._started = False
            cam.close()

    def _close_network(self) -> None:
        net, self._net = self._net, None
        if net is not None:
            net.close()

    def _fall_back(self, reason: str, retry: bool = True) -> None:
        """Frames go to the CPU from here; the sensor is tried again after the backoff."""
        with self._lock:
            was = self.state
            self.state, self.reason = "fallback", reason
            self.fallbacks += 1
            self._upload = None
            if retry:
                self._retry_at = self._clock() + self._retry_s
                self._retry_s = min(self._retry_s * 2, self.cfg.retry_max_s)
            else:
                self._retry_at = None
        log.warning(
            "camera %d: %s; the CPU classifies its frames%s",
            self.cfg.camera_num,
            reason,
            f" (the sensor is tried again in {self._retry_at - self._clock():.0f} s)"
            if self._retry_at is not None
            else "",
        )
        if was == "loading" or self._net is not None:
            self._close_network()

    def _retry(self) -> None:
        """The camera again, with the network (the sensor takes a network at start only)."""
        log.info("camera %d: trying the sensor's network again", self.cfg.camera_num)
        self._close_camera()
        self._open(with_network=True)
        self._start()

    def _start(self) -> None:
        self._cam.start()
        self._started = True
        if self.state == "loading":
            self._loading_since = self._clock()

    # -- frames ----------------------------------------------------------------------------
    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        self._start()
        number = 0
        origin = f"camera{self.cfg.camera_num}"
        while not stop.is_set():
            now = self._clock()
            if self._retry_at is not None and now >= self._retry_at and self.state == "fallback":
                self._retry_at = None
                self._retry()
            try:
                request = self._next_request()
            except TimeoutError:
                self._waited()
                continue
            try:
                sensor = self._sensor_output(request) if self._net is not None else None
                if sensor is None and self.state != "fallback":
                    continue  # the network runs (or loads) but this frame has no tensor
                demand = self.demand
                image = (
                    None  # classified on the sensor, and nothing needs its pixels
                    if sensor is not None and demand is not None and not demand.wanted()
                    else np.ascontiguousarray(request.make_array("main")[:, :, :3], dtype=np.uint8)
                )
            finally:
                request.release()
            number += 1
            yield Frame(number, image, origin, time.time(), sensor=sensor)

    def _next_request(self) -> Any:
        """The next completed request, waiting at most POLL_S (TimeoutError).  One capture
        job is kept across polls: picamera2 leaves a job whose wait timed out in its list,
        where it still takes a frame later, whose request is then never released (the
        camera runs out of requests) and ahead of which no stop job runs."""
        if self._job is None:
            self._job = self._cam.capture_request(wait=False)
        request = self._job.get_result(timeout=POLL_S)
        self._job = None
        return request

    def _waited(self) -> None:
        """No frame within POLL_S: an upload in progress (bounded), or a camera stalled."""
        if self.state != "loading" or self._net is None:
            return
        self._upload = self._net.upload_percent()
        waited = self._clock() - self._loading_since
        if waited > self.cfg.upload_timeout_s:
            self._fall_back(
                f"the network upload took longer than {self.cfg.upload_timeout_s:g} s "
                f"(at {self._upload if self._upload is not None else '?'} %)"
            )
            # the sensor is away without a network: the camera again, for the CPU
            self._close_camera()
            self._open(with_network=False)
            self._start()

    def _sensor_output(self, request: Any) -> SensorOutput | None:
        """The frame's output tensor as the daemon classifies it; a camera that has stopped
        sending tensors for ``tensor_timeout_s`` is a fault."""
        assert self._net is not None
        now = self._clock()
        try:
            scores = self._net.read(request.get_metadata())
        except NetworkError as exc:
            self._fall_back(str(exc))
            return None
        if scores is None:
            if self.state == "loading":
                self._upload = self._net.upload_percent()
                if now - self._loading_since > self.cfg.upload_timeout_s:
                    self._fall_back(
                        f"no output tensor {self.cfg.upload_timeout_s:g} s after the network "
                        "was handed to the sensor"
                    )
            elif self.state == "running" and now - self._last_tensor > self.cfg.tensor_timeout_s:
                self._fall_back(
                    f"the camera sent frames without output tensors for "
                    f"{self.cfg.tensor_timeout_s:g} s"
                )
            return None
        labels, source = self._labels()
        n = scores.scores.size
        if labels is not None and not n - 1 <= len(labels) <= n:
            self._fall_back(
                f"{source} has {len(labels)} labels but {self._net.file.name} outputs {n} classes",
                retry=False,
            )
            return None
        if self.state != "running":
            log.info(
                "camera %d: the network %s runs on the sensor",
                self.cfg.camera_num,
                self._net.file.name,
            )
            with self._lock:
                self.state, self.reason, self._upload = "running", None, None
                self._retry_s = self.cfg.retry_min_s
        self._last_tensor = now
        self._sensor_frames += 1
        if scores.dnn_ms is not None and scores.dsp_ms is not None:
            self._kpi.append((scores.dnn_ms, scores.dsp_ms))
        return SensorOutput(
            scores=scores.scores,
            labels=labels,
            labels_source=source,
            model=self._net.file.name,
            backend=BACKEND,
            ms=scores.dnn_ms if scores.dnn_ms is not None else 0.0,
        )

    def _labels(self) -> tuple[tuple[str, ...] | None, str]:
        assert self._net is not None
        if self._labels_file is not None:
            return self._labels_file, f"labels file {self.cfg.labels!r}"
        if self._net.labels is not None:
            return self._net.labels, f"labels in {self._net.file.name}'s intrinsics"
        return None, "the CPU model's labels"

    # -- health ----------------------------------------------------------------------------
    def describe(self) -> str:
        return f"imx500 (camera {self.cfg.camera_num}, network {self.cfg.network})"

    def sensor_status(self) -> str:
        if self.state == "loading":
            pct = self._upload
            return f"loading network {pct:.0f} %" if pct is not None else "loading network"
        if self.state == "running":
            return "running"
        return f"fallback: {self.reason}"

    def status(self) -> dict[str, Any]:
        kpi = list(self._kpi)
        return {
            H.sensor: self.sensor_status(),
            H.sensor_network: self._network.name if self._network else None,
            H.sensor_upload_percent: self._upload if self.state == "loading" else None,
            H.sensor_dnn_ms: round(statistics.median(k[0] for k in kpi), 3) if kpi else None,
            H.sensor_dsp_ms: round(statistics.median(k[1] for k in kpi), 3) if kpi else None,
        }

    def inference_status(self) -> dict[str, Any]:
        fields: dict[str, Any] = {H.fallbacks: self.fallbacks}
        if self.state == "fallback":
            fields[H.fallback_reason] = self.reason
            return fields
        fields[H.backend] = BACKEND
        fields[H.fallback_reason] = None
        if self._network is not None:
            fields[H.model] = self._network.name
            fields[H.model_sha256] = self._network.sha256
        return fields

    def progressing(self) -> bool:
        """An upload within its bound counts as progress (frames come after it)."""
        return (
            self.state == "loading"
            and self._clock() - self._loading_since <= self.cfg.upload_timeout_s
        )

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            self._close_camera()
        finally:
            self._close_network()
