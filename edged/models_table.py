"""``edged models``: the models edged knows of, with the figures that decide between them.

Rows come from the manifest of the bundled models (profile, input, accuracy) and from the
files on this device: the bundled folder and ``model.models_dir`` (size on disk, and any other
``.tflite`` installed there).  :func:`measure` adds the latency measured here, on the CPU at
the configured threads and on the Edge TPU when one is present, through ``edged bench``'s
own :func:`edged.commands.tools.benchmark`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edged.config import ModelConfig
from edged.infer.bundled import manifest_entries, models_dir
from edged.infer.flatbuf import FlatbufferError, input_tensor, root

log = logging.getLogger(__name__)

BUNDLED, INSTALLED, MISSING = "bundled", "installed", "not installed"
EDGETPU_SUFFIX = "_edgetpu"


@dataclass(frozen=True)
class ModelRow:
    """One model: what the manifest says and what is on this device."""

    file: str
    title: str
    profile: str  # "" for a model no profile names
    input_size: tuple[int, int] | None  # height, width
    input_dtype: str
    size_bytes: int | None  # on disk; the manifest's figure when not installed
    top1: float | None
    top5: float | None
    where: str  # bundled, installed or not installed
    path: Path | None
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # backend -> p50

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "title": self.title,
            "profile": self.profile or None,
            "input": list(self.input_size) if self.input_size else None,
            "input_dtype": self.input_dtype,
            "size_bytes": self.size_bytes,
            "top1": self.top1,
            "top5": self.top5,
            "where": self.where,
            "path": str(self.path) if self.path else None,
            "latency_ms": self.latency_ms,
        }


def _kind(entry: dict[str, Any]) -> str:
    dtype = entry.get("input", {}).get("dtype", "")
    return "fp32" if dtype == "float32" else str(dtype)


def _locate(name: str, dirs: list[tuple[Path, str]]) -> tuple[Path | None, str]:
    for folder, where in dirs:
        if (folder / name).is_file():
            return folder / name, where
    return None, MISSING


def _from_file(path: Path, where: str) -> ModelRow:
    try:
        shape, dtype = input_tensor(root(path.read_bytes()))
        size = (shape[1], shape[2]) if len(shape) == 4 else None
    except (OSError, FlatbufferError) as exc:
        log.warning("%s: cannot read the model's input: %s", path, exc)
        size, dtype = None, "?"
    return ModelRow(
        file=path.name,
        title=path.stem,
        profile="",
        input_size=size,
        input_dtype=dtype,
        size_bytes=path.stat().st_size,
        top1=None,
        top5=None,
        where=where,
        path=path,
    )


def list_models(installed_dir: str | Path = "") -> list[ModelRow]:
    """The manifest's models (each where it is found, or not installed), then every other
    ``.tflite`` file of the bundled folder and of ``installed_dir``."""
    dirs = [(models_dir(), BUNDLED)]
    if installed_dir and Path(installed_dir).resolve() != models_dir().resolve():
        dirs.append((Path(installed_dir), INSTALLED))
    rows = []
    for entry in manifest_entries():
        path, where = _locate(entry["file"], dirs)
        inp = entry.get("input", {})
        accuracy = entry.get("accuracy", {})
        rows.append(
            ModelRow(
                file=entry["file"],
                title=f"{entry.get('title', Path(entry['file']).stem)} {_kind(entry)}".strip(),
                profile=str(entry.get("profile", "")),
                input_size=(int(inp["height"]), int(inp["width"])) if "height" in inp else None,
                input_dtype=str(inp.get("dtype", "?")),
                size_bytes=path.stat().st_size if path else entry.get("size_bytes"),
                top1=accuracy.get("top1"),
                top5=accuracy.get("top5"),
                where=where,
                path=path,
            )
        )
    known = {row.file for row in rows}
    for folder, where in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.tflite")):
            if path.name not in known:
                known.add(path.name)
                rows.append(_from_file(path, where))
    return rows


Measure = Callable[[ModelConfig], float]


def _benchmark_p50(cfg: ModelConfig) -> float:
    from edged.commands.tools import benchmark

    return float(benchmark(cfg, runs=30, warmup=5)["p50_ms"])


def _edgetpu_twin(path: Path) -> Path | None:
    twin = path.with_name(f"{path.stem}{EDGETPU_SUFFIX}{path.suffix}")
    return twin if twin.is_file() else None


def measure(
    rows: Iterable[ModelRow],
    base: ModelConfig,
    *,
    edgetpu: bool = False,
    bench: Measure = _benchmark_p50,
) -> list[ModelRow]:
    """Median ms per inference of every installed model: on the CPU at ``base``'s threads,
    and with ``edgetpu`` on the Edge TPU (the model's ``_edgetpu`` twin, where one exists).
    A model that fails to run gets ``None`` and a warning."""
    out = []
    for row in rows:
        if row.path is None or row.path.stem.endswith(EDGETPU_SUFFIX):
            out.append(row)
            continue
        latency: dict[str, float | None] = {}
        runs: list[tuple[str, Path | None]] = [("cpu", row.path)]
        if edgetpu:
            runs.append(("edgetpu", _edgetpu_twin(row.path)))
        for backend, path in runs:
            if path is None:
                latency[backend] = None
                continue
            cfg = base.model_copy(
                update={"path": str(path), "backend": backend, "sha256": "", "cpu_path": ""}
            )
            try:
                latency[backend] = round(bench(cfg), 2)
            except Exception as exc:  # one model that does not run spoils no other row
                log.warning("%s on %s: %s", path.name, backend, exc)
                latency[backend] = None
        out.append(replace(row, latency_ms=latency))
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(rows: list[ModelRow], threads: int | None = None, edgetpu: bool = False) -> Any:
    """The table as ``rich`` prints it; latency columns when ``threads`` is given."""
    from rich import box
    from rich.table import Table

    table = Table(
        title="Models (accuracy: manifest, top-1/top-5 % on 200 ImageNet images)",
        box=box.SIMPLE_HEAD,
    )
    for name, justify in (
        ("model", "left"),
        ("profile", "left"),
        ("input", "left"),
        ("MB", "right"),
        ("top-1", "right"),
        ("top-5", "right"),
        ("where", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if threads is not None:
        table.add_column(f"CPU ms ({threads} thr)", justify="right")
        if edgetpu:
            table.add_column("Edge TPU ms", justify="right")
    for row in rows:
        size = (
            f"{row.input_size[0]}x{row.input_size[1]} {row.input_dtype}" if row.input_size else "?"
        )
        cells = [
            Path(row.file).stem,
            row.profile or "",
            size,
            "?" if row.size_bytes is None else f"{row.size_bytes / 1e6:.1f}",
            _pct(row.top1),
            _pct(row.top5),
            row.where,
        ]
        if threads is not None:
            cells.append(_ms(row.latency_ms.get("cpu")))
            if edgetpu:
                cells.append(_ms(row.latency_ms.get("edgetpu")))
        table.add_row(*cells)
    return table
