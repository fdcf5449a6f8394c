"""``edged run`` (the daemon) and ``edged check-config``."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from edged.commands.common import EXIT_OK, add_config
from edged.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from edged.infer.bundled import profile_model
from edged.infer.model import ModelError
from edged.logsetup import set_context
from edged.signals import install_signal_handlers


def load_checked(args: argparse.Namespace) -> Config:
    """The config with every problem at once (schema, cross-field, missing files), then the
    model profile, which needs the parsed config; ConfigError (exit 2) otherwise."""
    cfg = load_config(args.config, check_files=True)
    problems = check_files(cfg)
    if problems:
        raise ConfigError(str(args.config or DEFAULT_CONFIG_PATH), problems)
    return cfg


def check_files(cfg: Config) -> list[tuple[str, str, Any]]:
    """What only a parsed config can check: the models folder and the profile's model (the
    other paths are checked with the schema, :func:`edged.config.file_problems`)."""
    if cfg.model.models_dir and not Path(cfg.model.models_dir).is_dir():
        return [("model.models_dir", "no such folder", cfg.model.models_dir)]
    if not cfg.model.path:
        try:
            profile_model(cfg.model.profile, cfg.model.models_dir)
        except ModelError as exc:
            return [("model.profile", str(exc), cfg.model.profile)]
    return []


def cmd_run(args: argparse.Namespace) -> int:
    from edged.app import Daemon

    cfg = load_checked(args)  # what check-config refuses, run refuses
    set_context(device=cfg.device.id)
    stop = threading.Event()
    install_signal_handlers(stop)
    daemon = Daemon(cfg, max_frames=args.frames, stop=stop)
    return daemon.run()


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem at once: schema, cross-field and missing files (exit 2)."""
    cfg = load_checked(args)
    print(f"{args.config or DEFAULT_CONFIG_PATH}: valid (device {cfg.device.id})")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon")
    add_config(p)
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="stop cleanly after N frames have been classified and published",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 on errors")
    add_config(p)
    p.set_defaults(func=cmd_check_config)
