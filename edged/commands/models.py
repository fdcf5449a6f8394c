"""``edged models``: the model-choice table (the rows and the measuring are in
:mod:`edged.models_table`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edged.commands.common import EXIT_ERROR, EXIT_OK, add_config, load


def cmd_export(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from edged.config import ConfigError
    from edged.learn.export import ExportError, export

    if args.out is None:
        print("edged models export: give --out FOLDER", file=sys.stderr)
        return EXIT_ERROR
    try:
        manifest = export(load(args), args.model_id, Path(args.out))
    except (ExportError, ConfigError) as exc:
        print(f"edged models export: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({k: v for k, v in manifest.items() if k != "report"}, indent=2))
    else:
        print(f"{Path(args.out) / manifest['model']}  sha256 {manifest['sha256']}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "export":
        return cmd_export(args)
    if args.model_id is not None:
        import sys

        print(f"edged models: unexpected {args.model_id!r} (valid: export)", file=sys.stderr)
        return EXIT_ERROR
    from rich.console import Console

    from edged.health.devices import list_edge_tpus
    from edged.models_table import list_models, measure, render

    cfg = load(args).model
    if args.threads:
        cfg = cfg.model_copy(update={"num_threads": args.threads})
    rows = list_models(cfg.models_dir)
    edgetpu = bool(args.bench and list_edge_tpus())
    if args.bench:
        rows = measure(rows, cfg, edgetpu=edgetpu)
    threads = cfg.num_threads if args.bench else None
    networks = network_rows(cfg.models_dir)
    if args.json:
        report = {
            "threads": threads,
            "edgetpu": edgetpu,
            "models": [r.as_dict() for r in rows],
            "networks": networks,
        }
        print(json.dumps(report, indent=2))
        return EXIT_OK
    console = Console()
    if not console.is_terminal:  # a pipe or a file: no wrapping at 80 columns
        console = Console(width=200)
    console.print(render(rows, threads, edgetpu))
    console.print(render_networks(networks))
    return EXIT_OK


def network_rows(models_dir: str) -> list[dict[str, Any]]:
    """The AI camera's networks (.rpk) installed by imx500-models and in models_dir."""
    from edged.infer.imx500 import NETWORKS_DIR, NetworkFile, list_networks

    dirs = [NETWORKS_DIR, *([Path(models_dir)] if models_dir else [])]
    rows: list[dict[str, Any]] = []
    for found in list_networks(dirs):
        if isinstance(found, NetworkFile):
            rows.append(
                {
                    "file": found.name,
                    "path": str(found.path),
                    "input": f"{found.input_size[0]}x{found.input_size[1]}",
                    "labels": len(found.labels) if found.labels else None,
                    "softmax": found.softmax,
                    "error": None,
                }
            )
        else:
            path, why = found
            rows.append({"file": path.name, "path": str(path), "error": why})
    return rows


def render_networks(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(
        title="AI camera networks (.rpk, capture.type = 'imx500')",
        caption=None if rows else "none installed (Raspberry Pi OS: apt install imx500-all)",
    )
    for column in ("network", "input", "labels", "path"):
        table.add_column(column)
    for r in rows:
        if r["error"]:
            table.add_row(r["file"], "-", "-", f"{r['path']}: {r['error']}")
        else:
            labels = str(r["labels"]) if r["labels"] else "none (labels = ...)"
            table.add_row(r["file"], r["input"], labels, r["path"])
    return table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "models", help="edged's and the installed models: input, size, accuracy, latency here"
    )
    add_config(p)
    p.add_argument(
        "action",
        nargs="?",
        choices=["export"],
        help="export: write a model trained on this device (the deployed one, or MODEL_ID), "
        "its sha256 and its report to --out, for other devices",
    )
    p.add_argument("model_id", nargs="?", metavar="MODEL_ID", help="a trained model's id")
    p.add_argument("--out", help="export: the folder to write to")
    p.add_argument("--bench", action="store_true", help="measure each installed model here")
    p.add_argument("--threads", type=int, help="CPU threads (default: the config's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)
