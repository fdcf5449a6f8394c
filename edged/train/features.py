"""Feature vectors: the base model's classifier input for each image, computed with exactly
the daemon's decoding and preprocessing, and cached by image content."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from edged.config import ModelConfig
from edged.infer.cpu import CpuBackend
from edged.infer.model import inspect_model, sha256_file
from edged.infer.runtime import get_runtime, runtime_version
from edged.preprocess import ImageError, decode_size, load_image, to_model_input
from edged.train.tflite import BaseModel

log = logging.getLogger(__name__)

# Light augmentation, applied to the decoded frame before the daemon's preprocessing:
# a mirror image and crops keeping 85 % of each side.
AUGMENTATIONS = ("flip", "crop_top_left", "crop_bottom_right", "flip_crop_center")
CROP_SHARE = 0.85
PREFETCH = 4  # images decoded ahead of inference
RECIPE_VERSION = 1

Frame = npt.NDArray[np.uint8]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edged" / "features"


def _augment(frame: npt.NDArray[np.uint8], kind: str) -> npt.NDArray[np.uint8]:
    h, w = frame.shape[:2]
    ch, cw = max(1, round(h * CROP_SHARE)), max(1, round(w * CROP_SHARE))
    if kind == "flip":
        return frame[:, ::-1]
    if kind == "crop_top_left":
        return frame[:ch, :cw]
    if kind == "crop_bottom_right":
        return frame[h - ch :, w - cw :]
    if kind == "flip_crop_center":
        top, left = (h - ch) // 2, (w - cw) // 2
        return frame[top : top + ch, left : left + cw][:, ::-1]
    raise ValueError(f"unknown augmentation {kind!r}")


T = TypeVar("T")
R = TypeVar("R")


def _prefetch(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: list[T], ahead: int
) -> Iterator[R]:
    """``map(fn, items)`` in order, at most ``ahead`` items decoded before they are used
    (``Executor.map`` would decode every image at once)."""
    pending: deque[Future[R]] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            break
    while pending:
        result = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield result


@dataclass(frozen=True)
class ImageFeatures:
    path: Path
    sha256: str
    values: npt.NDArray[np.int8] | None  # [1 + augmentations, features]; None: unreadable
    cached: bool
    error: str = ""


class FeatureExtractor:
    """Runs the base model's feature graph on the CPU, as the daemon would run the model:
    each file decoded by :func:`~edged.preprocess.load_image` at
    :func:`~edged.preprocess.decode_size`, then :func:`~edged.preprocess.to_model_input`
    (the two halves of :func:`~edged.preprocess.prepare`), augmented copies in between.

    ``serving`` is the model configuration the trained model will be served with: its crop,
    resize filter and normalization are the ones applied here, and the decode size follows
    from it as in the daemon's capture stage.
    """

    def __init__(
        self,
        base: BaseModel,
        base_sha256: str,
        serving: ModelConfig,
        cache_dir: Path | None,
    ) -> None:
        self.serving = serving
        self._tmp = tempfile.TemporaryDirectory(prefix="edged-train-")
        path = Path(self._tmp.name) / "features.tflite"
        path.write_bytes(base.feature_model())
        self.backend = CpuBackend(inspect_model(path), serving.model_copy(update={"sha256": ""}))
        spec = self.backend.input_spec
        self.spec = spec
        self.decode_size = decode_size(spec, serving.crop, serving.crop_fraction)
        runtime = get_runtime()
        recipe = {
            "version": RECIPE_VERSION,
            "runtime": [runtime.name, runtime_version(runtime)],
            "base": base_sha256,
            "crop": serving.crop,
            "crop_fraction": serving.crop_fraction,
            "resample": serving.resample,
            "mean": spec.mean,
            "std": spec.std,
            "input": [spec.height, spec.width, str(spec.dtype), spec.scale, spec.zero_point],
            "decode": self.decode_size,
            "augment": [*AUGMENTATIONS, CROP_SHARE],
        }
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        self.cache = cache_dir / digest[:16] if cache_dir is not None else None

    def close(self) -> None:
        self.backend.close()
        self._tmp.cleanup()

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _invoke(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.int8]:
        tensor = to_model_input(
            frame,
            self.spec,
            crop=self.serving.crop,
            crop_fraction=self.serving.crop_fraction,
            resample=self.serving.resample,
        )
        return np.array(self.backend.invoke(tensor), dtype=np.int8)

    def _cache_file(self, sha: str) -> Path | None:
        return None if self.cache is None else self.cache / sha[:2] / f"{sha}.npy"

    def _load_cached(self, sha: str, variants: int) -> npt.NDArray[np.int8] | None:
        f = self._cache_file(sha)
        if f is None or not f.exists():
            return None
        try:
            arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", f, exc)
            return None
        if arr.dtype != np.int8 or arr.ndim != 2 or arr.shape[0] < variants:
            return None
        return np.asarray(arr[:variants], dtype=np.int8)

    def _store(self, sha: str, values: npt.NDArray[np.int8]) -> None:
        f = self._cache_file(sha)
        if f is None:
            return
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                np.save(fh, values, allow_pickle=False)
            os.replace(tmp, f)
        except OSError as exc:
            log.warning("cannot write the feature cache %s: %s", f, exc)

    def _decode(self, path: Path) -> tuple[str, npt.NDArray[np.uint8] | None, str]:
        try:
            sha = sha256_file(path)
        except OSError as exc:
            return "", None, str(exc)
        try:
            return sha, load_image(path, self.decode_size), ""
        except (ImageError, OSError) as exc:
            return sha, None, str(exc)

    def extract(
        self,
        paths: list[Path],
        augment: bool,
        progress: Callable[[ImageFeatures], None] | None = None,
    ) -> Iterator[ImageFeatures]:
        """Features of each path in order; decoding overlaps with inference."""
        augs = AUGMENTATIONS if augment else ()
        variants = 1 + len(augs)

        def prepare(path: Path) -> tuple[str, npt.NDArray[np.int8] | None, Frame | None, str]:
            try:
                sha = sha256_file(path)
            except OSError as exc:
                return "", None, None, str(exc)
            hit = self._load_cached(sha, variants)
            if hit is not None:
                return sha, hit, None, ""
            _, frame, error = self._decode(path)
            return sha, None, frame, error

        with ThreadPoolExecutor(max_workers=2) as pool:
            for path, (sha, hit, frame, error) in zip(
                paths, _prefetch(pool, prepare, paths, PREFETCH), strict=True
            ):
                if hit is not None:
                    item = ImageFeatures(path, sha, hit, cached=True)
                elif frame is None:
                    log.warning("skipping %s: %s", path, error)
                    item = ImageFeatures(path, sha, None, cached=False, error=error)
                else:
                    try:
                        rows = [self._invoke(frame)]
                        rows += [self._invoke(_augment(frame, a)) for a in augs]
                    except ImageError as exc:
                        log.warning("skipping %s: %s", path, exc)
                        item = ImageFeatures(path, sha, None, cached=False, error=str(exc))
                    else:
                        values = np.stack(rows)
                        self._store(sha, values)
                        item = ImageFeatures(path, sha, values, cached=False)
                if progress is not None:
                    progress(item)
                yield item
