"""``edged capture``: frames from the configured source saved as JPEG training photos."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from PIL import Image

from edged.capture import open_source
from edged.config import Config
from edged.engine import open_engine
from edged.train.dataset import check_label

log = logging.getLogger(__name__)

JPEG_QUALITY = 92


class CaptureError(Exception):
    """The frames cannot be captured or saved; the message says why."""


def _free_name(folder: Path, stamp: str, n: int) -> Path:
    path = folder / f"{stamp}-{n:04d}.jpg"
    k = 1
    while path.exists():
        path = folder / f"{stamp}-{n:04d}-{k}.jpg"
        k += 1
    return path


def capture(
    cfg: Config,
    root: Path,
    label: str,
    count: int,
    interval_s: float,
    stop: threading.Event | None = None,
) -> list[Path]:
    """Save ``count`` frames, one every ``interval_s`` seconds, as ``root/label/*.jpg``.

    Frames are the daemon's own: the configured source, opened at the size the configured
    model's preprocessing needs.  A source that ends early leaves fewer files.
    """
    problem = check_label(label)
    if problem:
        raise CaptureError(f"label {label!r} {problem}: it names a folder and a class")
    if count < 1:
        raise CaptureError(f"--count {count}: give at least 1 frame")
    if interval_s < 0:
        raise CaptureError(f"--interval {interval_s}: must be 0 or more seconds")
    folder = root / label
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptureError(f"cannot create {str(folder)!r}: {exc}") from exc
    stop = stop or threading.Event()
    engine = open_engine(cfg.model, cfg.classify)
    try:
        size = engine.capture_size()
    finally:
        engine.close()
    saved: list[Path] = []
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    next_due = 0.0
    with open_source(cfg.capture, size) as source:
        for frame in source.frames(stop):
            now = time.monotonic()
            if now < next_due:
                continue  # a live source: keep the newest frame when the interval is up
            path = _free_name(folder, stamp, len(saved) + 1)
            try:
                assert frame.image is not None  # no pixel demand set: every frame has them
                Image.fromarray(frame.image).save(path, "JPEG", quality=JPEG_QUALITY)
            except OSError as exc:
                raise CaptureError(f"cannot write {str(path)!r}: {exc}") from exc
            saved.append(path)
            log.info("saved %s (%d/%d)", path, len(saved), count)
            if len(saved) >= count:
                break
            next_due = now + interval_s
            if not source.live and interval_s > 0 and stop.wait(interval_s):
                break
    return saved
