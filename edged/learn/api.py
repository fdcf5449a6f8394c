"""The Learn JSON API, served by the status page behind its auth.

Routes (ids are opaque; errors are ``{"error": reason}`` with 400, 404, 409 or 507)::

    GET    /api/collected?offset=&limit=     collected frames, newest first
    GET    /api/collected/{id}/image         the frame's JPEG
    POST   /api/collected/{id}/label         {"label": "glass"} or {"label": null}
    DELETE /api/collected/{id}
    GET    /api/dataset                      photos per class
    POST   /api/train                        {"job": id}; 409 while one runs
    GET    /api/train/{job}                  {"state", "progress", "report"}
    POST   /api/train/{job}/deploy           {"force": true} deploys a worse model too
    POST   /api/models/rollback
    GET    /api/models                       {"models": [{"id", "path", "sha256", ...}]}
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from edged.config import Config, ConfigError, ModelConfig
from edged.control.request import CommandError
from edged.learn import job as job_module
from edged.learn.models import (
    CONFIG_ID,
    LOG_FILE,
    MODEL_FILE,
    REPORT_FILE,
    SPEC_FILE,
    STATUS_FILE,
    ModelStore,
    read_json,
    sha256_of,
    write_json,
)
from edged.learn.store import LearnError, Store, check_id

log = logging.getLogger(__name__)

MAX_LIMIT = 200
PREFIXES = ("/api/collected", "/api/dataset", "/api/train", "/api/models")


class Reloader(Protocol):
    def reload_model(self, model: ModelConfig) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes | dict[str, Any]
    ctype: str = "application/json"


def state_dir() -> Path | None:
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else None


def learn_paths(cfg: Config) -> tuple[Path, Path]:
    """The dataset and models folders, or ConfigError naming the key to set."""
    state = state_dir()
    problems = []
    paths = []
    for key, value, name in (
        ("learn.dataset", cfg.learn.dataset, "dataset"),
        ("learn.models_dir", cfg.learn.models_dir, "models"),
    ):
        if value:
            paths.append(Path(value))
        elif state is not None:
            paths.append(state / name)
        else:
            problems.append((key, "empty and $STATE_DIRECTORY is not set: give a folder", value))
    if problems:
        raise ConfigError("learn", problems)
    return paths[0], paths[1]


def training_threads() -> int:
    """One fewer than the cores this process may use (at least one)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


class LearnApi:
    def __init__(
        self,
        cfg: Config,
        reloader: Reloader,
        running_model: Callable[[], ModelConfig],
        python: str = sys.executable,
    ) -> None:
        dataset, models = learn_paths(cfg)
        self.cfg = cfg
        self.store = Store(Path(cfg.collect.dir), dataset, int(cfg.learn.max_mb * 1_000_000))
        self.models = ModelStore(models, cfg.learn.keep_models)
        self.reloader = reloader
        self.running_model = running_model
        self.python = python
        self._lock = threading.Lock()  # one change to the models at a time
        self._proc: subprocess.Popen[bytes] | None = None
        self._job: str | None = None
        self._config_sha: str | None = None
        self._mark_interrupted()
        self._restoring: threading.Thread | None = None
        if self.models.deployed() != CONFIG_ID:
            self._restoring = threading.Thread(
                target=self._restore, name="edged-learn-restore", daemon=True
            )
            self._restoring.start()

    def _restore(self) -> None:
        """At start, the model deployed before runs again (through the reload path, once the
        pipeline runs), unless the configured model changed since (a fleet rollout): then
        the configuration wins."""
        with self._lock:
            mid = self.models.deployed()
            saved = self.models.config_sha256()
            now = self._configured_sha()
            if saved != now:
                log.info(
                    "the configured model changed since model %s was deployed: it runs, not %s",
                    mid,
                    mid,
                )
                self.models.set_history([CONFIG_ID], now)
                return
            try:
                model = self._model_cfg(mid)
                self._reload(model)
            except LearnError as exc:
                log.warning("model %s, deployed before, cannot run again: %s", mid, exc)
                self.models.set_history([CONFIG_ID], now)
                return
            log.info("model %s, deployed before this start, runs again", mid)

    def close(self) -> None:
        """Stop a running training (its job then reads as failed, the model stays)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # -- dispatch ------------------------------------------------------------------------
    @staticmethod
    def owns(path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in PREFIXES)

    def handle(self, method: str, path: str, query: str, body: Any) -> Reply:
        try:
            return self._route(method, path.rstrip("/").split("/")[2:], query, body)
        except LearnError as exc:
            return Reply(exc.status, {"error": str(exc)})

    def _route(self, method: str, parts: list[str], query: str, body: Any) -> Reply:
        head, rest = parts[0], parts[1:]
        if head == "collected":
            if method == "GET" and not rest:
                return self._json(self._collected(query))
            if len(rest) == 2 and rest[1] == "image" and method == "GET":
                f = self.store.frame(rest[0])
                ctype = "image/png" if f.image.suffix.lower() == ".png" else "image/jpeg"
                return Reply(200, f.image.read_bytes(), ctype)
            if len(rest) == 2 and rest[1] == "label" and method == "POST":
                if not isinstance(body, dict) or "label" not in body:
                    raise LearnError('give {"label": "name"} or {"label": null}')
                return self._json(self.store.set_label(rest[0], body["label"]))
            if len(rest) == 1 and method == "DELETE":
                self.store.delete(rest[0])
                return self._json({"deleted": rest[0]})
        elif head == "dataset" and not rest and method == "GET":
            return self._json(self.store.counts())
        elif head == "train":
            if not rest and method == "POST":
                return self._json({"job": self.start_job()}, 202)
            if len(rest) == 1 and method == "GET":
                return self._json(self.job(rest[0]))
            if len(rest) == 2 and rest[1] == "deploy" and method == "POST":
                force = isinstance(body, dict) and body.get("force") is True
                return self._json(self.deploy(rest[0], force))
        elif head == "models":
            if not rest and method == "GET":
                return self._json({"models": self.list_models()})
            if rest == ["rollback"] and method == "POST":
                return self._json(self.rollback())
        raise LearnError(f"no route {method} /api/{'/'.join(parts)}", 404)

    @staticmethod
    def _json(data: dict[str, Any], status: int = 200) -> Reply:
        return Reply(status, data)

    def _collected(self, query: str) -> dict[str, Any]:
        q = parse_qs(query)

        def number(key: str, default: int, top: int) -> int:
            raw = q.get(key, [str(default)])[-1]
            try:
                value = int(raw)
            except ValueError:
                raise LearnError(f"{key}={raw!r} is not a whole number") from None
            if not 0 <= value <= top:
                raise LearnError(f"{key}={value} is out of range 0..{top}")
            return value

        return self.store.page(number("offset", 0, 10**9), number("limit", 50, MAX_LIMIT))

    # -- jobs ----------------------------------------------------------------------------
    def _mark_interrupted(self) -> None:
        """A job that was running when the daemon stopped did not finish."""
        for jid in self.models.ids():
            st = read_json(self.models.root / jid / STATUS_FILE)
            if st is None or st.get("state") == "running":
                write_json(
                    self.models.root / jid / STATUS_FILE,
                    {"state": "failed", "progress": 1.0,
                     "error": "training was interrupted (the daemon stopped)"},
                )  # fmt: skip

    def running(self) -> str | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._job
        return None

    def start_job(self) -> str:
        with self._lock:
            busy = self.running()
            if busy is not None:
                raise LearnError(f"training {busy} is running: wait for it to finish", 409)
            counts = self.store.counts()
            need = counts["min_per_class"]
            if len(counts["classes"]) < 2:
                raise LearnError(
                    f"the dataset has {len(counts['classes'])} class(es): training needs at "
                    f"least 2, each with at least {need} photos",
                    409,
                )
            short = {c: n for c, n in counts["classes"].items() if n < need}
            if short:
                listed = ", ".join(f"{c!r} has {n}" for c, n in short.items())
                raise LearnError(f"too few photos ({listed}): label at least {need} per class", 409)
            jid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
            folder = self.models.root / jid
            folder.mkdir()
            spec = {
                "id": jid,
                "dataset": str(self.store.dataset),
                "recipe": self.cfg.learn.recipe,
                "held_out": self.cfg.learn.held_out,
                "seed": 0,
                "threads": training_threads(),
                "model": self.cfg.model.model_dump(mode="json"),
                "baseline": self.running_model().model_dump(mode="json"),
                "classify": self.cfg.classify.model_dump(mode="json"),
                "cache_dir": str(self.models.root / ".cache"),
            }
            try:
                write_json(folder / SPEC_FILE, spec)
                write_json(
                    folder / STATUS_FILE, {"state": "running", "progress": 0.0, "phase": "starting"}
                )
                logf = (folder / LOG_FILE).open("wb")
            except OSError as exc:
                raise LearnError(f"cannot start training in {folder}: {exc}", 507) from None
            threads = str(spec["threads"])
            env = os.environ | {
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                "OPENBLAS_NUM_THREADS": threads,
                "EDGED_TRAIN_THREADS": threads,
            }
            with logf:
                self._proc = subprocess.Popen(
                    [self.python, "-m", job_module.__name__, str(folder)],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            self._job = jid
            log.info("training %s started (pid %d, recipe %s, %s thread(s), nice 19)",
                     jid, self._proc.pid, spec["recipe"], threads)  # fmt: skip
            return jid

    def job(self, jid: str) -> dict[str, Any]:
        folder = self.models.folder(jid, "job")
        st = read_json(folder / STATUS_FILE) or {}
        state = st.get("state")
        if state == "running" and self.running() != jid:
            code = self._proc.poll() if (self._job == jid and self._proc) else None
            st = {"state": "failed", "progress": 1.0, "error": self._why_ended(folder, code)}
            write_json(folder / STATUS_FILE, st)
            state = "failed"
        report = read_json(folder / REPORT_FILE) if state == "done" else None
        out = {
            "state": state if state in ("running", "done", "failed") else "failed",
            "progress": st.get("progress", 0.0),
            "phase": st.get("phase"),
            "report": report,
        }
        if state == "failed":
            out["error"] = st.get("error", "unknown")
        if state == "done":
            self.models.prune({jid, *([self._job] if self._job else [])})
        return out

    @staticmethod
    def _why_ended(folder: Path, code: int | None) -> str:
        how = (
            f"killed by signal {-code}" if code is not None and code < 0
            else f"exit code {code}" if code is not None else "no process"
        )  # fmt: skip
        try:
            import shutil

            if shutil.disk_usage(folder).free < 1_000_000:
                return f"the disk is full ({how}): free space and train again; the model stays"
        except OSError:
            pass
        return f"the training process ended without a result ({how}); the running model stays"

    # -- models --------------------------------------------------------------------------
    def _config_model(self) -> ModelConfig:
        return self.cfg.model

    def _configured_sha(self) -> str:
        from edged.engine import resolve_model_config

        if self._config_sha is None:
            path = resolve_model_config(self._config_model()).path
            self._config_sha = sha256_of(Path(path))
        return self._config_sha

    def list_models(self) -> list[dict[str, Any]]:
        deployed = self.models.deployed()
        from edged.engine import resolve_model_config

        cfg = resolve_model_config(self._config_model())
        out: list[dict[str, Any]] = [
            {"id": CONFIG_ID, "path": cfg.path, "sha256": self._configured_sha(),
             "deployed": deployed == CONFIG_ID, "report": None}
        ]  # fmt: skip
        for mid in self.models.ids():
            entry = self.models.entry(mid, deployed)
            if entry is not None:
                out.append(entry)
        return out

    def _model_cfg(self, mid: str) -> ModelConfig:
        if mid == CONFIG_ID:
            return self._config_model()
        folder = self.models.folder(mid)
        path = folder / MODEL_FILE
        report = read_json(folder / REPORT_FILE) or {}
        sha = (report.get("model") or {}).get("sha256") or sha256_of(path)
        return self.cfg.model.model_copy(
            update={"path": str(path), "sha256": sha, "labels": "", "cpu_path": ""}
        )

    def _reload(self, model: ModelConfig) -> dict[str, Any]:
        try:
            return self.reloader.reload_model(model)
        except CommandError as exc:
            raise LearnError(str(exc), 409) from None

    def deploy(self, jid: str, force: bool) -> dict[str, Any]:
        with self._lock:
            st = self.job(jid)
            if st["state"] != "done":
                why = st.get("error") or "still running"
                raise LearnError(f"job {jid} is {st['state']} ({why}): no model to deploy", 409)
            report = st["report"] or {}
            new, old = report.get("accuracy"), report.get("baseline_accuracy")
            if report.get("verdict") == "worse" and not force:
                raise LearnError(
                    f"the new model scores {new} on the held-out photos, the running one "
                    f'{old}: send {{"force": true}} to deploy it anyway',
                    409,
                )
            if self.models.deployed() == jid:
                raise LearnError(f"model {jid} is already deployed", 409)
            model = self._model_cfg(jid)
            if sha256_of(Path(model.path)) != model.sha256:
                raise LearnError(f"model {jid} does not match its sha256: train again", 409)
            result = self._reload(model)
            self.models.set_history([*self.models.history(), jid], self._configured_sha())
            log.info("model %s deployed (sha256 %s…)", jid, model.sha256[:12])
            return {"deployed": jid, "sha256": model.sha256, "reload": result}

    def rollback(self) -> dict[str, Any]:
        with self._lock:
            hist = self.models.history()
            if len(hist) < 2:
                raise LearnError("nothing to roll back to: the configured model runs", 409)
            prev = hist[-2]
            result = self._reload(self._model_cfg(prev))
            self.models.set_history(hist[:-1], self._configured_sha())
            log.info("rolled back from %s to %s", hist[-1], prev)
            return {"deployed": prev, "rolled_back": hist[-1], "reload": result}


__all__ = ["LearnApi", "Reply", "check_id"]
