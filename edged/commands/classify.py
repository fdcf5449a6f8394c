"""``edged classify``: classify image files once, as a table or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edged.commands.common import EXIT_ERROR, EXIT_OK, add_config, config_int, load
from edged.config import ClassifyConfig


def cmd_classify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edged.engine import open_engine
    from edged.preprocess import ImageError
    from edged.publish.events import classified_file
    from edged.wire import ClassifiedFile, UnclassifiedFile

    cfg = load(args)
    updates: dict[str, Any] = {}
    if args.model:
        updates["path"] = str(args.model)
    if args.labels:
        updates["labels"] = str(args.labels)
    if args.backend:
        updates["backend"] = args.backend
    model_cfg = cfg.model.model_copy(update=updates) if updates else cfg.model
    classify_cfg = cfg.classify
    if args.top_k is not None:
        classify_cfg = classify_cfg.model_copy(update={"top_k": args.top_k})
    engine = open_engine(model_cfg, classify_cfg)
    rows: list[ClassifiedFile | UnclassifiedFile] = []
    failed = 0
    try:
        for image in args.images:
            try:
                result, ms = engine.infer(engine.load(image))
            except ImageError as exc:
                failed += 1
                print(f"edged: {exc}", file=sys.stderr)
                rows.append(UnclassifiedFile(file=str(image), error=str(exc)))
                continue
            rows.append(
                classified_file(
                    str(image),
                    result,
                    model=engine.model.name,
                    backend=engine.backend.name,
                    inference_ms=ms,
                )
            )
    finally:
        engine.close()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    else:
        table = Table(title=f"{engine.model.name} on {engine.backend.name}")
        for col in ("file", "label", "score", "ambiguous", f"top {classify_cfg.top_k}", "ms"):
            table.add_column(col)
        for r in rows:
            if isinstance(r, UnclassifiedFile):
                table.add_row(Path(r.file).name, "[red]error[/]", "-", "-", r.error, "-")
                continue
            others = ", ".join(f"{c.label.split(',')[0]} {c.score:.2f}" for c in r.top_k)
            table.add_row(
                Path(r.file).name,
                str(r.label).split(",")[0],
                f"{r.score:.3f}" if r.score is not None else "-",
                "yes" if r.ambiguous else "no",
                others,
                f"{r.inference_ms:.1f}",
            )
        Console().print(table)
    return EXIT_ERROR if failed else EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("classify", help="classify image files once")
    add_config(p)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--model", type=Path, help="TFLite model (default: from config, else bundled)")
    p.add_argument("--labels", type=Path, help="labels file (default: embedded in the model)")
    p.add_argument(
        "--top-k",
        type=config_int("classify", ClassifyConfig, "top_k"),
        default=None,
        metavar="K",
        help="classes per image (default: classify.top_k)",
    )
    p.add_argument("--backend", choices=["auto", "cpu", "edgetpu"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_classify)
