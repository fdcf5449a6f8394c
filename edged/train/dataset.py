"""A training set on disk: one folder per class, the folder name being the label."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from edged.infer.model import parse_label_lines

log = logging.getLogger(__name__)

MIN_CLASSES = 2
MIN_IMAGES = 5
BACKGROUND = "background"


class DatasetError(ValueError):
    """A training folder edged train cannot use; the message names what to fix."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    files: dict[str, list[Path]]  # candidate files per class, sorted by name
    ignored: list[Path] = field(default_factory=list)  # loose files beside the class folders

    def samples(self) -> list[Sample]:
        return [Sample(p, i) for i, c in enumerate(self.classes) for p in self.files[c]]


def check_label(name: str) -> str | None:
    """Why ``name`` cannot be a class label (it becomes a line of ``labels.txt`` and an MQTT
    payload value), or None when it can."""
    if not name.strip():
        return "is blank"
    if name != name.strip():
        return "has leading or trailing spaces"
    if "/" in name or "\\" in name:
        return "contains a slash"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "contains a control character (a newline, tab or similar)"
    return None


def label_lines(classes: list[str]) -> list[str]:
    """The lines of ``labels.txt``: the labels, or ``index label`` lines when plain lines
    would be read back otherwise (every label looking like "1 apple", "2 pear")."""
    if parse_label_lines(list(classes)) == classes:
        return list(classes)
    return [f"{i} {c}" for i, c in enumerate(classes)]


def order_classes(names: list[str]) -> list[str]:
    """Sorted by name, with a class called ``background`` last: edged hides a
    ``background`` label at index 0 (the convention of 1001-class ImageNet models), but a
    trained background class is reported like any other."""
    ordered = sorted(names)
    return [n for n in ordered if n.lower() != BACKGROUND] + [
        n for n in ordered if n.lower() == BACKGROUND
    ]


def scan(root: Path) -> Dataset:
    """The class folders under ``root`` and their candidate files (every non-hidden file:
    whether it decodes is found out when features are computed, as replay does).

    Raises :class:`DatasetError` for a missing folder, fewer than two classes, an empty or
    nested class folder, or a folder name that cannot be a label.
    """
    if not root.exists():
        raise DatasetError(f"training folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{str(root)!r} is not a folder: give one with a folder per class")
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot read training folder {str(root)!r}: {exc}") from exc
    dirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if not p.is_dir()]
    if not dirs:
        hint = f" ({len(loose)} files lie directly in it)" if loose else ""
        raise DatasetError(
            f"{str(root)!r} has no class folders{hint}: put each class's images in a folder "
            "named after the class, e.g. DATA_DIR/cat/*.jpg and DATA_DIR/dog/*.jpg"
        )
    for p in loose:
        log.warning("ignoring %s: only the folders in %s are classes", p, root)
    files: dict[str, list[Path]] = {}
    for d in dirs:
        name = unicodedata.normalize("NFC", d.name)
        problem = check_label(name)
        if problem:
            raise DatasetError(f"class folder {d.name!r} {problem}: rename it")
        if name in files:
            raise DatasetError(f"two class folders are both named {name!r} (Unicode forms)")
        inside = sorted(p for p in d.iterdir() if not p.name.startswith("."))
        # the JSON sidecars of frames kept by [collect] travel with their JPEG: not images
        stems = {p.stem for p in inside if p.suffix.lower() != ".json"}
        inside = [p for p in inside if not (p.suffix.lower() == ".json" and p.stem in stems)]
        nested = [p for p in inside if p.is_dir()]
        if nested:
            raise DatasetError(
                f"class {name!r} holds a folder {nested[0].name!r}: edged train reads the "
                f"images directly inside each class folder of {str(root)!r}; move them up, or "
                "make it a class of its own beside the others"
            )
        if not inside:
            raise DatasetError(
                f"class {name!r} is empty ({d}): it needs at least {MIN_IMAGES} images"
            )
        files[name] = inside
    if len(files) < MIN_CLASSES:
        only = next(iter(files))
        raise DatasetError(
            f"only one class ({only!r}) in {str(root)!r}: training needs at least "
            f"{MIN_CLASSES} classes, each a folder of at least {MIN_IMAGES} images "
            "(add a 'background' class of scenes with none of the others)"
        )
    classes = order_classes(list(files))
    return Dataset(root, classes, {c: files[c] for c in classes}, loose)


def check_counts(counts: dict[str, int], skipped: dict[str, int]) -> None:
    """Every class needs ``MIN_IMAGES`` readable images."""
    short = [c for c, n in counts.items() if n < MIN_IMAGES]
    if short:
        c = short[0]
        extra = f" ({skipped[c]} unreadable files skipped)" if skipped.get(c) else ""
        raise DatasetError(
            f"class {c!r} has {counts[c]} readable image(s){extra}; every class needs at "
            f"least {MIN_IMAGES}"
        )
