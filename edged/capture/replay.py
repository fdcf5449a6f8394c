"""Replay image files, directories of images and video files, optionally looped and paced."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edged.capture.base import Frame, FrameSource, register
from edged.config import ReplayCaptureConfig
from edged.preprocess.image import ImageError, load_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".h264", ".mjpeg", ".m4v", ".ts"}


def bundled_samples() -> Path:
    return Path(str(resources.files("edged") / "samples"))


def expand(paths: list[str], recursive: bool = False) -> list[Path]:
    """Files to replay, in order: files as given, directory contents sorted by name."""
    if not paths:
        samples = bundled_samples()
        return sorted(f for f in samples.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            out.extend(
                sorted(f for f in p.glob(pattern) if not f.is_dir() and not f.name.startswith("."))
            )
        else:
            out.append(p)
    return out


class _Listing:
    """The files of a looped replay, listed again only when one of its directories changed
    (or ``MAX_AGE_S`` passed: a change within the file system's timestamp granularity of
    the last listing is still seen), not on every pass over a few files."""

    MAX_AGE_S = 1.0

    def __init__(self, paths: list[str], recursive: bool) -> None:
        self.paths = paths
        self.recursive = recursive
        given = [Path(p) for p in paths] or [bundled_samples()]
        self._dirs = [p for p in given if p.is_dir()]
        self._files: list[Path] = []
        self._stamp: tuple[int, ...] | None = None
        self._listed_at = -math.inf

    def files(self) -> list[Path]:
        try:
            stamp: tuple[int, ...] | None = tuple(os.stat(d).st_mtime_ns for d in self._dirs)
        except OSError:
            stamp = None
        now = time.monotonic()
        if (
            self.recursive  # a change below the top directories does not show in their mtime
            or stamp is None
            or stamp != self._stamp
            or now - self._listed_at >= self.MAX_AGE_S
        ):
            self._files = expand(self.paths, self.recursive)
            self._stamp, self._listed_at = stamp, now
        return self._files


def _video_frames(path: Path) -> Iterator[npt.NDArray[np.uint8]]:
    try:
        import av
    except ImportError as exc:
        raise ImageError(f"{path}: video needs PyAV (pip install 'edged[video]')") from exc
    try:
        with av.open(str(path)) as container:
            for vf in container.decode(video=0):
                yield np.asarray(vf.to_ndarray(format="rgb24"), dtype=np.uint8)
    except av.FFmpegError as exc:
        raise ImageError(f"cannot decode video {str(path)!r}: {exc}") from exc


@register
class ReplaySource(FrameSource):
    type_key = "replay"

    def __init__(self, cfg: ReplayCaptureConfig, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.live = cfg.fps > 0
        self._bad: set[Path] = set()
        self._min_size = input_size
        for p in cfg.paths:
            if not Path(p).exists():
                raise FileNotFoundError(f"capture.paths: {p!r} does not exist")
        if not expand(cfg.paths, cfg.recursive):
            raise FileNotFoundError(f"capture.paths {cfg.paths!r} hold no files")

    def describe(self) -> str:
        pace = f"{self.cfg.fps:g} fps" if self.cfg.fps else "unpaced"
        return f"replay ({pace}{', looped' if self.cfg.loop else ''})"

    def _decode(self, path: Path) -> Iterator[npt.NDArray[np.uint8]]:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            yield from _video_frames(path)
        else:
            yield load_image(path, self._min_size)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        number = 0
        period = 1.0 / self.cfg.fps if self.cfg.fps > 0 else 0.0
        next_due = time.monotonic()
        listing = _Listing(self.cfg.paths, self.cfg.recursive)
        while not stop.is_set():
            files = listing.files()
            produced = False
            for path in files:
                if stop.is_set():
                    return
                try:
                    for image in self._decode(path):
                        if period:
                            delay = next_due - time.monotonic()
                            if delay > 0 and stop.wait(delay):
                                return
                            next_due = max(next_due + period, time.monotonic() - period)
                        number += 1
                        produced = True
                        yield Frame(number, image, path.name, time.time())
                        if stop.is_set():
                            return
                except (ImageError, OSError) as exc:
                    if path not in self._bad:  # counted and logged once, not on every loop
                        self._bad.add(path)
                        self.skipped += 1
                        log.warning("skipping %s: %s", path, exc)
            if not self.cfg.loop:
                return
            if not produced:
                log.error("no readable frames in %s; retrying in 5 s", self.cfg.paths)
                if stop.wait(5.0):
                    return
