"""The model that ships with edged, and what its manifest says about it."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "efficientnet_lite0_int8.tflite"


def models_dir() -> Path:
    """Where the bundled models live: the installed ``edged.models`` data, or the source
    tree's ``models/`` folder."""
    try:
        # edged.models is a data-only namespace package: join before converting to a path
        manifest_file = Path(str(resources.files("edged.models").joinpath("manifest.toml")))
        if manifest_file.exists():
            return manifest_file.parent
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "models"


def manifest() -> dict[str, Any]:
    path = models_dir() / "manifest.toml"
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def manifest_entry(model_path: Path) -> dict[str, Any] | None:
    """The manifest's entry for a bundled model file, by file name."""
    for entry in manifest().get("models", []):
        if isinstance(entry, dict) and entry.get("file") == model_path.name:
            return entry
    return None


def default_model_path() -> Path:
    return models_dir() / DEFAULT_MODEL
