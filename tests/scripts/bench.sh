#!/usr/bin/env bash
# The benchmark: signer-daemon against the peers a user would pick, side by
# side in one run (release build). Installs the peers (openssh-client,
# notary, softhsm2) through install-deps.sh's package table if missing, then
# runs signer-bench, which sets every peer up itself and fails loudly when
# one cannot be.
# The ssh-agent row (the ratio base) is the newest OpenSSH that Debian
# carries, built by tests/scripts/build-openssh.sh (Debian stable's 9.2 is
# measured beside it, row ssh-agent-path); pass --openssh-dir DIR to use
# another build, or --system-openssh to measure only the system's.
# With --pcsc (root) it also starts a private pcscd with a vpcd reader
# (tests/scripts/pcsc-sandbox.sh) and measures the daemon serving the
# emulated card through it.
# Usage: tests/scripts/bench.sh [--json] [--pcsc] [--requests N] [--reps R] [--levels 1,8,64]
#        [--openssh-dir DIR | --system-openssh] [other signer-bench options]
set -euo pipefail
cd "$(dirname "$0")/../.."
for f in /usr/bin/ssh-agent /usr/bin/notary-signer /usr/lib/softhsm/libsofthsm2.so; do
  if [ ! -e "$f" ]; then
    tests/scripts/install-deps.sh >&2
    break
  fi
done
for f in /usr/bin/ssh-agent /usr/bin/ssh-keygen /usr/bin/ssh-add /usr/bin/notary-signer \
  /usr/bin/softhsm2-util /usr/lib/softhsm/libsofthsm2.so /usr/bin/openssl; do
  [ -e "$f" ] || { echo "bench.sh: $f is missing (tests/scripts/install-deps.sh as root installs it)" >&2; exit 1; }
done
cargo build --release --locked -p signer-daemon -p signer-bench -p signer-pkcs11 >&2
bindir="${CARGO_TARGET_DIR:-target}/release"
args=()
openssh=build
for a in "$@"; do
  case "$a" in
    --system-openssh) openssh=system ;;
    --openssh-dir | --openssh-dir=*) openssh=given; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
if [ "$openssh" = build ]; then
  dir="$(tests/scripts/build-openssh.sh)" || { echo "bench.sh: could not build the current OpenSSH (above); --system-openssh measures only the system's ssh-agent" >&2; exit 1; }
  args+=(--openssh-dir "$dir")
fi
for a in "$@"; do
  if [ "$a" = "--pcsc" ]; then
    eval "$(tests/scripts/pcsc-sandbox.sh start)"
    trap 'tests/scripts/pcsc-sandbox.sh stop "$SIGNER_PCSC_SANDBOX" >/dev/null 2>&1 || true' EXIT
  fi
done
"$bindir/signer-bench" --daemon-bin "$bindir/signer-daemon" "${args[@]}"
