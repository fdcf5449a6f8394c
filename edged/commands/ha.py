"""``edged ha remove``: remove this device's entities from Home Assistant."""

from __future__ import annotations

import argparse
from typing import Any

from edged.commands.common import EXIT_OK, add_config, load
from edged.config import read_secret


def cmd_ha_remove(args: argparse.Namespace) -> int:
    from edged.publish.homeassistant import remove

    cfg = load(args)
    count = remove(cfg, read_secret(cfg.mqtt.password_file, "mqtt_password"))
    print(
        f"removed {count} Home Assistant entities of {cfg.device.id} "
        f"under {cfg.homeassistant.discovery_prefix}/"
    )
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("ha", help="Home Assistant discovery")
    ha = p.add_subparsers(dest="ha_command", metavar="{remove}", required=True)
    p = ha.add_parser(
        "remove", help="remove this device's entities from Home Assistant (empty retained configs)"
    )
    add_config(p)
    p.set_defaults(func=cmd_ha_remove)
