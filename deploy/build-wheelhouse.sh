#!/usr/bin/env bash
# Build a wheelhouse for the devices: the edged wheel plus every dependency as binary wheels
# for the devices' architecture and Debian release, so devices install offline.
#
#   deploy/build-wheelhouse.sh ARCH RELEASE [OUT]
#
#   ARCH     aarch64 (Raspberry Pi 4/5, 64-bit OS) or x86_64 (simulator, PCs)
#   RELEASE  the devices' Debian / Raspberry Pi OS release, which fixes their Python and glibc:
#              bookworm  Debian 12, Python 3.11, glibc 2.36
#              trixie    Debian 13 (today's Raspberry Pi OS), Python 3.13, glibc 2.41
#   OUT      default: <repo>/.deploy-cache/wheelhouse/RELEASE/ARCH
#
# OUT/wheelhouse.json records the target (arch, release, python, glibc): the Ansible role
# checks each device against it before it installs anything.
#
# Environment:
#   EDGED_SRC             source tree to build (default: this repository)
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

usage="usage: $0 aarch64|x86_64 bookworm|trixie [OUT]"
arch=${1:-}
release=${2:-}
case $arch in
aarch64 | x86_64) ;;
*)
    echo "build-wheelhouse.sh: unknown architecture '$arch'; valid: aarch64, x86_64" >&2
    echo "$usage" >&2
    exit 2
    ;;
esac
case $release in
bookworm) pyver=3.11 glibc_minor=36 ;;
trixie) pyver=3.13 glibc_minor=41 ;;
*)
    echo "build-wheelhouse.sh: unknown release '$release'; valid: bookworm (Debian 12, Python 3.11), trixie (Debian 13, Python 3.13)" >&2
    echo "$usage" >&2
    exit 2
    ;;
esac
out=${3:-$repo/.deploy-cache/wheelhouse/$release/$arch}
src=${EDGED_SRC:-$repo}
extras=${EDGED_EXTRAS-video}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $repo/.venv-deploy/bin/python ]]; then PYTHON=$repo/.venv-deploy/bin/python; else PYTHON=python3; fi
fi

mkdir -p "$out"
rm -f "$out"/edged-*.whl "$out"/wheelhouse.json
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
printf '{"arch": "%s", "release": "%s", "python": "%s", "glibc": "2.%s"}\n' \
    "$arch" "$release" "$pyver" "$glibc_minor" >"$out/wheelhouse.json"
