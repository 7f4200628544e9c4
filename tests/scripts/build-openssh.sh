#!/usr/bin/env bash
# Builds the newest OpenSSH release that Debian carries (the upstream
# tarball of unstable's `openssh` source package), for the benchmark's
# ssh-agent row: Debian stable's openssh-client (9.2) is years behind what
# users run, and a peer pinned to an old release hides what they would see.
#
# The download is checked along Debian's chain of trust: InRelease verified
# with gpgv against the Debian archive keyring, Sources.xz against its
# SHA-256 there, the tarball against its SHA-256 in Sources.
#
# Prints the directory holding ssh, ssh-agent, ssh-add and ssh-keygen on
# stdout (everything else goes to stderr). Idempotent: a version already
# built is reused. Installs its build tools with apt-get when run as root,
# else fails naming them. A failure (no network, a bad signature or
# checksum) is loud: the benchmark does not fall back silently.
# Usage: tests/scripts/build-openssh.sh [PREFIX]   (default /usr/local/lib/signer-bench-openssh)
set -euo pipefail
prefix="${1:-/usr/local/lib/signer-bench-openssh}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=unstable
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "build-openssh: $*" >&2; }
die() { say "$*"; exit 1; }

need=()
for pair in curl:curl gpgv:gpgv xz:xz-utils gcc:gcc make:make; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -e "$keyring" ] || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 \
      || die "apt-get install ${need[*]} failed"
  else
    die "missing ${need[*]} (apt-get install ${need[*]}, as root)"
  fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fetch() { curl -fsSL --retry 3 --max-time 300 -o "$2" "$1" || die "cannot download $1"; }

fetch "$mirror/dists/$suite/InRelease" "$work/InRelease"
gpgv --keyring "$keyring" --output "$work/Release" "$work/InRelease" 2>"$work/gpgv.log" \
  || { cat "$work/gpgv.log" >&2; die "the signature of $mirror/dists/$suite/InRelease does not verify against $keyring"; }
want=$(awk '/^SHA256:/{s=1;next} /^[^ ]/{s=0} s && $3=="main/source/Sources.xz"{print $1}' "$work/Release")
[ -n "$want" ] || die "main/source/Sources.xz is not listed in $suite's Release"
fetch "$mirror/dists/$suite/main/source/Sources.xz" "$work/Sources.xz"
echo "$want  $work/Sources.xz" | sha256sum -c --quiet - >&2 || die "Sources.xz does not match its SHA-256 in Release"

# Every openssh stanza: version, directory, orig tarball and its SHA-256.
xz -dc "$work/Sources.xz" | awk '
  /^Package: /{pkg=$2; ver=""; dir=""; sum=""; file=""; sha=0}
  pkg=="openssh" && /^Version: /{ver=$2}
  pkg=="openssh" && /^Directory: /{dir=$2}
  /^[^ \t]/{sha=($1=="Checksums-Sha256:")}
  pkg=="openssh" && sha && $3 ~ /\.orig\.tar\.(gz|xz)$/ {sum=$1; file=$3}
  /^$/{ if (pkg=="openssh" && ver!="" && file!="") print ver, dir, file, sum; pkg="" }
  END{ if (pkg=="openssh" && ver!="" && file!="") print ver, dir, file, sum }' > "$work/stanzas"
[ -s "$work/stanzas" ] || die "no openssh source package in $suite"
# Newest first (Debian version order).
sorted=()
while read -r line; do
  i=0
  while [ "$i" -lt "${#sorted[@]}" ] && dpkg --compare-versions "${sorted[$i]%% *}" ge "${line%% *}"; do
    i=$((i + 1))
  done
  sorted=("${sorted[@]:0:$i}" "$line" "${sorted[@]:$i}")
done < "$work/stanzas"
# The newest whose tarball the mirror serves (a version listed in the index
# can be missing from a mirror for a while); said, never silent.
for entry in "${sorted[@]}"; do
  read -r ver dir file sum <<<"$entry"
  upstream="${file#openssh_}"
  upstream="${upstream%.orig.tar.*}"
  dest="$prefix/$upstream"
  if [ -x "$dest/ssh-agent" ] && [ -x "$dest/ssh" ]; then
    say "OpenSSH $upstream already built in $dest"
    echo "$dest"
    exit 0
  fi
  if curl -fsSL --retry 3 --max-time 300 -o "$work/$file" "$mirror/$dir/$file"; then
    break
  fi
  say "Debian $suite lists openssh $ver but $mirror/$dir/$file cannot be downloaded; trying the next older"
  file=""
done
[ -n "$file" ] || die "no openssh tarball of Debian $suite could be downloaded from $mirror"
say "building OpenSSH $upstream (Debian $suite $ver) into $dest"
echo "$sum  $work/$file" | sha256sum -c --quiet - >&2 || die "$file does not match its SHA-256 in Sources"
tar -xf "$work/$file" -C "$work"
src="$work/openssh-$upstream"
[ -x "$src/configure" ] || die "$file has no configure script"
(
  cd "$src"
  ./configure --without-pam --without-selinux --without-kerberos5 --without-security-key-builtin \
    --prefix="$dest" >"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; exit 1; }
  make -j"$(nproc)" ssh ssh-agent ssh-add ssh-keygen >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
) || die "building OpenSSH $upstream failed (log above)"
mkdir -p "$dest.tmp"
cp "$src/ssh" "$src/ssh-agent" "$src/ssh-add" "$src/ssh-keygen" "$dest.tmp/"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
"$dest/ssh" -V >&2
echo "$dest"
