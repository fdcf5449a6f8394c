"""Find the Coral Edge TPUs attached to this machine, and read their temperature.

Everything here reads files (or, in :func:`list_edge_tpus` only, asks pycoral when Coral's
package is installed) and returns small immutable records; nothing is opened for I/O and
nothing happens at import time.  The daemon's health report uses :func:`scan_edge_tpus`,
which reads sysfs and /dev only: asking pycoral would load libedgetpu into the daemon
process, which the inference worker exists to keep it out of.  The ``sysfs`` and ``dev``
arguments exist so the scans can run against a fake tree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LOG = logging.getLogger(__name__)

# (idVendor, idProduct) of the Coral USB Accelerator. It enumerates as Global
# Unichip until libedgetpu has loaded its firmware, then re-enumerates as Google.
CORAL_USB_IDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("1a6e", "089a"),  # Global Unichip Corp., before first use
        ("18d1", "9302"),  # Google Inc., firmware loaded
    }
)

TPU_TYPES: tuple[str, ...] = ("usb", "pci")

_APEX_RE = re.compile(r"apex_(\d+)")
_SPEC_RE = re.compile(r"(usb|pci)(?::(\d+))?")
_SPEC_FORMS = "'' (first Edge TPU found), 'usb', 'usb:N', 'pci', 'pci:N' (N = 0, 1, ...)"


@dataclass(frozen=True)
class EdgeTpu:
    """One Edge TPU: ``type`` is "usb" or "pci"; ``path`` is its sysfs or /dev path."""

    type: str
    path: str


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``model.edgetpu_device`` value. ``None`` fields mean "any"."""

    type: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        """The canonical spelling, which is also what libedgetpu takes as ``device``."""
        if self.type is None:
            return ""
        return self.type if self.index is None else f"{self.type}:{self.index}"


# --- Edge TPUs -------------------------------------------------------------


def list_edge_tpus(sysfs: Path = Path("/sys"), dev: Path = Path("/dev")) -> list[EdgeTpu]:
    """List the Edge TPUs, in the order ``select_tpu`` counts them.

    pycoral's ``list_edge_tpus`` (libedgetpu's own enumeration) is used when
    Coral's package is installed; otherwise ``dev/apex_N`` nodes (PCIe, by N)
    and then Coral USB ids under ``sysfs`` (by bus path) are scanned.
    """
    from_pycoral = _list_with_pycoral()
    if from_pycoral is not None:
        return from_pycoral
    return scan_edge_tpus(sysfs, dev)


def scan_edge_tpus(sysfs: Path = Path("/sys"), dev: Path = Path("/dev")) -> list[EdgeTpu]:
    """The Edge TPUs from ``dev/apex_N`` (PCIe, by N) and Coral USB ids under ``sysfs`` (by
    bus path), without loading any library."""
    return _list_pci(dev) + _list_usb(sysfs)


def _list_with_pycoral() -> list[EdgeTpu] | None:
    """Ask pycoral, or return None when it is absent or is not Coral's package."""
    try:
        from pycoral.utils.edgetpu import list_edge_tpus as pycoral_list
    except ImportError:
        return None
    if not callable(pycoral_list):
        _LOG.debug("pycoral.utils.edgetpu.list_edge_tpus is not callable; scanning sysfs")
        return None
    try:
        found = pycoral_list()
    except Exception as exc:
        _LOG.warning("pycoral list_edge_tpus failed (%s); scanning sysfs", exc)
        return None
    if not isinstance(found, list):
        _LOG.debug("pycoral list_edge_tpus returned %r, not a list; scanning sysfs", found)
        return None
    tpus: list[EdgeTpu] = []
    for entry in found:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("type"), str)
            and isinstance(entry.get("path"), str)
        ):
            _LOG.debug("pycoral list_edge_tpus returned %r; scanning sysfs", found)
            return None
        tpus.append(EdgeTpu(type=entry["type"], path=entry["path"]))
    return tpus


def _list_pci(dev: Path) -> list[EdgeTpu]:
    nodes: list[tuple[int, Path]] = []
    try:
        entries = list(dev.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _APEX_RE.fullmatch(entry.name)
        if match:
            nodes.append((int(match.group(1)), entry))
    return [EdgeTpu(type="pci", path=str(path)) for _, path in sorted(nodes)]


def _list_usb(sysfs: Path) -> list[EdgeTpu]:
    root = sysfs / "bus" / "usb" / "devices"
    try:
        entries = sorted(root.iterdir(), key=lambda p: _natural_key(p.name))
    except OSError:
        return []
    tpus: list[EdgeTpu] = []
    for entry in entries:
        vendor = _read_text(entry / "idVendor")
        product = _read_text(entry / "idProduct")
        if vendor is None or product is None:
            continue  # interfaces ("2-1:1.0") have no ids
        if (vendor.lower(), product.lower()) in CORAL_USB_IDS:
            tpus.append(EdgeTpu(type="usb", path=str(root / entry.name)))
    return tpus


def tpu_temperature_c(index: int = 0, sysfs: Path = Path("/sys")) -> float | None:
    """Temperature of PCIe Edge TPU ``index`` in degrees C, or None if not available.

    The apex driver reports millidegrees in ``/sys/class/apex/apex_N/temp``;
    USB Accelerators have no such file.
    """
    text = _read_text(sysfs / "class" / "apex" / f"apex_{index}" / "temp")
    if text is None:
        return None
    try:
        return int(text) / 1000.0
    except ValueError:
        _LOG.debug("unexpected apex_%d temp %r", index, text)
        return None


def parse_device_spec(spec: str) -> DeviceSpec:
    """Parse a ``model.edgetpu_device`` value; ValueError names the bad value."""
    text = spec.strip()
    if text == "":
        return DeviceSpec()
    match = _SPEC_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad model.edgetpu_device {spec!r}: valid forms are {_SPEC_FORMS}")
    index = match.group(2)
    return DeviceSpec(type=match.group(1), index=None if index is None else int(index))


def select_tpu(spec: str, tpus: Sequence[EdgeTpu]) -> EdgeTpu | None:
    """The Edge TPU that ``spec`` names among ``tpus``, or None if there is none.

    ``usb:N`` / ``pci:N`` count only TPUs of that type, in list order, as
    libedgetpu does. Raises ValueError for a malformed spec.
    """
    parsed = parse_device_spec(spec)
    candidates = [t for t in tpus if parsed.type is None or t.type == parsed.type]
    index = parsed.index or 0
    return candidates[index] if index < len(candidates) else None


# --- sysfs reading -------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
