"""Remote operation beside the pipeline: Prometheus metrics, the status page, Home Assistant
discovery and the command topic.  Each is off unless configured (commands are on by default
and governed by the broker's ACL); none adds work per frame beyond what :class:`Live` keeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from edged import wire
from edged.config import Config, ConfigError, parse_listen, read_secret
from edged.control.controller import Controller, Target
from edged.control.live import LOOK_S, Live
from edged.infer.runtime import get_runtime
from edged.publish.base import Publisher
from edged.publish.homeassistant import HomeAssistant, discovery_for

if TYPE_CHECKING:  # the metrics and the page load only when configured (memory)
    from edged.health.metrics import Metrics
    from edged.web import StatusPage

log = logging.getLogger(__name__)


class Remote:
    def __init__(
        self,
        cfg: Config,
        live: Live,
        publisher: Publisher,
        target: Target,
        *,
        health: Callable[[], wire.Health],
        healthy: Callable[[], bool],
    ) -> None:
        self.cfg = cfg
        self.live = live
        self.publisher = publisher
        self.target = target
        self._health = health
        self._healthy = healthy
        # a viewer's frames keep their pixels until a few of its refreshes have gone by
        self._look_s = max(LOOK_S, 3 * cfg.web.refresh_s)
        self.metrics: Metrics | None = None
        if cfg.metrics.listen:
            from edged.health.metrics import Metrics

            self.metrics = Metrics(self._metrics_snapshot, get_runtime().name)
        base = wire.device_topic(cfg.mqtt.topic_prefix, cfg.device.id)
        self.controller = (
            Controller(
                target,
                publisher,
                device=cfg.device.id,
                base=base,
                count=self.metrics.count_command if self.metrics else None,
            )
            if cfg.commands.enabled
            else None
        )
        self.homeassistant = (
            HomeAssistant(
                cfg.homeassistant,
                publisher,
                discovery_for(cfg),
            )
            if cfg.homeassistant.discovery
            else None
        )
        self.web: StatusPage | None = None
        self._stack = ExitStack()
        self._thread: threading.Thread | None = None

    def attach(self) -> None:
        """Subscriptions and connect hooks: before the publisher starts."""
        if self.controller is not None:
            self.controller.attach()
        if self.homeassistant is not None:
            self.homeassistant.attach()

    def start(self, stop: threading.Event) -> None:
        """Servers and the command thread; ConfigError (exit 2) when a listen address cannot
        be used.  On failure, whatever started is stopped again."""
        with ExitStack() as stack:
            if self.metrics is not None:
                host, port = parse_listen(self.cfg.metrics.listen)
                try:
                    self.metrics.serve(host, port)
                except OSError as exc:
                    raise ConfigError(
                        "metrics", [("metrics.listen", str(exc.strerror or exc), host)]
                    ) from None
                stack.callback(self.metrics.close)
            if self.cfg.web.listen:
                from edged.web import WebStartError

                self.web = self._web()
                try:
                    self.web.start()
                except WebStartError as exc:
                    raise ConfigError(
                        "web", [("web.listen", str(exc), self.cfg.web.listen)]
                    ) from None
                stack.callback(self.web.close)
            if self.controller is not None:
                self._thread = threading.Thread(
                    target=self.controller.run, args=(stop,), name="edged-commands", daemon=True
                )
                self._thread.start()
            self._stack = stack.pop_all()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._stack.close()

    # -- what the page and the metrics read ----------------------------------------------
    def _web(self) -> StatusPage:
        from edged.health.metrics import CONTENT_TYPE
        from edged.web import StatusPage, WebSource, WebStartError

        try:
            password = read_secret(self.cfg.web.password_file, "web_password")
        except OSError as exc:
            raise ConfigError(
                "web", [("web.password_file", f"cannot read: {exc}", self.cfg.web.password_file)]
            ) from None
        source = WebSource(
            frame=self._frame,
            result=self._result,
            health=lambda: self._health().model_dump(mode="json", by_alias=True),
            config=lambda: self.live.settings.model_dump(mode="json"),
            healthy=self._healthy,
            paused=self.live.paused.is_set,
            metrics=self.metrics.render if self.metrics is not None else None,
            metrics_type=CONTENT_TYPE,
            cameras=tuple(c.name for c in self.cfg.cameras),
            camera_frame=self._frame,
            camera_result=self._result,
        )
        learn = None
        if self.cfg.learn.enabled:
            from edged.learn.api import LearnApi

            learn = LearnApi(self.cfg, self.target, lambda: self.live.settings.model)
        try:
            return StatusPage(self.cfg.web, source, self.cfg.device.id, password, learn)
        except WebStartError as exc:
            raise ConfigError("web", [("web.listen", str(exc), self.cfg.web.listen)]) from None

    def _frame(self, camera: str | None = None) -> Any:
        frame = self.live.camera(camera).current_frame(look_s=self._look_s)
        return None if frame is None or frame.image is None else (frame.number, frame.image)

    def _result(self, camera: str | None = None) -> dict[str, Any] | None:
        last = self.live.camera(camera).last
        if last is None:
            return None
        item = last.result
        outcome = item.outcome
        top = outcome.classification.top1
        e = wire.EVENT_FIELDS
        return {
            e.frame: item.number,
            e.source: item.source,
            e.ts: last.ts,
            e.label: top.label if top else None,
            e.score: round(top.score, 5) if top else None,
            e.top_k: [c.as_dict() for c in outcome.classification.top_k],
            e.ambiguous: outcome.classification.ambiguous,
            e.model: item.model,
            e.backend: outcome.backend,
            e.inference_ms: round(outcome.ms, 3),
        }

    def _metrics_snapshot(self) -> dict[str, Any]:
        snap = self._health().model_dump(mode="json", by_alias=True)
        snap["mqtt_connected"] = self.publisher.connected
        snap[wire.HEALTH_FIELDS.paused] = self.live.paused.is_set()
        return snap
