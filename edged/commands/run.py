"""``edged run`` (the daemon) and ``edged check-config``."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from edged.commands.common import EXIT_OK, add_config, positive_int
from edged.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    Imx500CaptureConfig,
    load_config,
)
from edged.engine import check_model, cpu_model
from edged.infer.bundled import profile_model
from edged.infer.imx500 import (
    NETWORKS_DIR,
    NetworkError,
    NetworkFile,
    inspect_network,
    list_networks,
)
from edged.infer.model import ModelError
from edged.infer.runtime import bound_heap_slack
from edged.logsetup import set_context
from edged.signals import install_signal_handlers


def cmd_run(args: argparse.Namespace) -> int:
    from edged.app import Daemon

    # what check-config refuses for the config and its files, run refuses
    cfg = load_config(args.config, check_files=True)
    problems = check_files(cfg)
    if problems:
        raise ConfigError(str(args.config or DEFAULT_CONFIG_PATH), problems)
    set_context(device=cfg.device.id)
    bound_heap_slack()  # before any model is loaded: a reload must not leave the heap larger
    stop = threading.Event()
    install_signal_handlers(stop)
    daemon = Daemon(cfg, max_frames=args.frames, stop=stop)
    return daemon.run()


def cmd_check_config(args: argparse.Namespace) -> int:
    """The config as ``run`` would load it (a missing default file is an error here), the
    files it names, and the model opened as ``run`` would open it."""
    path = args.config or DEFAULT_CONFIG_PATH
    cfg = load_config(path, check_files=True)  # missing files come with the schema errors
    problems = check_files(cfg)
    described = ""
    if not any(key.startswith("model.") for key, _, _ in problems):
        try:
            described = check_model(cpu_model(cfg))
        except ModelError as exc:
            problems.append(_model_problem(cfg, str(exc)))
    for name, model in cfg.models.items():  # [models.NAME]: opened as run would open them
        try:
            check_model(model)
        except ModelError as exc:
            problems.append((f"models.{name}", str(exc), model.path or model.profile))
    if problems:
        raise ConfigError(str(path), problems)
    cameras = [c.name for c in cfg.cameras]
    listed = f"; {len(cameras)} cameras: {', '.join(cameras)}" if cameras else ""
    print(f"{path}: valid (device {cfg.device.id}{listed}; model {described})")
    return EXIT_OK


def _model_problem(cfg: Config, message: str) -> tuple[str, str, Any]:
    """The key a model error is about: sha256, labels, else the model file."""
    if "sha256" in message:
        return "model.sha256", message, cfg.model.sha256
    if "labels" in message and cfg.model.labels:
        return "model.labels", message, cfg.model.labels
    return "model.path", message, cfg.model.path or "(bundled model)"


def check_files(cfg: Config) -> list[tuple[str, str, Any]]:
    """Checks that need the file system: paths that must exist."""
    problems: list[tuple[str, str, Any]] = []
    for key in ("path", "labels", "cpu_path"):
        value = getattr(cfg.model, key)
        if value and not Path(value).is_file():
            problems.append((f"model.{key}", "no such file", value))
    if cfg.model.models_dir and not Path(cfg.model.models_dir).is_dir():
        problems.append(("model.models_dir", "no such folder", cfg.model.models_dir))
    elif not cfg.model.path:
        try:
            profile_model(cfg.model.profile, cfg.model.models_dir)
        except ModelError as exc:
            problems.append(("model.profile", str(exc), cfg.model.profile))
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        value = getattr(cfg.mqtt, key)
        if value and not Path(value).is_file():
            problems.append((f"mqtt.{key}", "no such file", value))
    if cfg.web.password_file and not Path(cfg.web.password_file).is_file():
        problems.append(("web.password_file", "no such file", cfg.web.password_file))
    for i, camera in enumerate(cfg.camera_list()):
        where = "capture" if camera.name is None else f"cameras[{i}]"
        capture = camera.capture
        if capture.type == "stream":
            value = capture.password_file
            if value and not Path(value).is_file():
                problems.append((f"{where}.password_file", "no such file", value))
        if capture.type == "replay":
            for j, value in enumerate(capture.paths):
                if not Path(value).exists():
                    problems.append((f"{where}.paths.{j}", "does not exist", value))
        if capture.type == "imx500":
            problems += check_imx500(capture, where)
    return problems


def check_imx500(
    capture: Imx500CaptureConfig, where: str = "capture"
) -> list[tuple[str, str, Any]]:
    """An AI camera's files: the network package as edged reads it at load (a classifier
    with an input size), its labels, the CPU twin."""
    problems: list[tuple[str, str, Any]] = []
    try:
        inspect_network(capture.network)
    except NetworkError as exc:
        message = str(exc)
        if not Path(capture.network).exists():
            dirs = [Path(capture.network).parent, NETWORKS_DIR]
            names = sorted({n.name for n in list_networks(dirs) if isinstance(n, NetworkFile)})
            message = "no such file" + (
                f"; installed networks: {', '.join(names)}"
                if names
                else f" (none in {NETWORKS_DIR}: apt install imx500-all)"
            )
        problems.append((f"{where}.network", message, capture.network))
    for key in ("labels", "cpu_model"):
        value = getattr(capture, key)
        if value and not Path(value).is_file():
            problems.append((f"{where}.{key}", "no such file", value))
    return problems


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon")
    add_config(p)
    p.add_argument(
        "--frames",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop cleanly after N frames have been classified and published",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 on errors")
    add_config(p)
    p.set_defaults(func=cmd_check_config)
