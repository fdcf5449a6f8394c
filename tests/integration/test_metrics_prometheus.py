"""/metrics scraped by a real Prometheus (Debian package ``prometheus``), and the status
page's own /metrics and /healthz."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import (
    free_port,
    replay_config,
    start_edged,
    stop_process,
    wait_port,
)

PROMETHEUS = shutil.which("prometheus")


def metrics_config(tmp_path: Path, metrics_port: int) -> Path:
    # no broker needed: the daemon keeps classifying while MQTT is unreachable
    return replay_config(
        tmp_path,
        f"mqtt://127.0.0.1:{free_port()}",
        sections=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n',
    )


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


def query(port: int, expr: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = get(url)
    data = json.loads(body)
    assert status == 200 and data["status"] == "success", data
    return data["data"]["result"]  # type: ignore[no-any-return]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt install prometheus)")
def test_prometheus_scrapes_frames_processed(tmp_path: Path) -> None:
    metrics_port, prom_port = free_port(), free_port()
    proc = start_edged(
        "run", "--config", str(metrics_config(tmp_path, metrics_port)), log=tmp_path / "edged.log"
    )
    scrape = tmp_path / "prometheus.yml"
    scrape.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: edged\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n        labels: {{device: cam-1}}\n"
    )
    prom = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={scrape}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=(tmp_path / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(metrics_port, 60)
        status, body = get(f"http://127.0.0.1:{metrics_port}/metrics")
        text = body.decode()
        assert status == 200
        for name in (
            "edged_build_info{",
            "edged_frames_processed_total ",
            "edged_events_published_total ",
            "edged_inference_seconds_bucket{",
            "edged_fps ",
            'edged_backend_info{backend="cpu",model="efficientnet_lite0_int8.tflite"} 1.0',
            "edged_tpu_fallbacks_total ",
            "edged_disk_write_bytes_total ",
            "edged_mqtt_connected 0.0",
            "edged_paused 0.0",
            "process_cpu_seconds_total ",
        ):
            assert name in text, name
        # labels stay bounded: no metric carries a class label
        assert "label=" not in text
        wait_port(prom_port, 60)
        first: float | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = query(prom_port, 'edged_frames_processed_total{job="edged"}')
            if result:
                value = float(result[0]["value"][1])
                assert result[0]["metric"]["device"] == "cam-1"
                if first is None:
                    first = value
                elif value > first:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(
                f"edged_frames_processed_total did not increase in Prometheus (first {first})\n"
                + (tmp_path / "prometheus.log").read_text()[-2000:]
            )
        up = query(prom_port, 'up{job="edged"}')
        assert up and up[0]["value"][1] == "1"
        rate = query(prom_port, "rate(edged_inference_seconds_count[5s])")
        assert rate is not None
    finally:
        prom.terminate()
        prom.wait(10)
        assert stop_process(proc) == 0, (tmp_path / "edged.log").read_text()
