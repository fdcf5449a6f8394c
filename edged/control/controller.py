"""Runs commands from ``{prefix}/{device}/cmd`` one at a time, in a thread of their own, and
replies to each: on the MQTT 5 response topic with the request's correlation data when it
names one, else on ``{prefix}/{device}/cmd/result`` with the request's ``id``.

Nothing a command sends can stop the daemon: every failure becomes an error reply.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel

from edged import wire
from edged.config import Config, ModelConfig
from edged.control.request import CommandError, Request, parse_request
from edged.publish.base import Message, Publisher

log = logging.getLogger(__name__)

QUEUE_SIZE = 16
SENDER_PROPERTIES = ("client_id", "sender", "clientid")


class Target(Protocol):
    """What commands act on: the daemon."""

    def effective_config(self) -> Config: ...

    def apply_settings(self, sections: dict[str, BaseModel], camera: str | None = None) -> None: ...

    def snapshot(self, camera: str | None = None) -> tuple[bytes, wire.State | None] | None: ...

    def reload_model(self, model: ModelConfig) -> dict[str, Any]: ...

    def set_paused(self, paused: bool) -> bool: ...


class Controller:
    def __init__(
        self,
        target: Target,
        publisher: Publisher,
        *,
        device: str,
        base: str,
        count: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.target = target
        self.publisher = publisher
        self.device = device
        self.base = base  # {prefix}/{device}
        self._count = count
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=QUEUE_SIZE)

    @property
    def topic(self) -> str:
        return f"{self.base}/{wire.Suffix.CMD}"

    def attach(self) -> None:
        """Subscribe to the command topic (before the publisher starts)."""
        self.publisher.subscribe(self.topic, self.receive)

    def receive(self, message: Message) -> None:
        """In the MQTT client's thread: queue the command, never block."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.reply(message, self._result(None, None, error="busy: too many commands waiting"))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.reply(message, self.handle(message))

    # -- one command ---------------------------------------------------------------------
    def handle(self, message: Message) -> wire.CommandResult:
        sender = _sender(message)
        if message.retain:  # it would run again at every reconnection
            log.warning("retained command ignored (from %s): publish commands unretained", sender)
            self._counted("invalid", False)
            return self._result(
                None, None, error="retained command ignored: publish commands without retain"
            )
        try:
            request = parse_request(message.payload, self.target.effective_config())
        except CommandError as exc:
            log.warning(
                "command refused (from %s, %d bytes): %s", sender, len(message.payload), exc
            )
            self._counted(exc.cmd or "invalid", False)
            return self._result(exc.id, exc.cmd, error=str(exc))
        log.info("command %s (id %s) from %s", request.cmd, request.id, sender)
        try:
            data = self._run(request)
        except CommandError as exc:
            log.warning("command %s (id %s) failed: %s", request.cmd, request.id, exc)
            self._counted(request.cmd, False)
            return self._result(request.id, request.cmd, error=str(exc))
        except Exception as exc:  # a command must never take the daemon down
            log.exception("command %s (id %s) failed", request.cmd, request.id)
            self._counted(request.cmd, False)
            return self._result(request.id, request.cmd, error=f"internal error: {exc}")
        self._counted(request.cmd, True)
        return self._result(request.id, request.cmd, result=data)

    def _run(self, request: Request) -> dict[str, Any]:
        if request.cmd == "set":
            if request.camera is None:
                self.target.apply_settings(request.sections)
            else:
                self.target.apply_settings(request.sections, request.camera)
            where = f" (camera {request.camera})" if request.camera else ""
            log.info("settings changed at run time%s: %s", where, request.changed)
            return {
                **({"camera": request.camera} if request.camera else {}),
                **{
                    name: section.model_dump(mode="json")
                    for name, section in request.sections.items()
                },
            }
        if request.cmd in ("pause", "resume"):
            was = self.target.set_paused(request.cmd == "pause")
            return {"paused": request.cmd == "pause", "was_paused": was}
        if request.cmd == "snapshot":
            return self._snapshot(request.camera)
        if request.cmd == "reload":
            model = request.sections["model"]
            assert isinstance(model, ModelConfig)
            return self.target.reload_model(model)
        raise CommandError(f"unknown command {request.cmd!r}")  # parse_request prevents it

    def _snapshot(self, camera: str | None = None) -> dict[str, Any]:
        shot = self.target.snapshot() if camera is None else self.target.snapshot(camera)
        if shot is None:
            raise CommandError("no frame captured yet")
        jpeg, state = shot
        props: tuple[tuple[str, str], ...] = ()
        if state is not None:
            s = wire.STATE_FIELDS
            props = (
                (s.label, str(state.label)),
                (s.score, str(state.score)),
                (s.ambiguous, str(state.ambiguous).lower()),
                (s.frame, str(state.frame)),
                (s.ts, state.ts),
                ("state", state.to_json().decode()),
            )
        topic = f"{self.base}/{wire.camera_suffix(camera, wire.Suffix.SNAPSHOT)}"
        self.publisher.send(topic, jpeg, qos=1, user_properties=props)
        return {
            "topic": topic,
            "bytes": len(jpeg),
            "state": None if state is None else state.model_dump(mode="json", by_alias=True),
        }

    # -- replies -------------------------------------------------------------------------
    def _result(
        self,
        rid: str | None,
        cmd: str | None,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> wire.CommandResult:
        return wire.CommandResult(
            device=self.device,
            id=rid,
            cmd=cmd,
            ok=error is None,
            error=error,
            ts=wire.utc_now(),
            result=result or {},
        )

    def reply(self, message: Message, result: wire.CommandResult) -> None:
        topic = message.response_topic or f"{self.base}/{wire.Suffix.CMD_RESULT}"
        try:
            self.publisher.send(
                topic, result.to_json(), qos=1, correlation_data=message.correlation_data
            )
        except ValueError as exc:  # e.g. a response topic with wildcards
            log.warning("cannot reply on %r: %s", topic, exc)

    def _counted(self, cmd: str, ok: bool) -> None:
        if self._count is not None:
            self._count(cmd, ok)


def _sender(message: Message) -> str:
    """The sender's client id when the broker (or a bridge) put it in a user property;
    plain MQTT does not carry it."""
    for key, value in message.user_properties:
        if key.lower() in SENDER_PROPERTIES:
            return f"client {value!r}"
    return "a client the broker does not name"
