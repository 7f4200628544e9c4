#!/usr/bin/env bash
# Fuzz the emulated YubiKey's APDU front end for a bounded time.
#
#   tests/scripts/fuzz.sh [SECONDS]      (default 300)
#
# Runs the cargo-fuzz target `apdu_front_end` (signer-lib/fuzz, outside the
# workspace members) on the nightly toolchain with one libFuzzer job. The
# corpus lives in signer-lib/fuzz/corpus/apdu_front_end and is seeded from
# the APDU test vectors (signer-lib/src/emulator/apdu/testdata/*.apdu). A
# crash stops the run with a non-zero exit; its input is saved under
# signer-lib/fuzz/artifacts/apdu_front_end/ (replay it with
# `cargo +nightly fuzz run apdu_front_end FILE` in signer-lib/fuzz).
# Not part of run-tests.sh: it needs nightly and minutes of CPU.
set -euo pipefail
seconds="${1:-300}"
case "$seconds" in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "$0")/../.." && pwd)"
fuzz="$root/signer-lib/fuzz"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "fuzz.sh: python3 is missing (it seeds the corpus from the test vectors)" >&2
  exit 1
fi

# Start from the workspace's resolved versions (cargo prunes the rest).
[ -e "$fuzz/Cargo.lock" ] || cp "$root/Cargo.lock" "$fuzz/Cargo.lock"

corpus="$fuzz/corpus/apdu_front_end"
mkdir -p "$corpus"
# Seeds: each test script as one input (options byte, then u16-length
# records; FFFF is a power cycle). See fuzz_targets/apdu_front_end.rs.
python3 - "$root/signer-lib/src/emulator/apdu/testdata" "$corpus" <<'PY'
import pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def expand(text):
    b = bytearray()
    for w in text.split():
        if '*' in w:
            byte, n = w.split('*')
            b += bytes([int(byte, 16)]) * int(n)
        else:
            b += bytes.fromhex(w)
    return bytes(b)
for path in sorted(src.glob('*.apdu')):
    seeds, records, options = [], [], 0
    def flush():
        if records:
            seeds.append(bytes([options]) + b''.join(records))
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith('! card'):
            flush()
            records, options = [], (1 if 'tdes' in line else 0)
        elif line == '! reset':
            records.append(b'\xff\xff')
        elif line == '! authenticate':
            options |= 2 | 4
        elif line.startswith('>'):
            cmd = expand(line[1:])
            records.append(len(cmd).to_bytes(2, 'big') + cmd)
    flush()
    for i, seed in enumerate(seeds):
        (out / f'seed-{path.stem}-{i}').write_bytes(seed)
PY

cd "$fuzz"
echo "fuzz.sh: fuzzing apdu_front_end for ${seconds}s (corpus $corpus)" >&2
exec cargo +nightly fuzz run apdu_front_end "$corpus" -- \
  -max_total_time="$seconds" -max_len=16384 -print_final_stats=1
