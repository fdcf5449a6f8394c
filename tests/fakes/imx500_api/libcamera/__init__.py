"""A stand-in for libcamera's Python package (``import libcamera``), beneath the real
picamera2 package, on machines without a Pi camera.

As the real package does, it re-exports its bindings module :mod:`libcamera._libcamera`
(here simulated in Python: see that module).  Importing it also installs the simulated
kernel and camera modules of :mod:`imx500_sim` (they hook the real ``picamera2`` modules
that talk to the kernel as they load).
"""

from __future__ import annotations

import importlib

from . import _libcamera
from ._libcamera import *  # noqa: F403

__all__ = ["_libcamera", *_libcamera.__all__]

importlib.import_module("imx500_sim").install()  # the simulated kernel and sensors
