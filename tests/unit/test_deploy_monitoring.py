"""deploy/grafana: the dashboard queries only metrics edged serves (the scrape config generated
from an inventory is checked in tests/integration/test_scrape_config.py)."""

from __future__ import annotations

import json
import re

from edged.health.metrics import Metrics
from tests.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "edged-dashboard.json"


def served_metric_names() -> set[str]:
    snap = {
        k: 1
        for k in (
            "frames_captured",
            "frames_processed",
            "frames_dropped",
            "frames_lost",
            "frames_skipped",
            "events_published",
            "mqtt_reconnects",
            "mqtt_dropped",
            "fallbacks",
            "worker_restarts",
            "fps",
            "cpu_temp_c",
            "tpu_temp_c",
            "uptime_s",
        )
    }
    metrics = Metrics(lambda: snap, "test")
    metrics.count_command("set", True)
    text = metrics.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_dashboard_queries_only_served_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    served = served_metric_names()
    used = {m for e in exprs for m in re.findall(r"\b((?:edged|process)_[a-z_]+)", e)}
    assert used and used <= served, used - served
    assert {"edged_frames_processed_total", "edged_inference_seconds_bucket"} <= used
