"""Learn from the field: keep the frames worth labelling (ambiguous, low-scoring, of given
classes, or one every N seconds) as JPEG files with a JSON sidecar holding their
classification, in a folder of bounded size where the oldest frames go first.

Sorted into a folder per class, they are training data for ``edged train``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from edged.classify import Classification
from edged.config import CollectConfig

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
SIDECAR = ".json"


@dataclass(frozen=True)
class Collected:
    image: Path
    sidecar: Path
    reasons: tuple[str, ...]


class Collector:
    """Decides which classified frames to keep and keeps them, within ``max_mb``.

    The capture stage hands every frame to :meth:`hold` (the last ``window`` are kept in
    memory, so nothing travels with the frame through the pipeline); the publish stage
    calls :meth:`offer` with the frame's classification.
    """

    def __init__(
        self,
        cfg: CollectConfig,
        device: str = "",
        model: str = "",
        window: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not cfg.dir:
            raise ValueError("collect.dir is empty: collecting is off")
        self.cfg = cfg
        self.dir = Path(cfg.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.model = model
        self.max_bytes = int(cfg.max_mb * 1_000_000)
        self.clock = clock
        self._classes = {c.lower() for c in cfg.classes}
        self._frames: OrderedDict[int, npt.NDArray[np.uint8]] = OrderedDict()
        self._window = window
        self._lock = threading.Lock()
        self._last_periodic: float | None = None
        self.saved = 0
        self.missed = 0  # selected, but the frame had left the window
        self.deleted = 0
        self._store: deque[tuple[str, int]] = deque()
        self.bytes = 0
        self._scan()

    def _scan(self) -> None:
        """What an earlier run left: counted, so the bound holds across restarts."""
        sizes: dict[str, int] = {}
        for p in self.dir.iterdir():
            if p.is_file() and p.suffix.lower() in (".jpg", SIDECAR):
                sizes[p.stem] = sizes.get(p.stem, 0) + p.stat().st_size
        for stem in sorted(sizes):
            self._store.append((stem, sizes[stem]))
            self.bytes += sizes[stem]

    def hold(self, number: int, image: npt.NDArray[np.uint8]) -> None:
        with self._lock:
            self._frames[number] = image
            while len(self._frames) > self._window:
                self._frames.popitem(last=False)

    def reasons(self, result: Classification, now: float) -> tuple[str, ...]:
        cfg = self.cfg
        why = []
        top = result.top1
        if cfg.ambiguous and result.ambiguous:
            why.append("ambiguous")
        if cfg.below_score > 0 and (top is None or top.score < cfg.below_score):
            why.append(f"below_score {cfg.below_score:g}")
        if self._classes and top is not None and top.label.lower() in self._classes:
            why.append(f"class {top.label}")
        if cfg.every_s > 0 and (
            self._last_periodic is None or now - self._last_periodic >= cfg.every_s
        ):
            why.append(f"every {cfg.every_s:g} s")
        return tuple(why)

    def offer(
        self, number: int, source: str, result: Classification, region: str | None = None
    ) -> Collected | None:
        """Keep frame ``number`` when a rule selects it; returns what was written."""
        now = self.clock()
        why = self.reasons(result, now)
        with self._lock:
            image = self._frames.pop(number, None) if why else None
            for n in [n for n in self._frames if n < number]:
                del self._frames[n]  # older frames were not selected: let them go
        if not why:
            return None
        if image is None:
            self.missed += 1
            return None
        if any(r.startswith("every") for r in why):
            self._last_periodic = now
        return self._save(image, number, source, result, why, now, region)

    def _save(
        self,
        image: npt.NDArray[np.uint8],
        number: int,
        source: str,
        result: Classification,
        why: tuple[str, ...],
        now: float,
        region: str | None = None,
    ) -> Collected | None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:]
        stem = f"{stamp}Z-{number:08d}"
        jpg, side = self.dir / f"{stem}.jpg", self.dir / f"{stem}{SIDECAR}"
        top = result.top1
        meta: dict[str, Any] = {
            "image": jpg.name,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:] + "Z",
            "device": self.device,
            "model": self.model,
            "source": source,
            "frame": number,
            "region": region,
            "label": top.label if top else None,
            "score": round(top.score, 5) if top else None,
            "top_k": [c.as_dict() for c in result.top_k],
            "ambiguous": result.ambiguous,
            "reasons": list(why),
        }
        # each file under a hidden name first, the sidecar before the JPEG: a reader that
        # lists the folder never sees half a JPEG, nor a JPEG without its sidecar
        tmp_jpg, tmp_side = (p.with_name(f".{p.name}.tmp") for p in (jpg, side))
        try:
            Image.fromarray(image).save(tmp_jpg, "JPEG", quality=JPEG_QUALITY)
            tmp_side.write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", "utf-8")
            os.replace(tmp_side, side)
            os.replace(tmp_jpg, jpg)
        except OSError as exc:
            log.warning("cannot keep frame %d in %s: %s", number, self.dir, exc)
            for p in (jpg, side, tmp_jpg, tmp_side):
                p.unlink(missing_ok=True)
            return None
        size = jpg.stat().st_size + side.stat().st_size
        self._store.append((stem, size))
        self.bytes += size
        self.saved += 1
        self._trim()
        return Collected(jpg, side, why)

    def _trim(self) -> None:
        """Delete the oldest frames until the folder is within ``max_mb``."""
        while self.bytes > self.max_bytes and len(self._store) > 1:
            stem, size = self._store.popleft()
            for suffix in (".jpg", SIDECAR):
                try:
                    os.unlink(self.dir / f"{stem}{suffix}")
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cannot delete %s%s: %s", stem, suffix, exc)
            self.bytes -= size
            self.deleted += 1
