"""The collected frames and the dataset they join once labelled.

A frame is known by an opaque id (its file stem, checked against a strict pattern and then
looked up in a listing of the folder): no path from a request ever reaches the filesystem.
The dataset is the layout ``edged train DATA_DIR`` reads, one folder per class, each photo
a copy of the collected JPEG with its JSON sidecar beside it.  The folders are the truth:
a photo moved between class folders by hand carries its new label.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.train.dataset import MIN_IMAGES, check_label

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SIDECAR = ".json"
MAX_LABEL = 64
WARN_BELOW = 10  # the page warns about a class with fewer photos


class LearnError(Exception):
    """A request the store refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_id(value: str, what: str = "frame") -> str:
    if not ID_PATTERN.match(value) or ".." in value:
        raise LearnError(f"unknown {what} id {value!r}", 404)
    return value


def valid_label(value: Any) -> str:
    """A class name edged train accepts and that is a plain folder name, or LearnError."""
    if not isinstance(value, str):
        raise LearnError(f"label {value!r} must be a string (or null to unlabel)")
    name = unicodedata.normalize("NFC", value)
    problem = check_label(name)
    if problem is None and name in (".", ".."):
        problem = "is a folder reference"
    if problem is None and name.startswith("."):
        problem = "starts with a dot (edged train ignores hidden folders)"
    if problem is None and len(name) > MAX_LABEL:
        problem = f"is longer than {MAX_LABEL} characters"
    if problem is None and "\x00" in name:
        problem = "contains a NUL character"
    if problem:
        raise LearnError(
            f"label {value!r} {problem}: a label is a class name like 'glass' (no slash, no "
            "leading dot or space, no control character)"
        )
    return name


@dataclass(frozen=True)
class Frame:
    id: str
    image: Path  # in the collect folder, or the dataset copy once the collect folder lost it
    sidecar: Path | None
    label: str | None


def _sidecar_meta(path: Path | None) -> dict[str, Any]:
    """The sidecar's fields; a missing or hand-broken sidecar gives none (logged)."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("ignoring the unreadable sidecar %s: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring the sidecar %s: not a JSON object", path)
        return {}
    return data


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class Store:
    """Collected frames (``collect_dir``) and the labelled dataset (``dataset``)."""

    def __init__(self, collect_dir: Path, dataset: Path, max_bytes: int) -> None:
        self.collect_dir = collect_dir
        self.dataset = dataset
        self.max_bytes = max_bytes
        self.dataset.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # -- what is on disk -----------------------------------------------------------------
    def _collected(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        try:
            entries = list(os.scandir(self.collect_dir))
        except FileNotFoundError:
            return found
        for e in entries:
            name = e.name
            stem, dot, suffix = name.rpartition(".")
            if dot and "." + suffix.lower() in IMAGE_SUFFIXES and ID_PATTERN.match(stem):
                found[stem] = Path(e.path)
        return found

    def class_dirs(self) -> dict[str, Path]:
        """The dataset's class folders; one whose name is not a valid label is skipped."""
        out: dict[str, Path] = {}
        try:
            entries = sorted(os.scandir(self.dataset), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        for e in entries:
            if e.name.startswith(".") or not e.is_dir():
                continue
            name = unicodedata.normalize("NFC", e.name)
            if check_label(name) is not None:
                log.warning("dataset folder %r is not a valid class name: ignored", e.name)
                continue
            out[name] = Path(e.path)
        return out

    def labelled(self) -> dict[str, tuple[str, Path]]:
        """id -> (class, photo) for every photo of the dataset."""
        out: dict[str, tuple[str, Path]] = {}
        for name, folder in self.class_dirs().items():
            for e in os.scandir(folder):
                stem, dot, suffix = e.name.rpartition(".")
                if not dot or "." + suffix.lower() not in IMAGE_SUFFIXES or e.name[0] == ".":
                    continue
                if stem in out:
                    log.warning(
                        "photo %s is in both %r and %r: it counts as %r",
                        stem, out[stem][0], name, out[stem][0],
                    )  # fmt: skip
                    continue
                out[stem] = (name, Path(e.path))
        return out

    def frames(self) -> list[Frame]:
        """Every collected frame, newest first (ids begin with their UTC time)."""
        collected = self._collected()
        labelled = self.labelled()
        out = []
        # a labelled copy whose collected frame was trimmed is still listed (its sidecar
        # says it was collected); photos put in the dataset by hand are not frames
        kept = {i for i, (_, p) in labelled.items() if p.with_suffix(SIDECAR).exists()}
        for fid in set(collected) | {i for i in kept if ID_PATTERN.match(i)}:
            label, copy = labelled.get(fid, (None, None))
            image = collected.get(fid) or copy
            assert image is not None
            side = image.with_suffix(SIDECAR)
            out.append(Frame(fid, image, side if side.exists() else None, label))
        out.sort(key=lambda f: f.id, reverse=True)
        return out

    def frame(self, fid: str) -> Frame:
        check_id(fid)
        for f in self.frames():
            if f.id == fid:
                return f
        raise LearnError(f"unknown frame id {fid!r}", 404)

    # -- the API's views -----------------------------------------------------------------
    def item(self, f: Frame) -> dict[str, Any]:
        meta = _sidecar_meta(f.sidecar)
        return {
            "id": f.id,
            "image_url": f"api/collected/{f.id}/image",
            "reasons": _as_list(meta.get("reasons")),
            "top_k": _as_list(meta.get("top_k")),
            "camera": _as_text(meta.get("camera")),
            "region": _as_text(meta.get("region")),
            "source": _as_text(meta.get("source")),
            "ts": _as_text(meta.get("ts")),
            "label": f.label,
        }

    def page(self, offset: int, limit: int) -> dict[str, Any]:
        frames = self.frames()
        return {
            "items": [self.item(f) for f in frames[offset : offset + limit]],
            "total": len(frames),
        }

    def counts(self) -> dict[str, Any]:
        per_class: dict[str, int] = {}
        size = 0
        for name, folder in self.class_dirs().items():
            n = 0
            for e in os.scandir(folder):
                if e.name.startswith("."):
                    continue
                size += e.stat().st_size
                if e.name.lower().endswith(IMAGE_SUFFIXES):
                    n += 1
            per_class[name] = n
        warnings = [
            f"class {c!r} has {n} photo(s): label at least {WARN_BELOW}"
            for c, n in per_class.items()
            if n < WARN_BELOW
        ]
        if len(per_class) < 2:
            warnings.append("training needs at least 2 classes")
        return {
            "classes": per_class,
            "total": sum(per_class.values()),
            "bytes": size,
            "max_bytes": self.max_bytes,
            "min_per_class": MIN_IMAGES + 1,
            "warn_below": WARN_BELOW,
            "warnings": warnings,
        }

    # -- changes -------------------------------------------------------------------------
    def set_label(self, fid: str, label: Any) -> dict[str, Any]:
        check_id(fid)
        name = None if label is None else valid_label(label)
        with self._lock:
            f = self.frame(fid)
            if name == f.label:
                return self.item(f)
            if name is not None:
                self._check_room(f)
                self._check_image(f)
                self._copy_in(f, name)
            self._remove_copies(fid, keep=name)
            return self.item(self.frame(fid))

    def delete(self, fid: str) -> None:
        check_id(fid)
        with self._lock:
            f = self.frame(fid)
            self._remove_copies(fid, keep=None)
            collected = self._collected().get(fid)
            if collected is not None:
                collected.unlink(missing_ok=True)
                collected.with_suffix(SIDECAR).unlink(missing_ok=True)
            log.info("frame %s deleted (was %s)", f.id, f.label or "unlabelled")

    def _check_room(self, f: Frame) -> None:
        used = self.counts()["bytes"]
        add = f.image.stat().st_size + (f.sidecar.stat().st_size if f.sidecar else 0)
        if used + add > self.max_bytes:
            raise LearnError(
                f"the dataset is full ({used / 1e6:.1f} MB of learn.max_mb "
                f"{self.max_bytes / 1e6:g}): delete photos or raise learn.max_mb",
                507,
            )

    def _check_image(self, f: Frame) -> None:
        from edged.preprocess.image import ImageError, load_image

        try:
            load_image(f.image)
        except (ImageError, OSError) as exc:
            raise LearnError(f"frame {f.id} cannot be decoded ({exc}): delete it", 422) from None

    def _copy_in(self, f: Frame, name: str) -> None:
        folder = self.dataset / name
        folder.mkdir(exist_ok=True)
        pairs = [(f.image, folder / f"{f.id}{f.image.suffix.lower()}")]
        if f.sidecar is not None:
            pairs.append((f.sidecar, folder / f"{f.id}{SIDECAR}"))
        for src, dst in pairs:
            if src == dst:
                continue
            tmp = dst.with_name(f".{dst.name}.tmp")
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise LearnError(f"cannot add {f.id} to class {name!r}: {exc}", 507) from None

    def _remove_copies(self, fid: str, keep: str | None) -> None:
        for name, folder in self.class_dirs().items():
            if name == keep:
                continue
            for e in list(os.scandir(folder)):
                stem, dot, _ = e.name.rpartition(".")
                if dot and stem == fid:
                    os.unlink(e.path)
            with contextlib.suppress(OSError):
                folder.rmdir()  # an emptied class folder goes
