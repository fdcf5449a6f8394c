"""Helpers for the Learn tests: photos made from the bundled samples, a daemon with
[collect] and [learn] on, and a small JSON client with basic auth."""

from __future__ import annotations

import base64
import json
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import SAMPLES, free_port, replay_config

PASSWORD = "s3cret-learn"
AUTH = ("edged", PASSWORD)
# a class the bundled model names itself (espresso), and one it does not (kitty)
CLASSES = {"coffee.jpg": "espresso", "chelsea_cat.jpg": "kitty"}
PER_CLASS = 14


def variants(dest: Path, per_class: int = PER_CLASS, seed: int = 3) -> dict[str, str]:
    """``per_class`` different views (crops, mirror, brightness) of each sample in CLASSES,
    as JPEG files in ``dest``; returns file name -> class."""
    from PIL import Image, ImageEnhance

    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    for sample, label in CLASSES.items():
        with Image.open(SAMPLES / sample) as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        for i in range(per_class):
            share = rng.uniform(0.55, 0.95)
            cw, ch = int(w * share), int(h * share)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            view = rgb.crop((x, y, x + cw, y + ch))
            if i % 2:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.7, 1.3))
            name = f"{label}-{i:02d}.jpg"
            view.save(dest / name, quality=90)
            truth[name] = label
    return truth


def learn_config(
    tmp_path: Path, broker_url: str, photos: list[Path], fps: float = 4, extra: str = ""
) -> tuple[Path, int]:
    port = free_port()
    pw = tmp_path / "web.pw"
    pw.write_text(PASSWORD + "\n")
    sections = (
        f'[web]\nlisten = "127.0.0.1:{port}"\npassword_file = "{pw}"\n'
        f'[collect]\ndir = "{tmp_path / "collect"}"\nambiguous = true\nbelow_score = 0.999\n'
        f'[learn]\nenabled = true\ndataset = "{tmp_path / "dataset"}"\n'
        f'models_dir = "{tmp_path / "models"}"\n{extra}'
    )
    cfg = replay_config(
        tmp_path, broker_url, fps=fps, paths=tuple(str(p) for p in photos), sections=sections
    )
    return cfg, port


class Client:
    def __init__(self, port: int, auth: tuple[str, str] | None = AUTH) -> None:
        self.base = f"http://127.0.0.1:{port}/"
        self.auth = auth

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, payload, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        if ctype and ctype.startswith("application/json") and payload:
            return status, json.loads(payload)
        return status, payload

    def get(self, path: str) -> Any:
        status, data = self.call("GET", path)
        assert status == 200, (path, status, data)
        return data

    def post(self, path: str, body: Any = None) -> Any:
        status, data = self.call("POST", path, body)
        assert status in (200, 202), (path, status, data)
        return data
