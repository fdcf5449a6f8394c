"""One logging setup, called from ``main()``: journald with structured fields when running
under systemd and systemd-python is importable, plain stderr otherwise."""

from __future__ import annotations

import importlib
import logging
import os
import sys


class ContextFilter(logging.Filter):
    """Adds the journal fields EDGED_DEVICE, EDGED_MODEL and EDGED_BACKEND to every record."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            setattr(record, key, value)
        return True


CONTEXT = ContextFilter()


def set_context(**fields: str) -> None:
    CONTEXT.fields.update({f"EDGED_{k.upper()}": v for k, v in fields.items()})


def _journal_handler() -> logging.Handler | None:
    if not os.environ.get("JOURNAL_STREAM"):
        return None
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER="edged")
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return handler


def setup_logging(level: str = "INFO") -> None:
    handler = _journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        # journald (and systemd's stderr capture) adds its own timestamps
        under_systemd = bool(os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM"))
        fmt = "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt if under_systemd else "%(asctime)s " + fmt))
    handler.addFilter(CONTEXT)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("edged.publish.paho").setLevel(logging.WARNING)
