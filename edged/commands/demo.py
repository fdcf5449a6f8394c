"""``edged demo``: the daemon on its embedded defaults, with the events shown live."""

from __future__ import annotations

import argparse
from typing import Any

from edged.commands.common import add_config, positive_int


def cmd_demo(args: argparse.Namespace) -> int:
    from edged.demo import run_demo

    return run_demo(frames=args.frames, broker_url=args.broker, config=args.config)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run on the bundled model and samples with an embedded broker, showing events live",
    )
    p.add_argument(
        "--frames", type=positive_int, default=None, metavar="N", help="stop after N frames"
    )
    p.add_argument("--broker", default="", help="use this broker instead of an embedded one")
    add_config(p)
    p.set_defaults(func=cmd_demo)
