#!/usr/bin/env bash
# The benchmark: signer-daemon against the peers a user would pick, side by
# side in one run (release build). Installs the peers (openssh-client,
# notary, softhsm2) through install-deps.sh's package table if missing, then
# runs signer-bench, which sets every peer up itself and fails loudly when
# one cannot be.
# With --pcsc (root) it also starts a private pcscd with a vpcd reader
# (tests/scripts/pcsc-sandbox.sh) and measures the daemon serving the
# emulated card through it.
# Usage: tests/scripts/bench.sh [--json] [--pcsc] [--requests N] [--reps R] [--levels 1,8,64]
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
for a in "$@"; do
  if [ "$a" = "--pcsc" ]; then
    eval "$(tests/scripts/pcsc-sandbox.sh start)"
    trap 'tests/scripts/pcsc-sandbox.sh stop "$SIGNER_PCSC_SANDBOX" >/dev/null 2>&1 || true' EXIT
  fi
done
"$bindir/signer-bench" --daemon-bin "$bindir/signer-daemon" "$@"
