"""The role's learned_model.yml on the controller: a model exported by `edged models export`
joins the models to install and becomes the one the daemon loads; an export whose files
disagree stops the play."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import unavailable

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "ansible" / "roles" / "edged" / "tasks" / "learned_model.yml"
PLAYBOOK = REPO / ".venv-deploy" / "bin" / "ansible-playbook"
BUNDLED = REPO / "models" / "efficientnet_lite0_int8.tflite"


def export_files(folder: Path, name: str) -> Path:
    """The three files `edged models export` writes (edged.learn.export), for a model."""
    data = BUNDLED.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    model = folder / f"{name}.tflite"
    model.write_bytes(data)
    (folder / f"{name}.tflite.sha256").write_text(f"{sha}  {name}.tflite\n")
    (folder / f"{name}.json").write_text(json.dumps({"model": f"{name}.tflite", "sha256": sha}))
    return model


def play(tmp_path: Path, model: Path) -> subprocess.CompletedProcess[str]:
    if not PLAYBOOK.exists():
        unavailable(f"{PLAYBOOK} missing (deploy/ci-setup.sh)")
    pb = tmp_path / "pb.yml"
    manifest = model.with_suffix(".json")
    checks = [
        f"edged_model_name == {model.name!r}",
        f"edged_models == [{{'src': {str(model)!r}, 'manifest': {str(manifest)!r}}}]",
    ]
    playbook = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"edged_models": [], "edged_model_name": ""},
            "tasks": [
                {"ansible.builtin.include_tasks": str(TASKS)},
                {"ansible.builtin.assert": {"that": checks}},
            ],
        }
    ]
    pb.write_text(json.dumps(playbook))  # JSON is YAML
    return subprocess.run(
        [str(PLAYBOOK), str(pb), "-e", f"edged_learned_model={model}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        check=False,
    )


def test_an_exported_model_is_installed_and_selected(tmp_path: Path) -> None:
    done = play(tmp_path, export_files(tmp_path, "cam-1-20261207T042703Z-bc5cb0"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "failed=0" in done.stdout


def test_an_export_whose_files_disagree_stops_the_play(tmp_path: Path) -> None:
    model = export_files(tmp_path, "cam-1-x")
    (tmp_path / "cam-1-x.tflite.sha256").write_text("0" * 64 + "  cam-1-x.tflite\n")
    done = play(tmp_path, model)
    assert done.returncode != 0
    assert "edged models export" in done.stdout, done.stdout[-3000:]
