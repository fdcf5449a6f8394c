"""Replay image files, directories of images and video files, optionally looped and paced."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edged.capture.base import Frame, FrameSource, register
from edged.config import ReplayCaptureConfig
from edged.preprocess.image import ImageError, load_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
DECODED_MAX_BYTES = 16 * 2**20  # decoded images a looped replay keeps between passes
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


class _Decoded:
    """A looped replay's decoded images, kept while they fit in ``max_bytes``, so that each
    pass over a few files does not decode them again; a file is decoded again when its
    size or modification time changed.  The arrays are read-only: every pass shares them."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._images: dict[Path, tuple[tuple[int, int], npt.NDArray[np.uint8]]] = {}
        self._bytes = 0

    def get(self, path: Path, decode: Callable[[], npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        kept = self._images.get(path)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        image = decode()
        if kept is not None:
            del self._images[path]
            self._bytes -= kept[1].nbytes
        if self._bytes + image.nbytes <= self.max_bytes:
            image.flags.writeable = False
            self._images[path] = (stamp, image)
            self._bytes += image.nbytes
        return image


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

    def _decode(self, path: Path, decoded: _Decoded | None) -> Iterator[npt.NDArray[np.uint8]]:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            yield from _video_frames(path)
        elif decoded is not None:
            yield decoded.get(path, lambda: load_image(path, self._min_size))
        else:
            yield load_image(path, self._min_size)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        number = 0
        period = 1.0 / self.cfg.fps if self.cfg.fps > 0 else 0.0
        next_due = time.monotonic()
        listing = _Listing(self.cfg.paths, self.cfg.recursive)
        decoded = _Decoded(DECODED_MAX_BYTES) if self.cfg.loop else None
        while not stop.is_set():
            files = listing.files()
            produced = False
            for path in files:
                if stop.is_set():
                    return
                try:
                    for image in self._decode(path, decoded):
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
