"""The ``edged`` subcommands, one module per command (or family of commands), each with a
``register(subparsers)``.  They are imported here explicitly: a broken module is an import
error at start, never a command that silently vanishes."""

from __future__ import annotations

from typing import Any

from edged import fleet
from edged.commands import classify, demo, ha, models, run, tools, train, version

MODULES = (run, classify, demo, version, tools, models, train, fleet, ha)


def register_all(sub: Any) -> None:
    for module in MODULES:
        module.register(sub)
