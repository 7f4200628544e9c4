#!/usr/bin/env bash
# The main job: create an emulated token, generate a key, sign a file,
# verify the signature with openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh
echo "main-job: not implemented yet" >&2
exit 1
