"""One way from an image file to a model input: ``run``, ``classify`` and ``eval`` give the
same scores for the same file, and a 24-megapixel JPEG is decoded in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.config import parse_config
from edged.engine import open_engine
from edged.preprocess import decode_size, load_image, prepare
from tests.support import CONFIDENT, CONFIDENT_LABEL, Mosquitto, Subscriber, run_edged

MAX_RSS_MB = 150


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo upscaled to 6000x4000 (24 megapixels), made here, never committed."""
    path = tmp_path_factory.mktemp("big") / "espresso" / "big.jpg"
    path.parent.mkdir()
    with Image.open(CONFIDENT) as im:
        im.convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def test_prepare_takes_a_path_or_its_bytes(big_jpeg: Path) -> None:
    cfg = parse_config({})
    engine = open_engine(cfg.model, cfg.classify)
    try:
        spec = engine.backend.input_spec
        from_path = engine.load(big_jpeg)
        from_bytes = prepare(big_jpeg.read_bytes(), spec, engine.cfg.crop, engine.cfg.crop_fraction)
    finally:
        engine.close()
    assert from_path.shape == (1, spec.height, spec.width, 3) and from_path.dtype == spec.dtype
    np.testing.assert_array_equal(from_path, from_bytes)
    # decoded by DCT scaling (1/8 here), never below what the center crop needs
    w, h = decode_size(spec, engine.cfg.crop, engine.cfg.crop_fraction)
    frame = load_image(big_jpeg, (w, h))
    assert frame.shape[:2] == (500, 750) and min(frame.shape[:2]) >= max(w, h)


def _scores(top_k: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(c["label_id"], c["score"]) for c in top_k]


def test_run_classify_and_eval_give_identical_scores(
    big_jpeg: Path, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    c = run_edged("classify", "--json", str(big_jpeg))
    assert c.returncode == 0, c.stderr
    classified = json.loads(c.stdout)[0]
    assert classified["label"] == CONFIDENT_LABEL

    e = run_edged("eval", "--json", "--per-image", str(big_jpeg.parent.parent))
    assert e.returncode == 0, e.stderr
    evaluated = json.loads(e.stdout)["per_image"][0]

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[device]\nid = "big"\n[capture]\npaths = ["{big_jpeg}"]\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
    )
    sub = Subscriber(mosquitto.port)
    try:
        r = run_edged("run", "-c", str(cfg))
        assert r.returncode == 0, r.stderr
        assert sub.wait(lambda: len(sub.events()) == 1)
        event = sub.events()[0]
    finally:
        sub.close()

    assert _scores(event["top_k"]) == _scores(classified["top_k"]) == _scores(evaluated["top_k"])
    assert event["score"] == classified["score"]


@pytest.mark.parametrize("command", ["classify", "run"])
def test_24_megapixel_jpeg_in_bounded_memory(big_jpeg: Path, tmp_path: Path, command: str) -> None:
    """Peak RSS of the whole process (runtime, model and all) stays under 150 MB."""
    args = ["classify", "--json", str(big_jpeg)]
    if command == "run":
        cfg = tmp_path / "run.toml"
        # no broker: the event is kept in the spool file, the run still classifies
        cfg.write_text(
            f'[capture]\npaths = ["{big_jpeg}"]\n[mqtt]\nurl = "mqtt://127.0.0.1:9"\n'
            f'spool_file = "{tmp_path / "spool.jsonl"}"\nreconnect_max_s = 1\n'
        )
        args = ["run", "-c", str(cfg), "--frames", "1"]
    # VmHWM: the peak of this process image alone (ru_maxrss would carry the forking
    # test process's own peak across exec)
    code = (
        "import sys\n"
        "from edged.cli import main\n"
        f"rc = main({args!r})\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
        "print('peak_rss_kb', hwm[0].split()[1], file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 0, p.stderr
    peak_mb = int(p.stderr.rsplit("peak_rss_kb", 1)[1].split()[0]) / 1024
    assert peak_mb <= MAX_RSS_MB, f"{command}: peak RSS {peak_mb:.0f} MB"
