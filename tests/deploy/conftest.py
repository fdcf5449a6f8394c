"""Fixtures for the deployment tests: wheelhouses, a simulated fleet, Ansible and the broker.

Needs root, systemd-nspawn, debootstrap (or a cached root), mosquitto, ssh and the
controller venv .venv-deploy (deploy/ci-setup.sh installs all of it). The fleet is shared by
the tests of a module and always torn down, even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ANSIBLE_DIR = REPO / "ansible"
DEPLOY_VENV = REPO / ".venv-deploy"
FIXTURE_MODELS = Path(
    os.environ.get("EDGED_FIXTURE_MODELS", str(REPO.parent / "shared" / "fixtures" / "models"))
)
SAMPLES = REPO / "edged" / "samples"
# Replay footage on every simulated device (the watchdog test stalls it with a FIFO).
DEVICE_FOOTAGE = "/srv/edged-footage"

sys.path.insert(0, str(REPO))

from edged.fleet import BrokerOptions, DeviceState, FleetView, parse_ts, watch  # noqa: E402


def _missing_tools() -> list[str]:
    tools = ["systemd-nspawn", "mosquitto", "mosquitto_passwd", "ssh", "ssh-keygen"]
    missing = [t for t in tools if shutil.which(t) is None]
    if not (DEPLOY_VENV / "bin" / "ansible-playbook").exists():
        missing.append(".venv-deploy (deploy/ci-setup.sh)")
    return missing


def unavailable(problem: str) -> NoReturn:
    """Skip a test this host cannot run; fail instead when EDGED_REQUIRE_DEPLOY=1 (CI sets
    it, so a missing tool cannot pass as a skipped test)."""
    if os.environ.get("EDGED_REQUIRE_DEPLOY") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def require_deploy_host() -> None:
    if os.geteuid() != 0:
        unavailable("deploy tests need root (mounts, systemd-nspawn)")
    elif missing := _missing_tools():
        unavailable(f"deploy tests need: {', '.join(missing)} (run deploy/ci-setup.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ssh_base(count: int) -> int:
    """A base B such that B+1..B+count are free (2200 when possible)."""
    for base in (2200, 2300, 2400, 12200, 22200):
        if all(port_free(base + n) for n in range(1, count + 1)):
            return base
    raise RuntimeError("no free ports for the simulated devices' sshd")


def run(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
    cwd: Path | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


# --------------------------------------------------------------------------- wheelhouses


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    version: str


def _wheel_version(directory: Path) -> str:
    wheels = sorted(directory.glob("edged-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0].name.split("-")[1]


def build_wheelhouse(out: Path, src: Path) -> Wheelhouse:
    env = {**os.environ, "EDGED_SRC": str(src)}
    run([DEPLOY / "build-wheelhouse.sh", "x86_64", "bookworm", out], env=env, timeout=900)
    return Wheelhouse(out, _wheel_version(out))


def bumped_tree(dest: Path) -> Path:
    """A copy of the source tree whose version is one patch level higher."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv*",
        "__pycache__",
        "*.egg-info",
        "build",
        "dist",
        ".*cache",  # .pytest_cache, .mypy_cache, .ruff_cache, .deploy-cache, ...
    )
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    source = dest / "edged" / "__init__.py"  # pyproject.toml reads the version from here
    text = source.read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, flags=re.MULTILINE)
    assert match, f"no __version__ line in {source}"
    parts = match.group(1).split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    bumped = f'__version__ = "{".".join(parts)}"'
    source.write_text(text[: match.start()] + bumped + text[match.end() :])
    return dest


@pytest.fixture(scope="session")
def wheelhouses(tmp_path_factory: pytest.TempPathFactory) -> tuple[Wheelhouse, Wheelhouse]:
    """(current, next): the tree as it is, and the same with its version bumped."""
    require_deploy_host()
    base = tmp_path_factory.mktemp("wheelhouse")
    current = build_wheelhouse(base / "current", REPO)
    nxt = build_wheelhouse(base / "next", bumped_tree(base / "src-next"))
    assert current.version != nxt.version
    return current, nxt


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    state: Path
    count: int
    ssh_base: int
    mqtt_port: int
    inventory: Path
    env: dict[str, str]
    vars_file: Path
    converged: bool = False
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def operator_password_file(self) -> Path:
        return self.state / "passwords" / "operator"

    def ssh(
        self,
        n: int,
        command: str,
        *,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [DEPLOY / "fleet-sim", "ssh", str(n), command],
            env=self.env,
            check=check,
            input=input,
            timeout=timeout,
        )

    def show(self, n: int, *props: str) -> dict[str, str]:
        out = self.ssh(n, "systemctl show edged.service -p " + ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def playbook(
        self, name: str, *extra: str | Path, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        argv: list[str | Path] = [
            DEPLOY_VENV / "bin" / "ansible-playbook",
            "-i",
            self.inventory,
            ANSIBLE_DIR / name,
            "-e",
            f"@{self.vars_file}",
            *extra,
        ]
        return run(argv, env=self.env, check=check, timeout=timeout, cwd=ANSIBLE_DIR)

    def broker(self) -> BrokerOptions:
        return BrokerOptions(
            url=self.url, username="operator", password_file=str(self.operator_password_file)
        )

    def snapshot(self, seconds: float = 1.5) -> dict[str, DeviceState]:
        view = FleetView("edged")
        watch(self.broker(), ["edged/+/status", "edged/+/health"], view, lambda: False, seconds)
        return {s.device: s for s in view.devices()}

    def wait_healthy(
        self,
        device: str,
        *,
        version: str | None = None,
        since: datetime | None = None,
        timeout: float = 90,
    ) -> DeviceState:
        """Block until ``device`` is online with a health report newer than ``since``."""
        since = since or datetime.now(UTC)
        view = FleetView("edged")

        def done() -> bool:
            s = view.get(device)
            return bool(
                s
                and s.online
                and s.health_ts
                and s.health_ts > since
                and (version is None or s.version == version)
            )

        ok = watch(
            self.broker(),
            [f"edged/{device}/status", f"edged/{device}/health"],
            view,
            done,
            timeout,
        )
        state = view.get(device)
        assert ok, f"{device} not healthy within {timeout}s (version {version}): {state}"
        assert state is not None
        return state


def device_clock(fleet: Fleet, n: int) -> datetime:
    return parse_ts(fleet.ssh(n, "date -u +%Y-%m-%dT%H:%M:%S.%NZ").stdout.strip()[:23] + "Z")


def model_vars(wheel_dir: Path) -> dict[str, object]:
    """Use the model bundled in the wheel; without one, a small fixture model."""
    wheel = next(wheel_dir.glob("edged-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        if any(name.endswith(".tflite") for name in zf.namelist()):
            return {}
    model = FIXTURE_MODELS / "mobilenet_v1_0.25_128_quant.tflite"
    labels = FIXTURE_MODELS / "imagenet_labels.txt"
    if not model.exists():
        pytest.skip(f"the wheel has no bundled model and {model} is missing")
    import hashlib

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    return {
        "edged_models": [
            {"src": str(model), "sha256": digest(model)},
            {"src": str(labels), "sha256": digest(labels)},
        ],
        "edged_model_name": model.name,
        "edged_model_labels": labels.name,
    }


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, wheelhouses: tuple[Wheelhouse, Wheelhouse]
) -> Iterator[Fleet]:
    """Three simulated devices and the broker, always torn down."""
    require_deploy_host()
    current, _ = wheelhouses
    work = tmp_path_factory.mktemp("fleet")
    count = 3
    env = {
        **os.environ,
        "EDGED_FLEET_SIM_STATE": str(work / "sim"),
        "EDGED_FLEET_SIM_SSH_BASE": str(ssh_base(count)),
        "EDGED_FLEET_SIM_MQTT_PORT": str(free_port()),
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PYTHONPATH": str(REPO),
    }
    up = subprocess.run(
        [DEPLOY / "fleet-sim", "up", str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        assert up.returncode == 0, f"fleet-sim up failed:\n{up.stderr[-4000:]}"
        inventory = Path(
            run([DEPLOY / "fleet-sim", "inventory", work / "inventory.yml"], env=env).stdout.strip()
        )
        vars_file = work / "test-vars.json"
        test_vars: dict[str, object] = {
            "edged_wheelhouse": str(current.path),
            "edged_capture_paths": [DEVICE_FOOTAGE],
            "edged_capture_fps": 4.0,
            "edged_health_interval_s": 2,
            "edged_config_extra": {"health": {"stall_s": 3}},
            # The health gate runs the real command line of this tree on the controller.
            "edged_fleet_command": [sys.executable, "-m", "edged", "fleet"],
            "edged_rollout_timeout": 60,
            **model_vars(current.path),
        }
        vars_file.write_text(json.dumps(test_vars, indent=2))
        f = Fleet(
            state=work / "sim",
            count=count,
            ssh_base=int(env["EDGED_FLEET_SIM_SSH_BASE"]),
            mqtt_port=int(env["EDGED_FLEET_SIM_MQTT_PORT"]),
            inventory=inventory,
            env=env,
            vars_file=vars_file,
        )
        for n in range(1, count + 1):
            _stage_footage(f, n)
        yield f
    finally:
        down = subprocess.run(
            [DEPLOY / "fleet-sim", "down"], env=env, capture_output=True, text=True, timeout=300
        )
        if down.returncode != 0:
            print(f"fleet-sim down failed: {down.stderr}", file=sys.stderr)


def _stage_footage(f: Fleet, n: int) -> None:
    """Copy the bundled sample images to DEVICE_FOOTAGE on device n."""
    tar = subprocess.run(
        ["tar", "-C", str(SAMPLES), "-cf", "-", "--exclude=*.md", "."],
        capture_output=True,
        check=True,
    ).stdout
    proc = subprocess.run(
        [
            str(DEPLOY / "fleet-sim"),
            "ssh",
            str(n),
            f"mkdir -p {DEVICE_FOOTAGE} && tar -C {DEVICE_FOOTAGE} -xf - && "
            f"chmod -R a+rX {DEVICE_FOOTAGE}",
        ],
        input=tar,
        env=f.env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
