"""Frame sources.  One file per backend, registered by the config's ``type``."""

from edged.capture.base import SOURCES, Frame, FrameSource, open_source

__all__ = ["SOURCES", "Frame", "FrameSource", "open_source"]
