"""Trained models kept on the device, each in its own folder with its report, and which one
runs: ``deployed.json`` holds the deployments in order (``config`` is the model of the
configuration), so that a roll back goes to the one before."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from edged.learn.store import LearnError, check_id

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
REPORT_FILE = "report.json"
STATUS_FILE = "status.json"
SPEC_FILE = "job.json"
LOG_FILE = "train.log"
DEPLOYED_FILE = "deployed.json"
CONFIG_ID = "config"
HISTORY = 20


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Any) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", "utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelStore:
    """``root``/<id>/ holds a job's model, report and status; <id> is the job's id."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def ids(self) -> list[str]:
        """Job ids, newest first (they begin with their UTC time)."""
        out = [
            e.name
            for e in os.scandir(self.root)
            if e.is_dir() and not e.name.startswith(".") and (Path(e.path) / SPEC_FILE).exists()
        ]
        return sorted(out, reverse=True)

    def folder(self, mid: str, what: str = "model") -> Path:
        check_id(mid, what)
        if mid not in self.ids():
            raise LearnError(f"unknown {what} id {mid!r}", 404)
        return self.root / mid

    # -- deployments ---------------------------------------------------------------------
    def history(self) -> list[str]:
        data = read_json(self.root / DEPLOYED_FILE) or {}
        hist = data.get("history")
        ids = set(self.ids())
        if not isinstance(hist, list):
            return [CONFIG_ID]
        good = [h for h in hist if h == CONFIG_ID or (isinstance(h, str) and h in ids)]
        return good or [CONFIG_ID]

    def deployed(self) -> str:
        return self.history()[-1]

    def set_history(self, hist: list[str], config_sha256: str) -> None:
        """``config_sha256``: the configured model's, so that a start after the
        configuration changed the model runs that one (see LearnApi)."""
        write_json(
            self.root / DEPLOYED_FILE,
            {"history": hist[-HISTORY:], "config_sha256": config_sha256},
        )

    def config_sha256(self) -> str | None:
        value = (read_json(self.root / DEPLOYED_FILE) or {}).get("config_sha256")
        return value if isinstance(value, str) else None

    # -- listing -------------------------------------------------------------------------
    def entry(self, mid: str, deployed: str) -> dict[str, Any] | None:
        folder = self.root / mid
        model = folder / MODEL_FILE
        report = read_json(folder / REPORT_FILE)
        if report is None or not model.exists():
            return None
        sha = (
            report.get("model", {}).get("sha256") if isinstance(report.get("model"), dict) else None
        )
        return {
            "id": mid,
            "path": str(model),
            "sha256": sha or sha256_of(model),
            "deployed": mid == deployed,
            "report": report,
        }

    def prune(self, protect: set[str]) -> None:
        """Keep the newest ``keep`` jobs, and always those in ``protect`` (running,
        deployed, the roll-back target)."""
        ids = self.ids()
        keep = set(ids[: self.keep]) | protect | set(self.history()[-2:])
        for mid in ids:
            if mid not in keep:
                shutil.rmtree(self.root / mid, ignore_errors=True)
                log.info("trained model %s removed (learn.keep_models = %d)", mid, self.keep)
