"""deploy/prometheus/scrape-config: the scrape config it generates from an inventory is one
Prometheus accepts (the script and promtool run as processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

SCRAPE = ROOT / "deploy" / "prometheus" / "scrape-config"
INVENTORY = {  # what `ansible-inventory --list` prints for an inventory like the example
    "_meta": {
        "hostvars": {
            "cam-lab-01": {"ansible_host": "192.0.2.11", "edged_metrics_listen": "0.0.0.0:9108"},
            "cam-lab-02": {
                "ansible_host": "192.0.2.12",
                "edged_metrics_listen": "0.0.0.0:9200",
                "edged_device_id": "lab-two",
            },
            "cam-gate-01": {"ansible_host": "2001:db8::21", "edged_metrics_listen": "[::]:9108"},
            "cam-off": {"ansible_host": "192.0.2.30"},
        }
    },
    "all": {"children": ["ungrouped", "edged_devices"]},
    "edged_devices": {"children": ["lab", "gate"], "hosts": ["cam-off"]},
    "lab": {"hosts": ["cam-lab-01", "cam-lab-02"]},
    "gate": {"hosts": ["cam-gate-01"]},
}


def test_scrape_config_from_inventory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRAPE), "--from-json", "-"],
        input=json.dumps(INVENTORY),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '["192.0.2.11:9108"]' in out and '{device: "cam-lab-01", site: "lab"}' in out
    assert '["192.0.2.12:9200"]' in out and 'device: "lab-two"' in out
    assert '["[2001:db8::21]:9108"]' in out and 'site: "gate"' in out
    assert "# cam-off: edged_metrics_listen not set" in out
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) not installed: syntax not checked")
    path = tmp_path / "edged.yml"
    path.write_text(out)
    check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
