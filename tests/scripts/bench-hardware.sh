#!/usr/bin/env bash
# Signatures per second, side by side in one run (release build): the
# emulated token in-process, the hardware backend (our PIV client) over the
# in-process loopback transport, and the hardware backend through a private
# pcscd + vpcd to the emulated YubiKey. Needs root (private pcscd).
# Usage: tests/scripts/bench-hardware.sh [SIGNATURES]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p signer-e2e --bin hardware-bench >&2
exec "${CARGO_TARGET_DIR:-target}/release/hardware-bench" "${1:-500}"
