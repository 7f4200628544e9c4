#!/usr/bin/env bash
# The whole test suite: what README's second command and .ci/run execute.
# Installs missing system packages (as root), then runs formatting and lint
# checks and every test, including the ones that need a private pcscd.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh
export SIGNER_REQUIRE_PCSC=1   # tests needing pcscd fail (never skip) if it cannot run
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Build first: cargo test does not produce cdylib artifacts, and the PKCS#11
# module's tests load target/debug/libsigner_pkcs11.so (and the e2e tests run
# the workspace's binaries).
cargo build --workspace --locked
cargo test --workspace --locked </dev/null
