"""``edged demo`` / ``make run``: the daemon on its embedded defaults — the bundled model, the
bundled sample photos looped at 2 fps, and an embedded MQTT broker (amqtt) when no broker is
given — with a subscriber showing the events live."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console

from edged import wire
from edged.config import apply_env, load_config, parse_config
from edged.signals import install_signal_handlers
from edged.wire import Suffix

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """An amqtt broker on 127.0.0.1 in a thread of its own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="edged-broker", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            from amqtt.broker import Broker

            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }

            async def start() -> None:
                self._broker = Broker(config)
                await self._broker.start()

            self._loop.run_until_complete(start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread.start()
        self._ready.wait(15)
        if self._error is not None:
            raise RuntimeError(f"embedded MQTT broker failed to start: {self._error}")

    def stop(self) -> None:
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(timeout=5)
            except Exception as exc:
                log.debug("broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _live_view(host: str, port: int, prefix: str, console: Console) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edged-demo-viewer")

    def on_connect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        for suffix in Suffix:
            c.subscribe(wire.subscription(prefix, suffix), qos=1)

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = wire.parse_topic(prefix, msg.topic)
        kind = parsed[1] if parsed else None
        try:
            if kind == Suffix.EVENTS:
                e = wire.Event.model_validate_json(msg.payload)
                flag = " [yellow](ambiguous)[/]" if e.ambiguous else ""
                score = f"{e.score:.2f}" if e.score is not None else "-"
                console.print(
                    f"[dim]{msg.topic}[/] #{e.seq} {e.source}: "
                    f"[bold]{str(e.label).split(',')[0]}[/] {score}{flag} "
                    f"[dim]{e.backend} {e.inference_ms:.1f} ms[/]"
                )
            elif kind == Suffix.HEALTH:
                h = wire.Health.model_validate_json(msg.payload)
                console.print(
                    f"[dim]{msg.topic}[/] fps={h.fps} processed={h.frames_processed} "
                    f"p50={h.inference_ms.p50} ms cpu={h.cpu_percent}%"
                )
            else:
                console.print(f"[dim]{msg.topic}[/] {msg.payload.decode(errors='replace')}")
        except (ValueError, KeyError, TypeError) as exc:
            console.print(f"[red]unreadable message on {msg.topic}: {exc}[/]")

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    return client


def run_demo(frames: int | None, broker_url: str = "", config: Path | None = None) -> int:
    from edged.app import Daemon

    console = Console()
    broker: EmbeddedBroker | None = None
    if not broker_url:
        broker = EmbeddedBroker(free_port())
        broker.start()
        broker_url = f"mqtt://127.0.0.1:{broker.port}"
        console.print(f"[green]embedded MQTT broker on {broker_url}[/]")
    if config is not None:
        cfg = load_config(config)
    else:
        cfg = parse_config(
            apply_env(
                {
                    "device": {"id": "demo"},
                    "capture": {"type": "replay", "loop": True, "fps": 2.0},
                    "health": {"interval_s": 5.0},
                    "mqtt": {"url": broker_url},
                },
                os.environ,
            ),
            "<demo defaults>",
        )
    address = wire.broker_address(broker_url)
    viewer = _live_view(address.host, address.port, cfg.mqtt.topic_prefix, console)
    stop = threading.Event()
    install_signal_handlers(stop)
    console.print("[green]classifying the bundled samples; Ctrl-C stops[/]")
    try:
        code = Daemon(cfg, max_frames=frames, stop=stop).run()
    finally:
        viewer.loop_stop()
        viewer.disconnect()
        if broker is not None:
            broker.stop()
    return code
