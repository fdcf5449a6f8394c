"""``edged version``: edged, its TFLite runtime and numpy."""

from __future__ import annotations

import argparse
from typing import Any

from edged import __version__
from edged.commands.common import EXIT_OK


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


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
