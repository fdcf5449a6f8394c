"""The models that come with edged, what their manifest says about them, and where the
model of a ``model.profile`` is found."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from edged.infer.model import ModelError

DEFAULT_MODEL = "efficientnet_lite0_int8.tflite"
DEFAULT_PROFILE = "fast"
PROFILES = ("fast", "balanced", "accurate")
ANSIBLE_HINT = "the Ansible role (edged_model: {variant})"


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


def manifest_entries() -> list[dict[str, Any]]:
    return [e for e in manifest().get("models", []) if isinstance(e, dict) and e.get("file")]


def manifest_entry(model_path: Path) -> dict[str, Any] | None:
    """The manifest's entry for a bundled model file, by file name."""
    for entry in manifest_entries():
        if entry.get("file") == model_path.name:
            return entry
    return None


def profile_entry(profile: str) -> dict[str, Any]:
    """The manifest's entry for the model a profile names."""
    for entry in manifest_entries():
        if entry.get("profile") == profile:
            return entry
    if profile == DEFAULT_PROFILE:  # a manifest without profiles: the default model
        return {"file": DEFAULT_MODEL}
    raise ModelError(
        f"model.profile {profile!r} is not in the manifest {models_dir() / 'manifest.toml'}; "
        f"valid profiles: {', '.join(PROFILES)}"
    )


def search_dirs(extra: str | Path | None = None) -> list[Path]:
    """Where models are looked up by name: the bundled folder, then ``model.models_dir``."""
    dirs = [models_dir()]
    if extra:
        dirs.append(Path(extra))
    return dirs


def find_model(name: str, dirs: Sequence[Path]) -> Path | None:
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    return None


def profile_model(profile: str, extra_dir: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The file and manifest entry of a profile's model; a :class:`ModelError` that says
    where to get it when it is not installed."""
    entry = profile_entry(profile)
    dirs = search_dirs(extra_dir)
    path = find_model(entry["file"], dirs)
    if path is None:
        variant = entry.get("variant", "")
        raise ModelError(
            f"model.profile {profile!r} needs {entry['file']}, which is not installed "
            f"(looked in {', '.join(str(d) for d in dirs)}). Install it with "
            + ANSIBLE_HINT.format(variant=variant)
            + f", or copy models/{entry['file']} of the edged source into model.models_dir "
            "(the wheel ships only the 'fast' model); or set model.path"
        )
    return path, entry


def default_model_path() -> Path:
    return models_dir() / DEFAULT_MODEL
