#!/usr/bin/env bash
# Build vsmartcard's vpcd reader driver with ONE slot per reader.conf entry,
# from the Debian source of the installed vsmartcard-vpcd, so that an
# emulated card appears as exactly one reader, as one plugged-in YubiKey does.
#
#   tests/scripts/vpcd-one-slot.sh [DIR]     (root when DIR is not writable)
#
# Installs DIR/libifdvpcd.so (default /usr/local/lib/signer-e2e-vpcd, or
# $SIGNER_VPCD_ONE_SLOT_DIR) and prints its path. Idempotent.
#
# Why: vpcd's slot count is a compile-time constant (configure
# --enable-vpcdslots=COUNT, default 2; ifd-vpcd.c answers TAG_IFD_SLOTS_NUMBER
# with it), so Debian's driver gives every reader.conf entry two readers,
# "NAME 00 00" and "NAME 00 01". With NAME "Yubico YubiKey ...", ykman 4 and
# 5 count every reader whose name contains "yubico yubikey", card or not, and
# refuse to pick one ("Multiple YubiKeys detected"). pcsc-lite's
# PCSCLITE_FILTER_IGNORE_READER_NAMES matches the entry's name before the
# slot suffix, so it can only drop both readers. Building the same source
# with --enable-vpcdslots=1 (here: -DVPCDSLOTS=1, the define that option
# sets) is vpcd's own way to get one reader.
#
# The source comes from Debian's archive through apt (`apt-get source
# --download-only`, signatures checked by apt) with a private apt
# configuration in a temporary directory: the system's apt sources are not
# changed. Needs gcc and libpcsclite-dev.
set -euo pipefail

dir="${1:-${SIGNER_VPCD_ONE_SLOT_DIR:-/usr/local/lib/signer-e2e-vpcd}}"
out="$dir/libifdvpcd.so"
stamp="$dir/.source"

version="$(dpkg-query -W -f '${source:Version}' vsmartcard-vpcd 2>/dev/null || true)"
if [ -z "$version" ]; then
  echo "vpcd-one-slot: the Debian package vsmartcard-vpcd is not installed (apt-get install vsmartcard-vpcd)" >&2
  exit 1
fi
want="vsmartcard $version VPCDSLOTS=1"
if [ -e "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$out"
  exit 0
fi
for tool in gcc pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "vpcd-one-slot: $tool is missing (apt-get install gcc pkg-config)" >&2
    exit 1
  }
done
pkg-config --exists libpcsclite || {
  echo "vpcd-one-slot: libpcsclite-dev is missing (apt-get install libpcsclite-dev)" >&2
  exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
# The suite of the installed package's origin (bookworm on Debian 12).
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
# The Debian mirror this machine already installs its packages from (the
# first URIs of /etc/apt/sources.list.d/debian.sources, else the first "deb"
# line of /etc/apt/sources.list): its source index, in a private apt state.
mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
if [ -z "$mirror" ]; then
  mirror="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)"
fi
if [ -z "$mirror" ]; then
  echo "vpcd-one-slot: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
  exit 1
fi
cat >"$work/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
EOF
apt=(apt-get -q
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=$work/none"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=root")
echo "vpcd-one-slot: fetching the Debian source vsmartcard $version" >&2
"${apt[@]}" update </dev/null >"$work/apt.log" 2>&1 || {
  cat "$work/apt.log" >&2
  echo "vpcd-one-slot: apt-get update of the deb-src index failed (no access to the Debian mirror $mirror?)" >&2
  exit 1
}
(cd "$work/src" && "${apt[@]}" source --download-only "vsmartcard=$version" </dev/null >>"$work/apt.log" 2>&1) || {
  cat "$work/apt.log" >&2
  echo "vpcd-one-slot: apt-get source vsmartcard=$version failed" >&2
  exit 1
}
orig="$(ls "$work"/src/vsmartcard_*.orig.tar.* | head -n1)"
tar -xf "$orig" -C "$work/src" --wildcards \
  '*/virtualsmartcard/src/vpcd/*' '*/virtualsmartcard/src/ifd-vpcd/*'
src="$(echo "$work"/src/*/virtualsmartcard/src)"

# The defines configure would set on Linux (no config.h), hardened like
# Debian's build; VPCDSLOTS=1 is the one difference.
# shellcheck disable=SC2046
gcc -shared -fPIC -O2 -g0 -Wall -Wformat -Werror=format-security \
  -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wl,-z,relro -Wl,-z,now \
  -DVPCDSLOTS=1 -DVPCDHOST=NULL \
  -DHAVE_DECL_MSG_NOSIGNAL=1 -DHAVE_DEBUGLOG_H -DHAVE_ARPA_INET_H \
  $(pkg-config --cflags libpcsclite) -I"$src/vpcd" \
  "$src/ifd-vpcd/ifd-vpcd.c" "$src/vpcd/vpcd.c" "$src/vpcd/lock.c" \
  -o "$work/libifdvpcd.so"

mkdir -p "$dir"
install -m0644 "$work/libifdvpcd.so" "$out"
echo "$want" >"$stamp"
echo "vpcd-one-slot: built $out (vpcd from vsmartcard $version, 1 slot per entry)" >&2
echo "$out"
