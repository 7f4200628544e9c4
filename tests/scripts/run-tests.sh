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
cargo test --workspace --locked </dev/null
