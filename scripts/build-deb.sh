#!/usr/bin/env bash
# Builds the Debian package of the agent with dpkg-deb alone (no debhelper):
#   scripts/build-deb.sh [--out DIR] [--revision N]   ->  DIR/cityedge_<version>-<N>_<arch>.deb
#
# What it holds (docs/operations.md, "Installing the Debian package"):
#   /opt/cityedge/wheels/         the cityedge wheel and every pinned dependency as wheels
#   /usr/bin/cityedge             -> /opt/cityedge/venv/bin/cityedge
#   /usr/lib/systemd/system/cityedge.service, /usr/lib/sysusers.d/, /usr/lib/tmpfiles.d/
#   /etc/cityedge/agent.toml      the example config (a conffile), /etc/cityedge/credentials/
#   /usr/share/doc/cityedge/      README, operations guide, copyright (the licence)
# The venv itself is made by postinst, with the gateway's own python3 and offline
# from those wheels (/opt/cityedge/venv-<version>, /opt/cityedge/venv points at it):
# a venv is tied to the interpreter and the path it was made with, and the build
# machine's Python need not be the gateway's. So the package targets the Python
# minor version this script runs with (3.11: Debian 12 "bookworm") and this
# machine's architecture; build on an arm64 machine for arm64 gateways.
#
# Environment: PYTHON (default python3, must be the target's minor version),
# DEBFULLNAME / DEBEMAIL (the Maintainer field).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Bump when the package's Depends change: tests key their cached Debian root (which
# holds those dependencies) on it, with their own debootstrap recipe.
BUILD_DEB_RECIPE=1

out=dist
revision=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --revision) revision=${2:?--revision needs a number}; shift 2 ;;
    --recipe) echo "$BUILD_DEB_RECIPE"; exit 0 ;;
    -h|--help) sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$revision" in ''|*[!0-9]*) echo "build-deb.sh: --revision must be a number, got '$revision'" >&2; exit 2 ;; esac
for tool in dpkg-deb dpkg; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-deb.sh: $tool not found (Debian's dpkg package)" >&2; exit 1; }
done

py=${PYTHON:-python3}
version=$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
pyminor=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyminor" = 3.11 ] || echo "build-deb.sh: note: building for Python $pyminor (Debian 12 has 3.11)" >&2
next_minor=$("$py" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
arch=$(dpkg --print-architecture)
mkdir -p "$out"
deb="$(cd "$out" && pwd)/cityedge_${version}-${revision}_${arch}.deb"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copy of the sources: build/ and *.egg-info stay out of the checkout.
mkdir "$work/src"
cp -r pyproject.toml setup.py README.md LICENSE agent drivers config "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +

echo "build-deb.sh: wheels for cityedge $version (Python $pyminor, $arch)" >&2
"$py" -m venv "$work/build-venv"
pip=("$work/build-venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" wheel -q --no-deps -w "$work/own" "$work/src"
root=$work/root
wheels=$root/opt/cityedge/wheels
# The pinned dependencies as wheels (downloaded, or built here for any that ships
# only a source archive), so postinst installs offline.
"${pip[@]}" wheel -q -w "$wheels" "$work"/own/cityedge-*.whl

install -D -m 0644 systemd/cityedge.service "$root/usr/lib/systemd/system/cityedge.service"
install -D -m 0644 systemd/cityedge.sysusers.conf "$root/usr/lib/sysusers.d/cityedge.conf"
install -D -m 0644 systemd/cityedge.tmpfiles.conf "$root/usr/lib/tmpfiles.d/cityedge.conf"
install -D -m 0640 config/agent.example.toml "$root/etc/cityedge/agent.toml"
install -d -m 0700 "$root/etc/cityedge/credentials"
install -d -m 0755 "$root/usr/bin"
ln -s /opt/cityedge/venv/bin/cityedge "$root/usr/bin/cityedge"
install -D -m 0644 README.md "$root/usr/share/doc/cityedge/README.md"
install -D -m 0644 docs/operations.md "$root/usr/share/doc/cityedge/operations.md"
install -D -m 0644 LICENSE "$root/usr/share/doc/cityedge/copyright"

mkdir -p "$root/DEBIAN"
echo /etc/cityedge/agent.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<EOF
Package: cityedge
Version: ${version}-${revision}
Architecture: ${arch}
Maintainer: ${DEBFULLNAME:-cityedge maintainers} <${DEBEMAIL:-root@localhost}>
Installed-Size: $(du -sk "$root" | cut -f1)
Depends: python3 (>= ${pyminor}), python3 (<< ${next_minor}), python3-venv, passwd
Recommends: systemd
Section: net
Priority: optional
Description: field-gateway agent for a smart city's street equipment
 Reads Modbus, serial, LoRaWAN and BLE street equipment, keeps every reading
 in a durable local outbox and sends it to the city's command post as signed
 MQTT messages; accepts only signed, fresh, policy-allowed commands.
 .
 The agent's Python environment is made at install time in
 /opt/cityedge/venv-${version} from the wheels this package carries, offline.
EOF

cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# cityedge postinst: the system user and its directories, then the agent's venv,
# made by this machine's python3 from the wheels in /opt/cityedge/wheels, offline.
set -e
VERSION=@VERSION@
OPT=/opt/cityedge
[ "$1" = configure ] || exit 0

# systemd's tools when they are there and work (systemd-tmpfiles wants /proc, which
# a chroot may lack); the same result by hand otherwise.
if ! { command -v systemd-sysusers >/dev/null 2>&1 \
       && systemd-sysusers /usr/lib/sysusers.d/cityedge.conf; }; then
  if ! getent passwd cityedge >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/cityedge --no-create-home \
      --shell /usr/sbin/nologin --comment "cityedge field-gateway agent" cityedge
  fi
  # As sysusers' "m" lines: the unit's SupplementaryGroups= must exist, or it cannot start.
  for group in dialout bluetooth; do
    getent group "$group" >/dev/null || groupadd --system "$group"
    usermod -a -G "$group" cityedge
  done
fi
if ! { command -v systemd-tmpfiles >/dev/null 2>&1 \
       && systemd-tmpfiles --create /usr/lib/tmpfiles.d/cityedge.conf 2>/dev/null; }; then
  install -d -m 0700 -o root -g root /etc/cityedge/credentials
fi
# The agent reads its config as the cityedge user; nobody else needs to.
if [ -f /etc/cityedge/agent.toml ]; then chgrp cityedge /etc/cityedge/agent.toml; fi

venv=$OPT/venv-$VERSION
# Nothing of the installing shell's pip settings (PIP_INDEX_URL, PIP_FIND_LINKS...).
for var in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
rm -rf "$venv"
python3 -m venv "$venv"
# No index, no pip.conf of the machine: exactly the wheels that were tested.
PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip install --quiet --no-index \
  --no-cache-dir --disable-pip-version-check --find-links "$OPT/wheels" "cityedge==$VERSION"
ln -sfn "venv-$VERSION" "$OPT/venv.new"
mv -T "$OPT/venv.new" "$OPT/venv"

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  systemctl try-restart cityedge.service || true
fi
# Older versions' venvs go once nothing runs from them any more.
for old in "$OPT"/venv-*; do
  if [ "$old" != "$venv" ]; then rm -rf "$old"; fi
done
exit 0
EOF
sed -i "s/@VERSION@/${version}/" "$root/DEBIAN/postinst"

cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# cityedge prerm: on removal, stop and disable the agent (an upgrade restarts it in postinst).
set -e
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then systemctl stop cityedge.service || true; fi
  if command -v systemctl >/dev/null 2>&1; then systemctl disable cityedge.service >/dev/null 2>&1 || true; fi
fi
exit 0
EOF

cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# cityedge postrm: the venvs postinst made (dpkg does not know their files).
# Purge keeps /var/lib/cityedge (the gateway key, the outbox) and the cityedge
# user: decommission with `cityedge wipe` first (docs/operations.md).
set -e
case "$1" in
  remove|purge)
    rm -rf /opt/cityedge/venv /opt/cityedge/venv.new /opt/cityedge/venv-*
    rmdir /opt/cityedge 2>/dev/null || true
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    ;;
esac
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

# gzip: the payload is wheels, already compressed; xz would take 35 times as long for 0.1 %.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
