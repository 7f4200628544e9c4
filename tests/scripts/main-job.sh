#!/usr/bin/env bash
# The main job: create an emulated token, generate a key on it, sign a file
# with it, and verify the signature with openssl. Exits non-zero on any
# failure, including a signature openssl does not verify.
# (A later change routes the signature through the daemon.)
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh

cargo build --locked -p signer-daemon --bin signer-daemon
bin="${CARGO_TARGET_DIR:-target}/debug/signer-daemon"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
state="$work/token.state"
token="emulated:$state"

echo "main-job: creating an emulated token (tests and CI only: its keys live in $state)" >&2
"$bin" emulated init --state "$state" --serial 10000001 >/dev/null

echo "main-job: generating a P-256 key in slot 9c (PIN once, touch always)" >&2
"$bin" keygen --token "$token" --slot 9c --alg p256 \
  --pin-policy once --touch-policy always >"$work/pub.pem"

printf 'main job message %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/message.txt"
printf '123456\n' >"$work/pin"
chmod 600 "$work/pin"

echo "main-job: signing (the emulated touch is approved automatically)" >&2
"$bin" sign --token "$token" --slot 9c --hash sha256 \
  --pin-file "$work/pin" --in "$work/message.txt" -o "$work/message.sig"

verdict="$(openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/message.sig" "$work/message.txt" 2>&1 || true)"
if [ "$verdict" != "Verified OK" ]; then
  echo "main-job: FAILED: openssl says: $verdict" >&2
  exit 1
fi
# The check must be able to fail: a modified message must not verify.
printf 'tampered\n' >>"$work/message.txt"
if openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/message.sig" "$work/message.txt" >/dev/null 2>&1; then
  echo "main-job: FAILED: openssl accepted the signature for a modified message" >&2
  exit 1
fi
echo "main-job: OK: openssl verified the signature (Verified OK)" >&2
