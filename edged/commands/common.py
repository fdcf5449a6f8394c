"""What every command shares: exit codes and the ``--config`` option."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import annotated_types
from pydantic import BaseModel

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


def int_between(low: int | None, high: int | None, like: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (either may be open).  Errors name the
    bad value and the range, as config errors do; argparse then exits 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                allowed = f"at least {low}"
            elif low is None:
                allowed = f"at most {high}"
            else:
                allowed = f"from {low} to {high}"
            where = f" (as {like})" if like else ""
            raise argparse.ArgumentTypeError(f"must be {allowed}{where}, got {value}")
        return value

    return parse


def config_int(section: str, model: type[BaseModel], field: str) -> Callable[[str], int]:
    """An argparse type for an option that overrides config key ``section.field``: the
    bounds the config gives that key."""
    low: int | None = None
    high: int | None = None
    for rule in model.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = int(rule.ge)  # type: ignore[call-overload]
        elif isinstance(rule, annotated_types.Gt):
            low = int(rule.gt) + 1  # type: ignore[call-overload]
        elif isinstance(rule, annotated_types.Le):
            high = int(rule.le)  # type: ignore[call-overload]
        elif isinstance(rule, annotated_types.Lt):
            high = int(rule.lt) - 1  # type: ignore[call-overload]
    return int_between(low, high, f"{section}.{field}")


positive_int = int_between(1, None)
