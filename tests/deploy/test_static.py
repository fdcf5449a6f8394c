"""Checks of the unit file and the Ansible content that need no running devices."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import unavailable

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edged.service"
ANSIBLE_DIR = REPO / "ansible"
DEPLOY_VENV = REPO / ".venv-deploy"
# Documented in deploy/README.md: the example inventory's vault is encrypted with it.
EXAMPLE_VAULT_PASSWORD = "edged-example-vault"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} not installed (deploy/ci-setup.sh)")
    return path


def test_unit_installed_by_the_role_is_the_unit_file() -> None:
    role_copy = ANSIBLE_DIR / "roles" / "edged" / "files" / "edged.service"
    assert role_copy.read_bytes() == UNIT.read_bytes()


def test_unit_verifies_silently(tmp_path: Path) -> None:
    """systemd-analyze verify exits 0 on warnings, so it must print nothing at all.

    ExecStart= points at the release layout of a device; here it is redirected to a stub so
    that the check runs on any host (inside a simulated device the real path is verified by
    test_fleet_sim).
    """
    analyze = need("systemd-analyze")
    stub = tmp_path / "edged"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert "/opt/edged/current/venv/bin/edged" in text
    unit = tmp_path / "edged.service"
    unit.write_text(text.replace("/opt/edged/current/venv/bin/edged", str(stub)))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout + proc.stderr == ""


def test_unit_security_exposure_is_at_most_2() -> None:
    analyze = need("systemd-analyze")
    proc = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr
    assert float(m.group(1)) <= 2.0, proc.stdout


def test_unit_essentials() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "User=edged",
        "StateDirectory=edged",
        "ConfigurationDirectory=edged",
        "LoadCredential=mqtt_password:",
        "DevicePolicy=closed",
    ):
        assert re.search(rf"^{re.escape(line)}", text, re.MULTILINE), line
    assert re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)
    assert re.search(r"^SupplementaryGroups=.*\bvideo\b", text, re.MULTILINE)
    assert re.search(r"^StartLimitBurst=\d+", text, re.MULTILINE)


@pytest.fixture
def vault_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-password"
    path.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    path.chmod(0o600)
    return path


def deploy_tool(name: str) -> Path:
    exe = DEPLOY_VENV / "bin" / name
    if not exe.exists():
        unavailable(f"{exe} missing (deploy/ci-setup.sh)")
    return exe


def test_ansible_lint_production_profile_is_clean(vault_password_file: Path) -> None:
    lint = deploy_tool("ansible-lint")
    env = {
        **os.environ,
        "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_password_file),
        "NO_COLOR": "1",
        "PATH": f"{DEPLOY_VENV / 'bin'}:{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [lint, "--offline", "--profile", "production", "--nocolor"],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "0 failure(s), 0 warning(s)" in out, out[-6000:]


def test_example_vault_opens_with_the_documented_password(vault_password_file: Path) -> None:
    vault = deploy_tool("ansible-vault")
    proc = subprocess.run(
        [
            vault,
            "view",
            "--vault-password-file",
            str(vault_password_file),
            "inventories/example/group_vars/edged_devices/vault.yml",
        ],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "vault_edged_mqtt_passwords:" in proc.stdout


def test_playbooks_pass_syntax_check(vault_password_file: Path) -> None:
    playbook = deploy_tool("ansible-playbook")
    for name in ("site.yml", "rollout.yml"):
        proc = subprocess.run(
            [
                playbook,
                "--syntax-check",
                "-i",
                "inventories/example",
                "--vault-password-file",
                str(vault_password_file),
                name,
            ],
            cwd=ANSIBLE_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg")},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["replay", "pi-camera", "coral-usb"])
def test_example_device_configs_are_valid(name: str) -> None:
    import sys
    import tomllib

    sys.path.insert(0, str(REPO))
    from edged.config import parse_config

    path = REPO / "deploy" / "config" / f"{name}.toml"
    parse_config(tomllib.loads(path.read_text()), str(path))


def _local_play(
    tmp_path: Path, tasks: str, extra_vars: dict[str, object], *, facts: bool = False
) -> str:
    """Run ``tasks`` of the role against localhost with the role's defaults."""
    import json

    playbook = tmp_path / "play.yml"
    playbook.write_text(
        f"- hosts: localhost\n  connection: local\n  gather_facts: {str(facts).lower()}\n"
        f"  vars_files: [{ANSIBLE_DIR / 'roles/edged/defaults/main.yml'}]\n"
        f"  tasks:\n{tasks}\n"
        "  handlers:\n    - name: Restart edged\n      ansible.builtin.debug: {msg: restart}\n"
    )
    proc = subprocess.run(
        [
            deploy_tool("ansible-playbook"),
            "-i",
            "localhost,",
            playbook,
            "-e",
            json.dumps(extra_vars),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    return f"rc={proc.returncode}\n{proc.stdout}{proc.stderr}"


def test_role_installs_the_accurate_model_checked_against_the_manifest(tmp_path: Path) -> None:
    """``edged_model: lite2`` copies the int8 Lite2 model, checks it against the manifest and
    renders a configuration that selects it by profile."""
    import getpass
    import sys
    import tomllib

    models_dir = tmp_path / "models"
    role = ANSIBLE_DIR / "roles" / "edged"
    tasks = (
        f"    - ansible.builtin.import_tasks: {role / 'tasks/models.yml'}\n"
        "    - ansible.builtin.template:\n"
        f"        src: {role / 'templates/config.toml.j2'}\n"
        f"        dest: {tmp_path / 'config.toml'}\n"
        "        mode: '0644'\n"
    )
    common = {
        "edged_models_dir": str(models_dir),
        "edged_user": getpass.getuser(),
        "edged_release": "test",
        "edged_device_id": "cam-1",
        "edged_model_source_dir": str(REPO / "models"),
        "ansible_python_interpreter": str(deploy_tool("python")),
    }
    out = _local_play(tmp_path, tasks, {**common, "edged_model": "lite2"})
    assert out.startswith("rc=0"), out[-4000:]
    assert (models_dir / "efficientnet_lite2_int8.tflite").is_file()
    config = tomllib.loads((tmp_path / "config.toml").read_text())
    assert config["model"]["profile"] == "accurate"
    assert config["model"]["models_dir"] == str(models_dir)
    sys.path.insert(0, str(REPO))
    from edged.config import parse_config
    from edged.engine import resolve_model_config

    resolved = resolve_model_config(parse_config(config).model)
    assert Path(resolved.path).name == "efficientnet_lite2_int8.tflite"

    # a source whose model does not match the manifest is refused
    bad = tmp_path / "bad-source"
    shutil.copytree(REPO / "models", bad, ignore=shutil.ignore_patterns("*.py", "*fp32*"))
    with (bad / "efficientnet_lite2_int8.tflite").open("ab") as fh:
        fh.write(b"\0")
    out = _local_play(
        tmp_path, tasks, {**common, "edged_model": "lite2", "edged_model_source_dir": str(bad)}
    )
    assert not out.startswith("rc=0") and "the manifest lists" in out, out[-4000:]


REGIONS = [
    {"name": "feeder", "x": 0.5, "y": 0.25, "width": 0.5, "height": 0.5},
    {"name": "gate", "width": 0.25},
]


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        (
            {
                "edged_capture_type": "v4l2",
                "edged_capture_device": "usb-046d_HD_Pro_Webcam_C920-video-index0",
                "edged_capture_input_format": "yuyv",
                "edged_capture_width": 640,
                "edged_capture_height": 480,
                "edged_capture_fps": 10,
                "edged_capture_stall_s": 20,
            },
            {
                "type": "v4l2",
                "device": "usb-046d_HD_Pro_Webcam_C920-video-index0",
                "input_format": "yuyv",
                "width": 640,
                "height": 480,
                "fps": 10.0,
                "stall_s": 20.0,
            },
        ),
        (
            {
                "edged_capture_type": "stream",
                "edged_capture_url": "rtsp://192.0.2.7:554/stream1",
                "edged_capture_username": "viewer",
                "edged_capture_password": "Sup3r-s3cret",
                "edged_capture_reconnect_max_s": 5,
                "edged_capture_stall_s": 60,
                "edged_capture_regions": REGIONS,
            },
            {
                "type": "stream",
                "url": "rtsp://192.0.2.7:554/stream1",
                "username": "viewer",
                "reconnect_max_s": 5.0,
                "stall_s": 60.0,
                "regions": REGIONS,
            },
        ),
    ],
    ids=["v4l2", "stream"],
)
def test_role_renders_webcam_and_ip_camera_configs(
    tmp_path: Path, camera: dict[str, object], expected: dict[str, object]
) -> None:
    """The role's variables for a USB webcam and an IP camera (with regions) render a
    configuration the daemon accepts; the camera password stays out of it (a credential)."""
    import sys
    import tomllib

    role = ANSIBLE_DIR / "roles" / "edged"
    tasks = (
        "    - ansible.builtin.template:\n"
        f"        src: {role / 'templates/config.toml.j2'}\n"
        f"        dest: {tmp_path / 'config.toml'}\n"
        "        mode: '0644'\n"
    )
    common = {
        "edged_release": "test",
        "edged_device_id": "cam-1",
        "ansible_python_interpreter": str(deploy_tool("python")),
    }
    out = _local_play(tmp_path, tasks, {**common, **camera})
    assert out.startswith("rc=0"), out[-4000:]
    text = (tmp_path / "config.toml").read_text()
    assert "s3cret" not in text
    config = tomllib.loads(text)
    assert config["capture"] == expected
    sys.path.insert(0, str(REPO))
    from edged.config import parse_config

    parsed = parse_config(config).capture
    assert parsed.type == expected["type"]
    regions = REGIONS if expected["type"] == "stream" else []
    assert [r.name for r in parsed.regions] == [r["name"] for r in regions]


def _host_target() -> dict[str, str]:
    """This host as build-wheelhouse.sh would describe a device like it."""
    import platform

    release = re.search(
        r"^VERSION_CODENAME=(\S+)", Path("/etc/os-release").read_text(), re.MULTILINE
    )
    python = subprocess.run(
        [deploy_tool("python"), "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    return {
        "arch": platform.machine(),
        "release": release.group(1) if release else "",
        "python": python,
        "glibc": glibc.split()[-1],
    }


def test_role_checks_the_device_against_the_wheelhouse_first(tmp_path: Path) -> None:
    """Before it installs anything, the role compares the device's facts with the
    wheelhouse.json that build-wheelhouse.sh wrote; a mismatch, or a wheelhouse that does not
    say what it is for, stops the play naming what differs and the command that builds the
    right one."""
    import json

    host = _host_target()
    role = ANSIBLE_DIR / "roles" / "edged"
    tasks = f"    - ansible.builtin.import_tasks: {role / 'tasks/wheelhouse.yml'}\n"
    python: dict[str, object] = {"ansible_python_interpreter": str(deploy_tool("python"))}
    fix = f"deploy/build-wheelhouse.sh {host['arch']} {host['release']}"

    def play(wheelhouse: Path | None, target: dict[str, str] | None) -> str:
        if wheelhouse is not None and target is not None:
            wheelhouse.mkdir(parents=True, exist_ok=True)
            (wheelhouse / "wheelhouse.json").write_text(json.dumps(target))
        extra = python if wheelhouse is None else {**python, "edged_wheelhouse": str(wheelhouse)}
        return _local_play(tmp_path, tasks, extra, facts=True)

    # the same device, or one whose glibc is newer than the wheels need
    out = play(tmp_path / "same", {**host, "glibc": "2.17"})
    assert out.startswith("rc=0"), out[-4000:]

    other = "trixie" if host["release"] != "trixie" else "bookworm"
    arch = "aarch64" if host["arch"] != "aarch64" else "x86_64"
    out = play(
        tmp_path / "other", {"arch": arch, "release": other, "python": "3.99", "glibc": "2.99"}
    )
    assert not out.startswith("rc=0"), out[-4000:]
    flat = " ".join(out.split())
    assert f"was built for {other} on {arch} (Python 3.99, glibc 2.99" in flat, flat
    assert f"runs {host['release']} on {host['arch']} (Python {host['python']}" in flat, flat
    assert "arch, release, python, glibc differ" in flat and fix in flat, flat

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "edged-1.0.0-py3-none-any.whl").touch()
    out = play(bare, None)
    flat = " ".join(out.split())
    assert not out.startswith("rc=0") and "wheelhouse.json is missing" in flat and fix in flat, flat

    # by default the wheelhouse follows the device's release and architecture
    out = play(None, None)
    flat = " ".join(out.split())
    assert f".deploy-cache/wheelhouse/{host['release']}/{host['arch']}/wheelhouse.json" in flat
    assert "is missing" in flat, flat


def test_role_renders_several_cameras_each_password_its_own_credential(tmp_path: Path) -> None:
    """edged_cameras renders [[cameras]] (with each camera's regions and sections) that the
    daemon accepts; each password stays out of the config and becomes its own credential,
    loaded by a drop-in."""
    import sys
    import tomllib

    role = ANSIBLE_DIR / "roles" / "edged"
    tasks = (
        "    - ansible.builtin.template:\n"
        f"        src: {role / 'templates/config.toml.j2'}\n"
        f"        dest: {tmp_path / 'config.toml'}\n"
        "        mode: '0644'\n"
        "    - ansible.builtin.template:\n"
        f"        src: {role / 'templates/cameras.conf.j2'}\n"
        f"        dest: {tmp_path / 'cameras.conf'}\n"
        "        mode: '0644'\n"
    )
    cameras = [
        {"name": "garden", "type": "picamera2", "camera_num": 0, "fps": 15},
        {
            "name": "drive",
            "type": "stream",
            "url": "rtsp://192.0.2.7:554/stream1",
            "username": "viewer",
            "password": "Sup3r-s3cret",
            "regions": REGIONS,
            "publish": {"policy": "on_change", "confirm_frames": 3},
        },
        {
            "name": "door",
            "type": "stream",
            "url": "rtsp://192.0.2.8/h264",
            "username": "viewer",
            "password": "an0ther-s3cret",
            "classify": {"allow": ["person"]},
        },
    ]
    out = _local_play(
        tmp_path,
        tasks,
        {
            "edged_release": "test",
            "edged_device_id": "house",
            "edged_cameras": cameras,
            "ansible_python_interpreter": str(deploy_tool("python")),
        },
    )
    assert out.startswith("rc=0"), out[-4000:]
    text = (tmp_path / "config.toml").read_text()
    assert "s3cret" not in text
    config = tomllib.loads(text)
    assert "capture" not in config
    sys.path.insert(0, str(REPO))
    from edged.config import parse_config

    garden, drive, door = parse_config(config).camera_list()
    assert (garden.name, garden.capture.type, garden.capture.fps) == ("garden", "picamera2", 15)
    assert [r.name for r in drive.capture.regions] == [r["name"] for r in REGIONS]
    assert (drive.publish.policy, drive.publish.confirm_frames) == ("on_change", 3)
    assert door.classify.allow == ["person"] and door.publish.policy == "every_frame"
    assert drive.capture.credential == "camera_password_drive"
    dropin = (tmp_path / "cameras.conf").read_text()
    assert "LoadCredential=camera_password_drive:edged.camera_password_drive" in dropin
    assert "LoadCredential=camera_password_door:edged.camera_password_door" in dropin
    assert "garden" not in dropin and "s3cret" not in dropin
