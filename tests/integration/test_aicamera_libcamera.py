"""picamera2 0.3.38's own ``Picamera2`` class (open, configure, start, its listening thread
and event loop, ``capture_request``, ``make_array``, ``release``, ``stop``, ``close``) over
the simulated libcamera of tests/fakes/imx500_api, with picamera2's default ``DmaAllocator``
on the simulated ``/dev/dma_heap``.  What is checked is what an application sees of the
camera through picamera2: the frames, their pacing, the requests going round, the
configuration libcamera settles on, and what closing leaves behind."""

from __future__ import annotations

import gc
import itertools
import os
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.aicamera import (  # noqa: F401  (fixtures: aicamera, imx500_here, sensor_scores)
    PHOTOS,
    AiCamera,
    aicamera_fixture,
    imx500_here_fixture,
    imx500_sim,
    sensor_scores_fixture,
)
from tests.support import scaled, slowdown


def open_camera(
    size: tuple[int, int] = (224, 224),
    fmt: str = "BGR888",
    fps: float = 30.0,
    buffer_count: int = 4,
    **config: Any,
) -> Any:
    from picamera2 import Picamera2

    cam = Picamera2(0)
    try:
        cfg = cam.create_video_configuration(
            main={"size": size, "format": fmt},
            controls={"FrameRate": fps},
            buffer_count=buffer_count,
            **config,
        )
        cam.configure(cfg)
    except BaseException:
        cam.close()
        raise
    return cam


@pytest.fixture(name="camera")
def camera_fixture(imx500_here: AiCamera) -> Iterator[Any]:
    cam = open_camera()
    try:
        yield cam
    finally:
        cam.close()


def photo(path: Path, size: tuple[int, int]) -> np.ndarray:
    pixels: np.ndarray = imx500_sim._photo(str(path), size)
    return pixels


@pytest.mark.parametrize(
    ("size", "fmt", "stride"),
    [
        ((224, 224), "BGR888", 672),
        ((260, 260), "BGR888", 800),  # 780 bytes a line, padded to the ISP's 32
        ((224, 224), "RGB888", 672),
    ],
)
def test_make_array_gives_the_photos_in_the_format_asked(
    imx500_here: AiCamera, size: tuple[int, int], fmt: str, stride: int
) -> None:
    cam = open_camera(size, fmt)
    try:
        main = cam.camera_configuration()["main"]
        assert (main["size"], main["format"], main["stride"]) == (size, fmt, stride)
        cam.start()
        photos = [photo(p, size) for p in PHOTOS]
        sequences = []
        for _ in range(len(PHOTOS) + 1):
            request = cam.capture_request(wait=scaled(5.0))
            try:
                array = request.make_array("main")
                sequence = request.request.buffers[cam.stream_map["main"]].metadata.sequence
            finally:
                request.release()
            assert array.shape == (size[1], size[0], 3)
            rgb = array if fmt == "BGR888" else array[:, :, ::-1]  # libcamera's names
            # the photos in turn, one a frame (frames the application was too slow for
            # are skipped by picamera2, so the frame's own sequence number says which)
            assert np.array_equal(rgb, photos[(sequence - 1) % len(PHOTOS)])
            sequences.append(sequence)
        assert sequences == sorted(set(sequences))
    finally:
        cam.close()


def test_the_camera_has_buffer_count_requests_and_capture_times_out_without_one(
    imx500_here: AiCamera,
) -> None:
    """Requests held by the application never go back to the camera: after
    ``buffer_count`` of them no frame comes, ``capture_request(wait=…)`` times out, and the
    job whose wait timed out takes the next frame once a request is released."""
    cam = open_camera(buffer_count=3)
    try:
        cam.start()
        held = [cam.capture_request(wait=scaled(5.0)) for _ in range(3)]
        job = cam.capture_request(wait=False)
        with pytest.raises(TimeoutError):
            job.get_result(timeout=0.5)
        with pytest.raises(TimeoutError):
            cam.capture_request(wait=0.3)  # a second job, queued behind the first
        held.pop(0).release()
        request = job.get_result(timeout=scaled(5.0))
        held.append(request)
        sequences = [r.request.buffers[cam.stream_map["main"]].metadata.sequence for r in held]
        assert sequences == sorted(sequences) and len(set(sequences)) == 3
        for r in held:
            r.release()
        cam.cancel_all_and_flush()  # the second job would take a frame before stop()
        cam.stop()
    finally:
        cam.close()


def test_frames_are_paced_by_the_frame_rate_within_the_sensor_mode(
    imx500_here: AiCamera,
) -> None:
    cam = open_camera(fps=10.0)
    try:
        assert cam.camera_configuration()["sensor"]["output_size"] == (2028, 1520)
        cam.start()
        stamps = []
        for _ in range(8):
            request = cam.capture_request(wait=scaled(5.0))
            sequence = request.request.buffers[cam.stream_map["main"]].metadata.sequence
            stamps.append((sequence, request.get_metadata()["SensorTimestamp"]))
            request.release()
        # seconds a frame (a frame picamera2 skipped for a slow reader counts in its gap)
        gaps = [(tb - ta) / 1e9 / (sb - sa) for (sa, ta), (sb, tb) in itertools.pairwise(stamps)]
        assert 0.09 <= statistics.median(gaps) <= 0.1 + 0.05 * slowdown()
    finally:
        cam.close()
    # the full-resolution mode is slower than asked for: libcamera clamps the frame duration
    cam = open_camera(fps=30.0, sensor={"output_size": (4056, 3040)})
    try:
        assert cam.camera_controls["FrameDurationLimits"][0] == 100000
        cam.start()
        request = cam.capture_request(wait=scaled(5.0))
        assert request.get_metadata()["FrameDuration"] == 100000
        request.release()
    finally:
        cam.close()


def test_stop_and_start_again(camera: Any) -> None:
    camera.start()
    camera.capture_request(wait=scaled(5.0)).release()
    camera.stop()
    with pytest.raises(TimeoutError):  # a stopped camera completes no request
        camera.capture_request(wait=0.3)
    camera.cancel_all_and_flush()
    camera.start()
    request = camera.capture_request(wait=scaled(5.0))
    assert request.make_array("main").shape == (224, 224, 3)
    request.release()
    camera.stop()


def test_a_camera_opened_twice_is_busy_until_closed(camera: Any) -> None:
    from picamera2 import Picamera2

    with pytest.raises(RuntimeError, match="did not complete") as err:
        Picamera2(0)
    assert "Failed to acquire camera" in str(err.value.__cause__)
    camera.close()
    again = Picamera2(0)
    again.close()


def _descriptors(fake_root: Path) -> set[str]:
    """This process's open files, but the simulation's own CPU meter."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.startswith(str(fake_root / "cpu")):
            out.add(f"{fd} {target}")
    return out


def test_close_leaves_no_thread_and_no_descriptor(imx500_here: AiCamera) -> None:
    def run() -> None:
        cam = open_camera(buffer_count=4)
        cam.start()
        for _ in range(6):
            cam.capture_request(wait=scaled(5.0)).release()
        cam.stop()
        cam.close()

    run()  # the first run imports picamera2 and opens what stays open for the process
    gc.collect()
    threads, fds = set(threading.enumerate()), _descriptors(imx500_here.root)
    run()
    run()
    gc.collect()
    assert set(threading.enumerate()) == threads
    assert _descriptors(imx500_here.root) == fds
