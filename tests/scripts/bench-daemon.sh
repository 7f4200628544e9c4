#!/usr/bin/env bash
# Signatures per second through signer-daemon on an emulated token (release
# build), side by side in one run: one client, then 64 concurrent clients.
# Every signature is verified by signerctl against the key and its own digest.
# Usage: tests/scripts/bench-daemon.sh [CLIENTS] [REQUESTS_PER_CLIENT]
set -euo pipefail
cd "$(dirname "$0")/../.."
clients="${1:-64}"
per="${2:-200}"
cargo build --release --locked -p signer-daemon --bins >&2
bindir="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"' EXIT
state="$work/token.state"
"$bindir/signer-daemon" emulated init --state "$state" --serial 10000001 >/dev/null 2>&1
"$bindir/signer-daemon" keygen --token "emulated:$state" --slot 9c --alg p256 \
  --pin-policy never --touch-policy never >/dev/null 2>&1
"$bindir/signer-daemon" serve --token "emulated:$state" --socket "$work/s.sock" \
  --audit-log "$work/audit.jsonl" --log-level warn 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 1 100); do
  "$bindir/signerctl" --socket "$work/s.sock" health >/dev/null 2>&1 && break
  sleep 0.1
done
echo "p256, PIN never, touch never, audit fsync per batch, $(nproc) cores"
echo -n "1 client:    "
"$bindir/signerctl" --socket "$work/s.sock" bench --key 9c --clients 1 --requests $((clients * per / 8))
echo -n "$clients clients: "
"$bindir/signerctl" --socket "$work/s.sock" bench --key 9c --clients "$clients" --requests "$per"
kill -TERM "$pid"; wait "$pid"; pid=""
