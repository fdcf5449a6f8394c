"""``edged models``: the models edged knows of, with the figures that decide between them.

Rows come from the manifest of the bundled models (profile, input, accuracy) and from the
files on this device: the bundled folder and ``model.models_dir`` (size on disk, and any other
``.tflite`` installed there).  :func:`measure` adds the latency measured here, on the CPU at
the configured threads and on the Edge TPU when one is present, through edged's own engine,
the models taking turns.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
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


Measure = Callable[[list[ModelConfig]], list[float | None]]


def interleaved_p50(
    cfgs: list[ModelConfig], runs: int = 60, rounds: int = 6, warmup: int = 5
) -> list[float | None]:
    """Median ms per inference of each config's model through edged's own engine, the
    models taking turns in ``rounds`` rounds so that a busy spell on the machine hits them
    alike (as ``bench/models_speed.py`` does).  ``None`` for a model that does not open or
    run, or that ran on another backend than the one asked for (an Edge TPU fallback)."""
    import numpy as np

    from edged.config import ClassifyConfig
    from edged.engine import open_engine

    rng = np.random.default_rng(0)
    times: list[list[float]] = [[] for _ in cfgs]
    with ExitStack() as stack:
        ready = []
        for i, cfg in enumerate(cfgs):
            try:
                engine = open_engine(cfg, ClassifyConfig())
            except Exception as exc:  # one model that does not open spoils no other row
                log.warning("%s: %s", Path(cfg.path).name, exc)
                continue
            stack.callback(engine.close)
            spec = engine.backend.input_spec
            frame = rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
            tensor = engine.preprocess(frame)
            ran_on = ""
            for _ in range(warmup):
                ran_on = engine.backend.infer(tensor).backend
            if ran_on != cfg.backend:
                log.warning("%s ran on %s, not %s", Path(cfg.path).name, ran_on, cfg.backend)
                continue
            ready.append((i, engine.backend, tensor))
        for r in range(rounds):
            n = runs // rounds + (1 if r < runs % rounds else 0)
            for i, backend, tensor in ready:
                for _ in range(n):
                    t0 = time.perf_counter()
                    backend.infer(tensor)
                    times[i].append((time.perf_counter() - t0) * 1000.0)
    return [round(statistics.median(t), 2) if t else None for t in times]


def _edgetpu_twin(path: Path) -> Path | None:
    twin = path.with_name(f"{path.stem}{EDGETPU_SUFFIX}{path.suffix}")
    return twin if twin.is_file() else None


def measure(
    rows: Iterable[ModelRow],
    base: ModelConfig,
    *,
    edgetpu: bool = False,
    bench: Measure = interleaved_p50,
) -> list[ModelRow]:
    """Median ms per inference of every installed model: on the CPU at ``base``'s threads,
    and with ``edgetpu`` on the Edge TPU (the model's ``_edgetpu`` twin, where one exists).
    A model that fails to run gets ``None`` and a warning."""
    rows = list(rows)
    jobs: list[tuple[int, str, ModelConfig]] = []
    latency: list[dict[str, float | None]] = [{} for _ in rows]
    for i, row in enumerate(rows):
        if row.path is None or row.path.stem.endswith(EDGETPU_SUFFIX):
            continue
        runs: list[tuple[str, Path | None]] = [("cpu", row.path)]
        if edgetpu:
            runs.append(("edgetpu", _edgetpu_twin(row.path)))
        for backend, path in runs:
            if path is None:
                latency[i][backend] = None
                continue
            cfg = base.model_copy(
                update={"path": str(path), "backend": backend, "sha256": "", "cpu_path": ""}
            )
            jobs.append((i, backend, cfg))
    for (i, backend, _), ms in zip(jobs, bench([cfg for _, _, cfg in jobs]), strict=True):
        latency[i][backend] = ms
    return [replace(row, latency_ms=latency[i]) for i, row in enumerate(rows)]


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
