"""``edged models export``: a model trained on this device, with its sha256 and its report,
as files another device (or the Ansible role) installs and checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from edged.config import Config
from edged.learn.models import CONFIG_ID, MODEL_FILE, REPORT_FILE, ModelStore, read_json, sha256_of
from edged.learn.store import LearnError, check_id


class ExportError(Exception):
    pass


def export(cfg: Config, model_id: str | None, out: Path) -> dict[str, Any]:
    """Write ``out``/<device>-<id>.tflite, its ``.sha256`` (sha256sum's format) and its
    manifest ``.json`` (sha256, classes, the training report); returns the manifest."""
    from edged.learn.api import learn_paths

    _, models_dir = learn_paths(cfg)
    if not models_dir.is_dir():
        raise ExportError(f"no trained models: {models_dir} does not exist")
    store = ModelStore(models_dir, cfg.learn.keep_models)
    mid = model_id or store.deployed()
    if mid == CONFIG_ID:
        raise ExportError(
            "the configured model runs, no trained one: name a model id "
            f"(kept: {', '.join(store.ids()) or 'none'})"
        )
    try:
        check_id(mid, "model")
        folder = store.folder(mid)
    except LearnError:
        raise ExportError(
            f"unknown model id {mid!r}; kept: {', '.join(store.ids()) or 'none'}"
        ) from None
    report = read_json(folder / REPORT_FILE)
    model = folder / MODEL_FILE
    if report is None or not model.exists():
        raise ExportError(f"model {mid} has no model file or report (its training failed)")
    sha = sha256_of(model)
    if sha != (report.get("model") or {}).get("sha256"):
        raise ExportError(f"model {mid} no longer matches the sha256 of its report")
    if not out.is_dir():
        raise ExportError(f"--out {str(out)!r} is not a folder")
    name = f"{cfg.device.id}-{mid}"
    manifest = {
        "model": f"{name}.tflite",
        "sha256": sha,
        "size_bytes": model.stat().st_size,
        "classes": report.get("classes", []),
        "device": cfg.device.id,
        "trained": mid,
        "recipe": report.get("recipe"),
        "accuracy": report.get("accuracy"),
        "baseline_accuracy": report.get("baseline_accuracy"),
        "report": report,
    }
    files = {
        out / f"{name}.tflite": None,
        out / f"{name}.tflite.sha256": f"{sha}  {name}.tflite\n",
        out / f"{name}.json": json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
    }
    for dst, text in files.items():
        tmp = dst.with_name(f".{dst.name}.tmp")
        try:
            if text is None:
                shutil.copyfile(model, tmp)
            else:
                tmp.write_text(text, "utf-8")
            os.replace(tmp, dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ExportError(f"cannot write {dst}: {exc}") from None
    if sha256_of(out / f"{name}.tflite") != sha:
        raise ExportError(f"{out / name}.tflite differs from the model after the copy")
    return manifest
