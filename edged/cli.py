"""The ``edged`` command line: run, check-config, classify, demo, version (and the model,
device and fleet tools).  Exit codes: 0 ok, 1 other error, 2 bad config, 3 model error.
The commands live in :mod:`edged.commands`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from edged.commands import register_all
from edged.commands.common import EXIT_CONFIG, EXIT_ERROR, EXIT_MODEL, EXIT_OK
from edged.commands.version import VersionAction
from edged.config import ConfigError
from edged.logsetup import setup_logging

log = logging.getLogger("edged")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged", description="Classify camera frames with TFLite; publish over MQTT."
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, including the TFLite runtime's own messages",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from edged.infer.model import ModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("DEBUG" if args.verbose else args.log_level)
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
