"""``edged eval``, ``edged bench`` and ``edged devices``: the measurements that decide which
model to deploy, and what hardware this machine has."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import resource
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edged.commands.common import config_int, int_between, positive_int
from edged.config import ClassifyConfig, ModelConfig, load_config
from edged.wire import HEALTH_FIELDS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def _model_cfg(args: argparse.Namespace) -> ModelConfig:
    cfg = load_config(args.config).model
    updates: dict[str, Any] = {}
    if getattr(args, "model", None):
        updates["path"] = str(args.model)
    if getattr(args, "labels", None):
        updates["labels"] = str(args.labels)
    if getattr(args, "backend", None):
        updates["backend"] = args.backend
    if getattr(args, "threads", None):
        updates["num_threads"] = args.threads
    return cfg.model_copy(update=updates) if updates else cfg


# -- eval ----------------------------------------------------------------------------------
def read_synsets(path: Path) -> dict[str, tuple[int, str]]:
    """``index<TAB>synset<TAB>name`` lines (header optional) -> {synset: (index, name)}."""
    out: dict[str, tuple[int, str]] = {}
    with path.open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 2 or not row[0].strip().isdigit():
                continue
            out[row[1].strip()] = (int(row[0]), row[2].strip() if len(row) > 2 else row[1])
    if not out:
        raise ValueError(f"{path}: no 'index<TAB>synset<TAB>name' lines")
    return out


def labelled_images(
    root: Path, synsets: dict[str, tuple[int, str]] | None
) -> list[tuple[Path, str | int]]:
    """(image, truth) pairs: truth is a synset's class index (files named ``<synset>_...``)
    or a folder name (folder per class)."""
    items: list[tuple[Path, str | int]] = []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for f in files:
        if synsets is not None:
            wnid = f.name.split("_", 1)[0]
            if wnid not in synsets:
                raise ValueError(f"{f.name}: synset {wnid!r} is not in the mapping file")
            items.append((f, synsets[wnid][0]))
        elif f.parent != root:
            items.append((f, f.parent.name))
    return items


def _norm(label: str) -> set[str]:
    return {p.strip().lower() for p in label.split(",")} | {label.strip().lower()}


def _known_classes(
    items: list[tuple[Path, str | int]], labels: Sequence[str], model: str
) -> list[tuple[Path, str | int]]:
    """Drop the images of folders whose name matches no label of the model, with one
    warning per folder: such a folder is not a class, and would only count as misses."""
    names: set[str] = set()
    for label in labels:
        names |= _norm(label)
    unknown = Counter(t for _, t in items if isinstance(t, str) and not _norm(t) & names)
    for folder, count in sorted(unknown.items()):
        log.warning(
            "eval: folder %r matches no label of %s: its %d image(s) are skipped",
            folder,
            model,
            count,
        )
    kept = [(p, t) for p, t in items if not (isinstance(t, str) and t in unknown)]
    if not kept:
        raise ValueError(f"no folder matches a label of {model}: nothing to evaluate")
    return kept


def evaluate(
    directory: Path,
    model_cfg: ModelConfig,
    synsets_file: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1/top-5 accuracy with exactly the daemon's preprocessing and post-processing."""
    from rich.progress import Progress

    from edged.engine import open_engine
    from edged.preprocess import ImageError

    synsets = read_synsets(synsets_file) if synsets_file else None
    items = labelled_images(directory, synsets)
    if not items:
        raise ValueError(
            f"{directory}: no labelled images (a folder per class, or files "
            "named <synset>_... with --synsets)"
        )
    engine = open_engine(model_cfg, ClassifyConfig(top_k=5, min_score=0.0))
    try:
        items = _known_classes(items, engine.labels.names, engine.model.name)
    except ValueError:
        engine.close()
        raise
    # 1001-class ImageNet models put 'background' at 0: class i of a synset file is output i+1
    offset = 1 if engine.labels.background == 0 else 0
    top1 = top5 = skipped = 0
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    backends: Counter[str] = Counter()
    latencies: list[float] = []
    per_image: list[dict[str, Any]] = []
    try:
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"{engine.model.name}", total=len(items))
            for path, truth in items:
                try:
                    tensor = engine.load(path)
                except ImageError as exc:  # skipped and counted, as replay does
                    log.warning("skipping %s: %s", path, exc)
                    skipped += 1
                    bar.advance(task)
                    continue
                result, ms, backend = engine.infer_with_backend(tensor)
                backends[backend] += 1
                latencies.append(ms)
                if isinstance(truth, int):
                    want = truth + offset
                    ids = [c.id for c in result.top_k]
                    hit1, hit5 = bool(ids) and ids[0] == want, want in ids[:5]
                    name = engine.labels.names[want] if want < len(engine.labels) else str(truth)
                else:
                    wanted = _norm(truth)
                    labels = [c.label for c in result.top_k]
                    hit1 = bool(labels) and bool(_norm(labels[0]) & wanted)
                    hit5 = any(_norm(lbl) & wanted for lbl in labels[:5])
                    name = truth
                top1 += hit1
                top5 += hit5
                per_image.append(
                    {
                        "file": str(path),
                        "class": name,
                        "top_k": [c.as_dict() for c in result.top_k],
                        "hit": hit1,
                    }
                )
                per_class[name][0] += 1
                per_class[name][1] += hit1
                if not hit1 and result.top1 is not None:
                    confusion[name][result.top1.label] += 1
                bar.advance(task)
    finally:
        engine.close()
    n = len(items) - skipped
    if n == 0:
        raise ValueError(f"{directory}: none of the {len(items)} images could be read")
    worst = sorted(per_class.items(), key=lambda kv: (kv[1][1] / kv[1][0], kv[0]))
    return {
        "model": engine.model.name,
        "backend": backends.most_common(1)[0][0],
        "images": n,
        "skipped": skipped,
        "top1": round(top1 / n, 4),
        "top5": round(top5 / n, 4),
        "median_inference_ms": round(statistics.median(latencies), 3),
        "worst_classes": [
            {
                "class": c,
                "images": t,
                "top1": round(h / t, 3),
                "confused_with": confusion[c].most_common(3),
            }
            for c, (t, h) in worst[:10]
        ],
        "per_image": per_image,
    }


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    report = evaluate(args.directory, _model_cfg(args), args.synsets, progress=not args.json)
    if not args.confusion:
        report.pop("worst_classes")
    if not args.per_image:
        report.pop("per_image")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = Console()
    console.print(
        f"{report['model']} on {report['backend']}: {report['images']} images, "
        f"top-1 {report['top1']:.2%}, top-5 {report['top5']:.2%}, "
        f"median {report['median_inference_ms']} ms"
    )
    if args.confusion:
        table = Table(title="worst classes")
        for col in ("class", "images", "top-1", "confused with"):
            table.add_column(col)
        for w in report["worst_classes"]:
            table.add_row(
                w["class"],
                str(w["images"]),
                f"{w['top1']:.0%}",
                ", ".join(f"{lbl} x{n}" for lbl, n in w["confused_with"]),
            )
        console.print(table)
    return 0


# -- bench ---------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def benchmark(model_cfg: ModelConfig, runs: int = 50, warmup: int = 5) -> dict[str, Any]:
    """The figures TFLite's benchmark_model reports, through edged's own backends, and the
    throughput with frames in flight as the daemon keeps them."""
    import numpy as np

    from edged.engine import open_engine

    t0 = time.perf_counter()
    engine = open_engine(model_cfg, ClassifyConfig())
    init_ms = (time.perf_counter() - t0) * 1000
    spec = engine.backend.input_spec
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
    tensor = engine.preprocess(frame)
    backend = engine.backend
    try:
        t = time.perf_counter()
        ran_on = backend.infer(tensor).backend
        first_ms = (time.perf_counter() - t) * 1000
        warm = []
        for _ in range(warmup):
            t = time.perf_counter()
            backend.infer(tensor)
            warm.append((time.perf_counter() - t) * 1000)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            ran_on = backend.infer(tensor).backend
            times.append((time.perf_counter() - t) * 1000)
        # throughput with as many frames in flight as the daemon keeps (two in a worker)
        t = time.perf_counter()
        for _ in backend.stream(itertools.repeat(tensor, runs)):
            pass
        throughput = runs / (time.perf_counter() - t)
        depth = backend.depth
    finally:
        engine.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "model": engine.model.name,
        "backend": ran_on,
        "threads": model_cfg.num_threads,
        "runs": runs,
        "init_ms": round(init_ms, 2),
        "first_inference_ms": round(first_ms, 3),
        "warmup_avg_ms": round(statistics.fmean(warm), 3) if warm else None,
        "min_ms": round(min(times), 3),
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(_pct(times, 95), 3),
        "max_ms": round(max(times), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "std_ms": round(statistics.pstdev(times), 3),
        "throughput_fps": round(throughput, 1),
        "frames_in_flight": depth,
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    report = benchmark(_model_cfg(args), runs=args.runs, warmup=args.warmup)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    table = Table(
        title=f"{report['model']} on {report['backend']}, "
        f"{report['threads']} thread(s), {report['runs']} runs"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if key not in ("model", "backend", "threads", "runs"):
            table.add_row(key, str(value))
    Console().print(table)
    return 0


# -- devices -------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edged.capture.cameras import list_cameras
    from edged.health.devices import list_edge_tpus, tpu_temperature_c

    tpus = list_edge_tpus()
    cameras = list_cameras()
    if args.json:
        print(
            json.dumps(
                {
                    "edge_tpus": [{"type": t.type, "path": t.path} for t in tpus],
                    HEALTH_FIELDS.tpu_temp_c: tpu_temperature_c(),
                    "cameras": [
                        {
                            "kind": c.kind,
                            "path": c.path,
                            "model": c.model,
                            "by_id": c.by_id,
                            "modes": [
                                {
                                    "format": m.format,
                                    "width": m.width,
                                    "height": m.height,
                                    "fps": list(m.fps),
                                }
                                for m in c.modes
                            ],
                        }
                        for c in cameras
                    ],
                },
                indent=2,
            )
        )
        return 0
    console = Console()
    table = Table(title="Edge TPUs")
    table.add_column("type")
    table.add_column("path")
    for t in tpus:
        table.add_row(t.type, t.path)
    console.print(table if tpus else "no Edge TPU found")
    table = Table(title="cameras")
    for col in ("kind", "path", "model", "modes"):
        table.add_column(col)
    for c in cameras:
        path = f"{c.path}\n{c.by_id}" if c.by_id else c.path
        table.add_row(c.kind, path, c.model, _modes_text(c.modes))
    console.print(table if cameras else "no camera found")
    return 0


def _modes_text(modes: Any) -> str:
    """One line per format: its sizes, smallest first, and the rates of the largest."""
    lines: dict[str, list[str]] = {}
    rates: dict[str, str] = {}
    for m in modes:
        lines.setdefault(m.format, []).append(f"{m.width}x{m.height}")
        if m.fps:
            rates[m.format] = "/".join(f"{f:g}" for f in m.fps)
    return "\n".join(
        f"{fmt}: {' '.join(sizes)}" + (f" @ {rates[fmt]} fps" if fmt in rates else "")
        for fmt, sizes in lines.items()
    )


def register(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", type=Path, default=None, help="TOML config file")
        p.add_argument("--model", type=Path, help="TFLite model (default: config, else bundled)")
        p.add_argument("--backend", choices=["auto", "cpu", "edgetpu"])
        p.add_argument(
            "--threads", type=config_int("model", ModelConfig, "num_threads"), help="CPU threads"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("eval", help="top-1/top-5 accuracy on labelled images")
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument(
        "--synsets", type=Path, help="index<TAB>synset<TAB>name file for files named <synset>_..."
    )
    p.add_argument("--labels", type=Path, help="labels file (default: embedded in the model)")
    p.add_argument("--confusion", action="store_true", help="show the worst classes")
    p.add_argument(
        "--per-image", action="store_true", help="with --json: every image's top-k classes"
    )
    common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="inference latency, as TFLite's benchmark_model reports it")
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs")
    p.add_argument("--warmup", type=int_between(0, None), default=5, help="untimed runs first")
    common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("devices", help="list Edge TPUs and cameras")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)
