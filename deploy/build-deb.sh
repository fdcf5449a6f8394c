#!/usr/bin/env bash
# Build the Debian package of edged for one Raspberry Pi (or any Debian machine):
#
#   deploy/build-deb.sh ARCH SUITE [OUT]
#
#   ARCH   arm64 (Raspberry Pi 3/4/5, 64-bit Raspberry Pi OS) or amd64
#   SUITE  the machine's release: bookworm (Debian 12, Python 3.11) or trixie (Debian 13,
#          Python 3.13; Raspberry Pi OS since late 2025)
#   OUT    folder for edged_<version>_<arch>.deb (default: <repo>/dist)
#
# Install it with `sudo apt install ./edged_<version>_<arch>.deb`. The package holds the
# wheelhouse of that release (deploy/build-wheelhouse.sh: edged and every dependency as
# binary wheels) in /usr/lib/edged/wheels; its postinst builds the venv
# /opt/edged/releases/<version>/venv from it, offline, with the machine's own python3 and
# --system-site-packages (so that Raspberry Pi OS's python3-picamera2 is seen), points
# /opt/edged/current at it and enables and starts edged.service. deploy/README.md says why.
# The version is <edged's version>-<revision>+deb<12|13>, so each suite's file has its name.
#
# Environment:
#   EDGED_SRC            source tree to build (default: this repository)
#   EDGED_WHEELHOUSE     a wheelhouse already built for ARCH and SUITE (default: build one)
#   EDGED_EXTRAS         edged's extras installed (default: video, i.e. PyAV for USB webcams
#                        and IP cameras; empty = none)
#   EDGED_DEB_REVISION   Debian revision (default: 1)
#   EDGED_DEB_MAINTAINER Maintainer: field (default: edged maintainers <maintainers@edged.invalid>)
#   SOURCE_DATE_EPOCH    timestamps in the package (default: the last commit's, else now)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
usage="usage: $0 arm64|amd64 bookworm|trixie [OUT]"

arch=${1:-}
suite=${2:-}
case $arch in
arm64) wheel_arch=aarch64 ;;
amd64) wheel_arch=x86_64 ;;
*)
    echo "build-deb.sh: unknown architecture '$arch'; valid: arm64 (Raspberry Pi), amd64" >&2
    echo "$usage" >&2
    exit 2
    ;;
esac
# debian: the suffix of the version; python: the interpreter the wheels are for; unit_dir:
# where the suite's lintian expects units (trixie finished the /usr merge)
case $suite in
bookworm) debian=12 python=3.11 glibc=2.36 unit_dir=lib/systemd/system ;;
trixie) debian=13 python=3.13 glibc=2.41 unit_dir=usr/lib/systemd/system ;;
*)
    echo "build-deb.sh: unknown suite '$suite'; valid: bookworm (Debian 12, Python 3.11), trixie (Debian 13, Python 3.13)" >&2
    echo "$usage" >&2
    exit 2
    ;;
esac
out=${3:-$repo/dist}
src=${EDGED_SRC:-$repo}
extras=${EDGED_EXTRAS-video}
revision=${EDGED_DEB_REVISION:-1}
maintainer=${EDGED_DEB_MAINTAINER:-edged maintainers <maintainers@edged.invalid>}
for tool in dpkg-deb gzip python3 md5sum; do
    command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing; it needs dpkg-deb (package dpkg), gzip, python3 and md5sum (coreutils)" >&2; exit 1; }
done
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------------- the wheelhouse
wheels=${EDGED_WHEELHOUSE:-}
if [[ -z $wheels ]]; then
    wheels=$work/wheelhouse
    EDGED_SRC=$src EDGED_EXTRAS=$extras "$here/build-wheelhouse.sh" "$wheel_arch" "$suite" "$wheels"
fi
python3 - "$wheels/wheelhouse.json" "$wheel_arch" "$suite" <<'PY'
import json, sys
path, arch, release = sys.argv[1:]
target = json.load(open(path))
if (target.get("arch"), target.get("release")) != (arch, release):
    sys.exit(f"build-deb.sh: {path} is for {target.get('arch')} {target.get('release')}, "
             f"not {arch} {release}")
PY
edged_wheel=$(find "$wheels" -maxdepth 1 -name 'edged-*.whl')
[[ $(printf '%s\n' "$edged_wheel" | grep -c .) == 1 ]] ||
    { echo "build-deb.sh: $wheels must hold exactly one edged-*.whl" >&2; exit 1; }
version=$(basename "$edged_wheel" | cut -d- -f2)
debversion=$version-$revision+deb$debian
requirement="edged${extras:+[$extras]}==$version"

# ---------------------------------------------------------------------- the tree
tree=$work/tree
install -d -m 0755 "$tree/DEBIAN" "$tree/usr/lib/edged/wheels" "$tree/etc/edged" \
    "$tree/$unit_dir" "$tree/usr/share/doc/edged" "$tree/usr/share/lintian/overrides"
install -m 0644 "$wheels"/*.whl "$wheels/wheelhouse.json" "$tree/usr/lib/edged/wheels/"
install -m 0644 "$here/deb/config.toml" "$tree/etc/edged/config.toml"
install -m 0644 "$repo/systemd/edged.service" "$tree/$unit_dir/edged.service"
# the overrides of every suite, then those of this suite's lintian
cat "$here/deb/lintian-overrides" >"$tree/usr/share/lintian/overrides/edged"
if [[ -f $here/deb/lintian-overrides.$suite ]]; then
    { echo; cat "$here/deb/lintian-overrides.$suite"; } >>"$tree/usr/share/lintian/overrides/edged"
fi
chmod 0644 "$tree/usr/share/lintian/overrides/edged"
gzip -9n <"$src/README.md" >"$tree/usr/share/doc/edged/README.md.gz"
chmod 0644 "$tree/usr/share/doc/edged/README.md.gz"

changelog_date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
{
    printf 'edged (%s) %s; urgency=medium\n\n' "$debversion" "$suite"
    printf '  * edged %s for Debian %s (%s), Python %s.\n\n' "$version" "$debian" "$suite" "$python"
    printf ' -- %s  %s\n' "$maintainer" "$changelog_date"
} | gzip -9n >"$tree/usr/share/doc/edged/changelog.Debian.gz"
chmod 0644 "$tree/usr/share/doc/edged/changelog.Debian.gz"

# copyright: edged's, then each bundled wheel's license as its metadata gives it
python3 - "$tree/usr/lib/edged/wheels" "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)" \
    >"$tree/usr/share/doc/edged/copyright" <<'PY'
import email.parser, sys, zipfile
from pathlib import Path

wheels = Path(sys.argv[1])
print("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
print("Upstream-Name: edged")
print("Comment: usr/lib/edged/wheels holds edged and the Python packages it runs on, as")
print(" wheels from PyPI; each keeps its license files inside (*.dist-info/).")
print()
print("Files: *")
print(f"Copyright: {sys.argv[2]} edged maintainers")
print("License: Apache-2.0")
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(name).decode("utf-8", "replace"))
    license = meta.get("License-Expression") or ""
    if not license:
        classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                       if c.startswith("License ::")]
        short = (meta.get("License") or "").strip().splitlines()
        license = " or ".join(classifiers) or (short[0] if short and len(short[0]) < 80 else "")
    license = license or "see the wheel's dist-info"
    print()
    print(f"Files: usr/lib/edged/wheels/{wheel.name}")
    print(f"Copyright: {meta.get('Author') or meta.get('Author-email') or meta['Name'] + ' authors'}".replace("\n", " "))
    print(f"License: {license}")
    print(f" {meta['Name']} {meta['Version']}: the full text is in the wheel's dist-info.")
print()
print("License: Apache-2.0")
print(" On Debian systems, the full text of the Apache License 2.0 is in")
print(" /usr/share/common-licenses/Apache-2.0.")
PY
chmod 0644 "$tree/usr/share/doc/edged/copyright"

# ---------------------------------------------------------------------- control
for script in postinst prerm postrm; do
    sed -e "s|@VERSION@|$version|g" -e "s|@REQUIREMENT@|$requirement|g" \
        "$here/deb/$script" >"$tree/DEBIAN/$script"
    chmod 0755 "$tree/DEBIAN/$script"
done
echo /etc/edged/config.toml >"$tree/DEBIAN/conffiles"
# every file but the conffiles, as dh_md5sums does
(cd "$tree" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum) >"$tree/DEBIAN/md5sums"
chmod 0644 "$tree/DEBIAN/conffiles" "$tree/DEBIAN/md5sums"
next_python=${python%.*}.$((${python#*.} + 1))
installed_kb=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
cat >"$tree/DEBIAN/control" <<CONTROL
Package: edged
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_kb
Depends: python3 (>= $python), python3 (<< $next_python), python3-venv, libc6 (>= $glibc), libstdc++6, libgcc-s1, adduser, init-system-helpers (>= 1.52)
Recommends: mosquitto, python3-picamera2
Suggests: mosquitto-clients, python3-systemd
Section: video
Priority: optional
Description: edge classification daemon for Raspberry Pi cameras
 edged captures camera frames (the Raspberry Pi camera, a USB webcam, an IP
 camera, or photos and videos), classifies them with a TensorFlow Lite model on
 the CPU or a Coral Edge TPU, and publishes the labels and probabilities, with
 its health, over MQTT.
 .
 It runs as the systemd service edged.service, configured in
 /etc/edged/config.toml, and publishes to the broker on this machine by
 default (mosquitto). Its Python environment is built at installation time,
 offline, from the wheels in this package, under /opt/edged.
CONTROL

# ---------------------------------------------------------------------- the package
mkdir -p "$out"
deb=$out/edged_${debversion}_$arch.deb
# The wheels are zip files already: xz would spend minutes to save a few per cent.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$tree" "$deb" >/dev/null
echo "$deb ($(du -h "$deb" | cut -f1), installed ${installed_kb} kB before the venv)" >&2
echo "$deb"
