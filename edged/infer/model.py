"""A TFLite classification model on disk: checks, hash, labels, normalization, Edge TPU ops.

Nothing here runs inference; :mod:`edged.infer.base` does.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edged.infer.flatbuf import FlatbufferError, custom_ops, input_normalization, metadata_buffer
from edged.infer.flatbuf import root as fb_root

log = logging.getLogger(__name__)

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
BACKGROUND = "background"


class ModelError(Exception):
    """A model file that cannot be used (exit code 3)."""


@dataclass(frozen=True)
class ModelFile:
    path: Path
    sha256: str
    size: int
    custom_ops: tuple[str, ...]
    normalization: tuple[float, float] | None
    embedded_labels: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def is_edgetpu(self) -> bool:
        return EDGETPU_CUSTOM_OP in self.custom_ops

    @property
    def name(self) -> str:
        return self.path.name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _embedded_labels(path: Path) -> tuple[str, ...] | None:
    """Labels from the zip that TFLite metadata appends to the flatbuffer, if any."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".txt")]
            preferred = [n for n in names if "label" in n.lower()] or names
            if not preferred:
                return None
            text = zf.read(preferred[0]).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    return tuple(parse_label_lines(text.splitlines()))


_ID_LINE = re.compile(r"^\s*(\d+)\s*(?::\s*|\s+)(\S.*?)\s*$")


def parse_label_lines(lines: list[str]) -> list[str]:
    """Plain lines, or ``id label`` / ``id: label`` lines (ids may leave gaps)."""
    lines = [ln.rstrip("\r\n") for ln in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    matches = [_ID_LINE.match(ln) for ln in lines if ln.strip()]
    if matches and all(matches) and len(matches) == len(lines):
        by_id = {int(m.group(1)): m.group(2) for m in matches if m}
        size = max(by_id) + 1
        return [by_id.get(i, str(i)) for i in range(size)]
    return [ln.strip() for ln in lines]


def read_labels(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read labels file {str(path)!r}: {exc}") from exc
    labels = parse_label_lines(text.splitlines())
    if not labels:
        raise ModelError(f"labels file {str(path)!r} is empty")
    return labels


def inspect_model(path: str | Path, expected_sha256: str = "") -> ModelFile:
    """Open and check a model file without building an interpreter."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {str(p)!r}: {exc}") from exc
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(
            f"{str(p)!r} is not a TFLite model (no 'TFL3' identifier at byte 4; {len(data)} bytes)"
        )
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 and digest.lower() != expected_sha256.lower():
        raise ModelError(
            f"model {str(p)!r} has sha256 {digest}, "
            f"but the config expects {expected_sha256.lower()}"
        )
    try:
        model = fb_root(data, b"TFL3")
        ops = tuple(custom_ops(model))
        meta = metadata_buffer(model, "TFLITE_METADATA")
        norm = input_normalization(meta) if meta else None
    except (FlatbufferError, UnicodeDecodeError) as exc:
        raise ModelError(f"model {str(p)!r} is truncated or corrupt: {exc}") from exc
    return ModelFile(
        path=p,
        sha256=digest,
        size=len(data),
        custom_ops=ops,
        normalization=norm,
        embedded_labels=_embedded_labels(p),
    )


def cpu_twin(model: ModelFile, cpu_path: str = "") -> Path | None:
    """The CPU version of an Edge TPU model: ``cpu_path`` or the name without ``_edgetpu``."""
    if cpu_path:
        return Path(cpu_path)
    stem = model.path.name
    if "_edgetpu" not in stem:
        return None
    return model.path.with_name(stem.replace("_edgetpu", "", 1))
