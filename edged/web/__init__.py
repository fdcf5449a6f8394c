"""The local status page: live frame with the top-k drawn over it, health, effective config."""

from edged.web.server import StatusPage, WebSource, WebStartError, redact

__all__ = ["StatusPage", "WebSource", "WebStartError", "redact"]
