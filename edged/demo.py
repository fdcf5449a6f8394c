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
from edged.config import (
    Config,
    MqttConfig,
    apply_env,
    env_overrides,
    load_config,
    parse_config,
    read_secret,
)
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
            logging.getLogger(name).setLevel(logging.ERROR)
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


def _live_view(mqtt_cfg: MqttConfig, console: Console, offline: threading.Event) -> mqtt.Client:
    """Print every message of the daemon on ``mqtt_cfg``'s broker (its TLS and user too);
    set ``offline`` on the daemon's last status, which comes after all of its events."""
    prefix = mqtt_cfg.topic_prefix
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edged-demo-viewer-{os.getpid()}")
    address = wire.broker_address(mqtt_cfg.url)
    if address.tls:
        client.tls_set(ca_certs=mqtt_cfg.ca_file or None)
    if mqtt_cfg.username:
        password = read_secret(mqtt_cfg.password_file, "mqtt_password")
        client.username_pw_set(mqtt_cfg.username, password)

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
                text = msg.payload.decode(errors="replace")
                console.print(f"[dim]{msg.topic}[/] {text}")
                if kind == Suffix.STATUS and text == wire.OFFLINE:
                    offline.set()
        except (ValueError, KeyError, TypeError) as exc:
            console.print(f"[red]unreadable message on {msg.topic}: {exc}[/]")

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(address.host, address.port)
    client.loop_start()
    return client


def demo_config(broker_url: str, config: Path | None) -> Config:
    """The config file's settings (with ``broker_url`` in place of its broker when given),
    else the demo's defaults: bundled samples looped at 2 fps to ``broker_url``."""
    if config is not None:
        cfg = load_config(config)
        if broker_url:
            mqtt_cfg = cfg.mqtt.model_copy(update={"url": broker_url})
            cfg = cfg.model_copy(update={"mqtt": mqtt_cfg})
        return cfg
    return parse_config(
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
        env_overrides(os.environ),
    )


def run_demo(frames: int | None, broker_url: str = "", config: Path | None = None) -> int:
    """Run the daemon and show what it publishes.  With ``config``, its broker (or
    ``broker_url``) is used and watched; without, an embedded broker unless ``broker_url``."""
    from edged.app import Daemon

    # one event per line, also when piped (no wrapping at 80 columns)
    console = Console(soft_wrap=True)
    broker: EmbeddedBroker | None = None
    if config is None and not broker_url:
        broker = EmbeddedBroker(free_port())
        broker.start()
        broker_url = f"mqtt://127.0.0.1:{broker.port}"
        console.print(f"[green]embedded MQTT broker on {broker_url}[/]")
    try:
        cfg = demo_config(broker_url, config)
        offline = threading.Event()
        viewer = _live_view(cfg.mqtt, console, offline)
    except BaseException:
        if broker is not None:
            broker.stop()
        raise
    stop = threading.Event()
    install_signal_handlers(stop)
    source = "the bundled samples" if config is None else str(config)
    console.print(f"[green]classifying {source}, watching {cfg.mqtt.url}; Ctrl-C stops[/]")
    try:
        code = Daemon(cfg, max_frames=frames, stop=stop).run()
        if code == 0:
            offline.wait(5.0)  # show the events still on their way
    finally:
        viewer.loop_stop()
        viewer.disconnect()
        if broker is not None:
            broker.stop()
    return code
