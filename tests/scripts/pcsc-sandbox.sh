#!/usr/bin/env bash
# A private pcscd with vpcd virtual readers that leaves the machine's own
# pcscd alone (root: it uses `unshare --mount` and a bind mount over
# /run/pcscd). Builds and runs the `pcsc-sandbox` binary of tests/.
#
#   eval "$(tests/scripts/pcsc-sandbox.sh start [--readers N] [--name NAME] [--two-slot-vpcd])"
#       starts it and exports PCSCLITE_CSOCK_NAME (for PC/SC clients),
#       SIGNER_PCSC_SANDBOX (its directory), SIGNER_VPCD (reader 0's vpcd
#       address, read by `signer-daemon emulate-card`), SIGNER_PCSC_READER
#       (reader 0's name), SIGNER_VPCD_<i> and SIGNER_PCSC_READER_<i> for
#       every reader i. Default: one reader "Yubico YubiKey OTP+FIDO+CCID 00 00"
#       (as a plugged-in YubiKey 5), served by the one-slot vpcd driver of
#       tests/scripts/vpcd-one-slot.sh; --name chooses the name, --readers
#       more readers ("NAME 1 00 00", ...), --two-slot-vpcd Debian's driver.
#   tests/scripts/pcsc-sandbox.sh status  [DIR]   readers, ports, pcscd state
#   tests/scripts/pcsc-sandbox.sh restart [DIR]   restart its pcscd (same ports)
#   tests/scripts/pcsc-sandbox.sh stop    [DIR]   stop pcscd, remove everything
#
# DIR defaults to $SIGNER_PCSC_SANDBOX.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p signer-e2e --bin pcsc-sandbox >&2
target="${CARGO_TARGET_DIR:-$root/target}"
exec "$target/debug/pcsc-sandbox" "$@"
