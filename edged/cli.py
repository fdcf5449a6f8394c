"""The ``edged`` command line: run, check-config, classify, demo, version (and the model,
device and fleet tools).  Exit codes: 0 ok, 1 other error, 2 bad config, 3 model error."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edged import __version__
from edged.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, read_secret
from edged.logsetup import set_context, setup_logging

log = logging.getLogger("edged")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_MODEL = 0, 1, 2, 3


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help=f"TOML config file (default: {DEFAULT_CONFIG_PATH} if it exists)",
    )


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_run(args: argparse.Namespace) -> int:
    from edged.app import Daemon
    from edged.signals import install_signal_handlers

    cfg = _load(args)
    set_context(device=cfg.device.id)
    stop = threading.Event()
    install_signal_handlers(stop)
    daemon = Daemon(cfg, max_frames=args.frames, stop=stop)
    return daemon.run()


def cmd_ha_remove(args: argparse.Namespace) -> int:
    from edged.publish.homeassistant import remove

    cfg = _load(args)
    count = remove(cfg, read_secret(cfg.mqtt.password_file, "mqtt_password"))
    print(
        f"removed {count} Home Assistant entities of {cfg.device.id} "
        f"under {cfg.homeassistant.discovery_prefix}/"
    )
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args)
    problems = check_files(cfg)
    if problems:
        raise ConfigError(str(args.config or DEFAULT_CONFIG_PATH), problems)
    print(f"{args.config or DEFAULT_CONFIG_PATH}: valid (device {cfg.device.id})")
    return EXIT_OK


def check_files(cfg: Config) -> list[tuple[str, str, Any]]:
    """Checks that need the file system: paths that must exist."""
    problems: list[tuple[str, str, Any]] = []
    for key in ("path", "labels", "cpu_path"):
        value = getattr(cfg.model, key)
        if value and not Path(value).is_file():
            problems.append((f"model.{key}", "no such file", value))
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        value = getattr(cfg.mqtt, key)
        if value and not Path(value).is_file():
            problems.append((f"mqtt.{key}", "no such file", value))
    if cfg.capture.type == "replay":
        for i, value in enumerate(cfg.capture.paths):
            if not Path(value).exists():
                problems.append((f"capture.paths.{i}", "does not exist", value))
    return problems


def cmd_classify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edged.infer import open_engine
    from edged.preprocess.image import ImageError, load_image
    from edged.publish.events import classified_file
    from edged.wire import ClassifiedFile

    cfg = _load(args)
    updates: dict[str, Any] = {}
    if args.model:
        updates["path"] = str(args.model)
    if args.labels:
        updates["labels"] = str(args.labels)
    if args.backend:
        updates["backend"] = args.backend
    model_cfg = cfg.model.model_copy(update=updates) if updates else cfg.model
    classify_cfg = cfg.classify
    if args.top_k:
        classify_cfg = classify_cfg.model_copy(update={"top_k": args.top_k})
    engine = open_engine(model_cfg, classify_cfg)
    rows: list[ClassifiedFile] = []
    failed = 0
    try:
        for image in args.images:
            try:
                result, ms = engine.classify_frame(load_image(image))
            except ImageError as exc:
                failed += 1
                print(f"edged: {exc}", file=sys.stderr)
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


def cmd_version(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    from edged.infer.runtime import RuntimeMissing, get_runtime

    print(f"edged {__version__}")
    try:
        name = get_runtime().name
        dist = {
            "ai_edge_litert": "ai-edge-litert",
            "tflite_runtime": "tflite-runtime",
            "tensorflow.lite": "tensorflow",
        }[name]
        try:
            print(f"runtime: {name} {version(dist)}")
        except PackageNotFoundError:
            print(f"runtime: {name}")
    except RuntimeMissing as exc:
        print(f"runtime: none ({exc})")
    print(f"numpy {numpy.__version__}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from edged.demo import run_demo

    return run_demo(frames=args.frames, broker_url=args.broker, config=args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged", description="Classify camera frames with TFLite; publish over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon")
    _add_config(p)
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="stop cleanly after N frames have been classified and published",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 on errors")
    _add_config(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("classify", help="classify image files once")
    _add_config(p)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--model", type=Path, help="TFLite model (default: from config, else bundled)")
    p.add_argument("--labels", type=Path, help="labels file (default: embedded in the model)")
    p.add_argument("--top-k", type=int, default=0, metavar="K")
    p.add_argument("--backend", choices=["auto", "cpu", "edgetpu"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "demo",
        help="run on the bundled model and samples with an embedded broker, showing events live",
    )
    p.add_argument("--frames", type=int, default=None, metavar="N")
    p.add_argument("--broker", default="", help="use this broker instead of an embedded one")
    _add_config(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ha", help="Home Assistant discovery")
    ha = p.add_subparsers(dest="ha_command", metavar="{remove}", required=True)
    p = ha.add_parser(
        "remove", help="remove this device's entities from Home Assistant (empty retained configs)"
    )
    _add_config(p)
    p.set_defaults(func=cmd_ha_remove)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)

    for name in ("edged.tools", "edged.devices_cli", "edged.fleet"):
        try:
            module = __import__(name, fromlist=["register"])
        except ImportError:
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from edged.infer.model import ModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"edged: invalid configuration\n{exc.render()}", file=sys.stderr)
        return EXIT_CONFIG
    except ModelError as exc:
        print(f"edged: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except FileNotFoundError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        log.debug("unhandled error", exc_info=True)
        print(f"edged: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
