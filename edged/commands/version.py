"""``edged version``: edged, its TFLite runtime and numpy."""

from __future__ import annotations

import argparse
from typing import Any

from edged import __version__
from edged.commands.common import EXIT_OK


def version_text() -> str:
    """edged's version, its TFLite runtime's and numpy's, one per line."""
    import numpy

    from edged.infer.runtime import RuntimeMissing, get_runtime, runtime_version

    lines = [f"edged {__version__}"]
    try:
        runtime = get_runtime()
        release = runtime_version(runtime)
        lines.append(f"runtime: {runtime.name}" + (f" {release}" if release else ""))
    except RuntimeMissing as exc:
        lines.append(f"runtime: none ({exc})")
    lines.append(f"numpy {numpy.__version__}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """``edged --version``: the same as ``edged version``."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the version, the TFLite runtime and numpy, and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


def cmd_version(args: argparse.Namespace) -> int:
    print(version_text())
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="print the version, the TFLite runtime and numpy")
    p.set_defaults(func=cmd_version)
