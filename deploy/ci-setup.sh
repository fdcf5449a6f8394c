#!/usr/bin/env bash
# Prepare a Debian 12 machine (root) for the deployment tests (pytest -m deploy):
# system packages (with qemu-user-static for the arm64 checks), the controller venv
# .venv-deploy, and the cached root of the simulator.
#
#   deploy/ci-setup.sh            everything
#   deploy/ci-setup.sh --no-root  skip building the simulator's Debian root (about a minute;
#                                 the tests build it on first use)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
[[ $EUID -eq 0 ]] || { echo "ci-setup.sh: run as root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    systemd systemd-container debootstrap \
    mosquitto mosquitto-clients \
    openssh-client \
    python3 python3-venv python3-pip \
    ca-certificates tar iproute2 git make \
    qemu-user-static binfmt-support

# the Debian package: dpkg-deb builds it, lintian reviews it (tests/deploy/test_deb.py)
apt-get install -y --no-install-recommends dpkg-dev lintian

# arm64 roots run under qemu through binfmt_misc (the F flag lets containers use it)
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] ||
    echo "ci-setup.sh: warning: qemu-aarch64 is not registered with binfmt_misc" >&2

# Debian starts mosquitto on port 1883; the tests start brokers of their own on free ports.

venv=$repo/.venv-deploy
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$repo/ansible/requirements.txt"
"$venv/bin/ansible-galaxy" collection install -r "$repo/ansible/requirements.yml" >/dev/null

if [[ ${1:-} != --no-root ]]; then
    "$here/fleet-sim" build
fi
echo "ci-setup.sh: ready ($("$venv/bin/ansible-playbook" --version | sed -n 1p))"
