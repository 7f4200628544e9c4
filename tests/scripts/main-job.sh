#!/usr/bin/env bash
# The main job: an emulated token served by signer-daemon on a Unix socket,
# a signature through the daemon with signerctl, verified with openssl.
# Exits non-zero on any failure, including a signature openssl rejects or a
# daemon that does not stop cleanly.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh

cargo build --locked -p signer-daemon --bins
bindir="${CARGO_TARGET_DIR:-target}/debug"
daemon="$bindir/signer-daemon"
signerctl="$bindir/signerctl"

work="$(mktemp -d)"
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
state="$work/token.state"
token="emulated:$state"
socket="$work/run/signer.sock"

echo "main-job: creating an emulated token (tests and CI only: its keys live in $state)" >&2
"$daemon" emulated init --state "$state" --serial 10000001 >/dev/null 2>&1

printf '123456\n' >"$work/pin"
chmod 600 "$work/pin"

echo "main-job: generating a P-256 key in slot 9c (PIN once, touch always) with a self-signed certificate" >&2
"$daemon" keygen --token "$token" --slot 9c --alg p256 --pin-file "$work/pin" \
  --pin-policy once --touch-policy always >"$work/pub.pem" 2>"$work/keygen.log" || {
  echo "main-job: FAILED: keygen:" >&2
  cat "$work/keygen.log" >&2
  exit 1
}

echo "main-job: starting signer-daemon on $socket" >&2
"$daemon" serve --token "$token" --socket "$socket" --pin-file "$work/pin" \
  --audit-log "$work/audit.jsonl" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 1 200); do
  if "$signerctl" --socket "$socket" health >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "main-job: FAILED: the daemon exited:" >&2
    cat "$work/daemon.log" >&2
    exit 1
  fi
  sleep 0.1
done
"$signerctl" --socket "$socket" list

printf 'main job message %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/message.txt"
echo "main-job: signing through the daemon (the emulated touch is approved automatically)" >&2
"$signerctl" --socket "$socket" sign --key 9c --in "$work/message.txt" -o "$work/message.sig"

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

echo "main-job: stopping the daemon (SIGTERM)" >&2
kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
if [ "$status" -ne 0 ]; then
  echo "main-job: FAILED: the daemon exited with status $status" >&2
  cat "$work/daemon.log" >&2
  exit 1
fi
if ! grep -q '"rpc":"SignWithEvents".*"outcome":"ok"' "$work/audit.jsonl"; then
  echo "main-job: FAILED: the signature is missing from the audit log" >&2
  exit 1
fi
echo "main-job: OK: signed through signer-daemon; openssl verified the signature (Verified OK); audited" >&2
