#!/usr/bin/env bash
# Build a wheelhouse for the devices: the edged wheel plus every dependency as binary wheels
# for the devices' architecture and Python, so devices install offline.
#
#   deploy/build-wheelhouse.sh ARCH [OUT]
#
#   ARCH  aarch64 (Raspberry Pi 4/5, 64-bit OS) or x86_64 (simulator, PCs)
#   OUT   default: <repo>/.deploy-cache/wheelhouse/ARCH (what the Ansible role looks for)
#
# Environment:
#   EDGED_SRC             source tree to build (default: this repository)
#   EDGED_PYTHON_VERSION  the devices' Python (default 3.11, Debian bookworm)
#   EDGED_GLIBC_MINOR     the devices' glibc 2.x (default 36, Debian bookworm)
#   PYTHON                interpreter that runs pip (default: .venv-deploy's, else python3)
#   EDGED_EXTRAS          edged's extras whose dependencies are included, comma-separated
#                         (default: video, i.e. PyAV with its FFmpeg, for USB webcams
#                         (capture.type v4l2) and IP cameras (stream); empty = none). The
#                         Ansible role installs an extra only where the device needs it.
#
# systemd-python is not included: devices use Debian's python3-systemd through a venv
# created with --system-site-packages.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

arch=${1:-}
case $arch in
aarch64 | x86_64) ;;
*)
    echo "usage: $0 aarch64|x86_64 [OUT]" >&2
    exit 2
    ;;
esac
out=${2:-$repo/.deploy-cache/wheelhouse/$arch}
src=${EDGED_SRC:-$repo}
pyver=${EDGED_PYTHON_VERSION:-3.11}
glibc_minor=${EDGED_GLIBC_MINOR:-36}
extras=${EDGED_EXTRAS-video}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $repo/.venv-deploy/bin/python ]]; then PYTHON=$repo/.venv-deploy/bin/python; else PYTHON=python3; fi
fi

mkdir -p "$out"
rm -f "$out"/edged-*.whl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "building the edged wheel from $src" >&2
# From a clean copy: an in-tree build leaves build/ behind, and stale files there would end
# up in later wheels.
mkdir "$tmp/src"
tar -C "$src" -cf - \
    --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude='./.*cache' . |
    tar -C "$tmp/src" -xf -
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$tmp" "$tmp/src"
wheel=$(find "$tmp" -maxdepth 1 -name 'edged-*.whl' | head -n 1)
[[ -n $wheel ]] || { echo "no edged wheel was built" >&2; exit 1; }
cp "$wheel" "$out/"

platforms=(--platform "manylinux2014_$arch")
for ((minor = 17; minor <= glibc_minor; minor++)); do
    platforms+=(--platform "manylinux_2_${minor}_$arch")
done
abi=cp${pyver/./}

echo "downloading dependencies for $arch, CPython $pyver, glibc 2.$glibc_minor" >&2
"$PYTHON" -m pip download --quiet --dest "$out" --only-binary=:all: \
    "${platforms[@]}" --python-version "$pyver" --implementation cp \
    --abi "$abi" --abi abi3 --abi none \
    "$out/$(basename "$wheel")${extras:+[$extras]}"

echo "$out: $(find "$out" -name '*.whl' | wc -l) wheels, edged $(basename "$wheel" | cut -d- -f2)${extras:+ [$extras]}" >&2
