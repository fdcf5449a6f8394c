"""What every command shares: exit codes and the ``--config`` option."""

from __future__ import annotations

import argparse
from pathlib import Path

from edged.config import DEFAULT_CONFIG_PATH, Config, load_config

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_MODEL = 0, 1, 2, 3


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help=f"TOML config file (default: {DEFAULT_CONFIG_PATH} if it exists)",
    )


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config)
