#!/usr/bin/env bash
# Fuzz every cargo-fuzz target for a bounded time.
#
#   tests/scripts/fuzz.sh [SECONDS] [TARGET]     (default 300 seconds, every target)
#
# Targets (each SECONDS of libFuzzer with one job, one after the other):
#   signer-lib/fuzz     apdu_front_end   the emulated YubiKey's APDU front end
#                       piv_responses    the PIV client against a card whose answers are rewritten
#                       tlv              the BER-TLV parser used on card responses
#                       attestation      attestation certificate parsing and verification
#   signer-daemon/fuzz  request_validation  the daemon's request checks (zero APDUs when refused)
#                       policy_file      the configuration / policy file parser
# Both fuzz crates are outside the workspace members. The harnesses live in
# */fuzz/harness/ and also run on seeded random input in the normal test
# suite (signer-lib/tests/reliability_malicious_card.rs,
# reliability_seeded_parsers.rs, signer-daemon/tests/reliability_seeded_requests.rs),
# so their checks hold in CI without a nightly toolchain.
#
# Corpora: */fuzz/corpus/TARGET, seeded here. A crash stops the run with a
# non-zero exit; its input is under */fuzz/artifacts/TARGET/. Make it a
# regression test: add its bytes to REGRESSIONS in the seeded test named
# above, fix the defect, and replay it with
# `cargo +nightly fuzz run TARGET FILE` in the fuzz crate's directory.
# Needs the nightly toolchain and cargo-fuzz (installed here with
# `cargo install cargo-fuzz --locked` when missing). Not part of
# run-tests.sh: it needs minutes of CPU.
set -euo pipefail
seconds="${1:-300}"
only="${2:-}"
case "$seconds" in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "$0")/../.." && pwd)"
lib_fuzz="$root/signer-lib/fuzz"
daemon_fuzz="$root/signer-daemon/fuzz"

declare -A crate_of=(
  [apdu_front_end]="$lib_fuzz"
  [piv_responses]="$lib_fuzz"
  [tlv]="$lib_fuzz"
  [attestation]="$lib_fuzz"
  [request_validation]="$daemon_fuzz"
  [policy_file]="$daemon_fuzz"
)
order=(apdu_front_end piv_responses tlv attestation request_validation policy_file)
if [ -n "$only" ]; then
  if [ -z "${crate_of[$only]:-}" ]; then
    echo "fuzz.sh: unknown target '$only' (targets: ${order[*]})" >&2
    exit 2
  fi
  order=("$only")
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  echo "fuzz.sh: the same harnesses run seeded in the normal tests (see the header of this script)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "fuzz.sh: python3 is missing (it seeds the corpora)" >&2
  exit 1
fi

# Start from the workspace's resolved versions (cargo prunes the rest).
for crate in "$lib_fuzz" "$daemon_fuzz"; do
  [ -e "$crate/Cargo.lock" ] || cp "$root/Cargo.lock" "$crate/Cargo.lock"
done

seed() {
  local target="$1" corpus="$2"
  case "$target" in
    apdu_front_end)
      # Each test script as one input (options byte, then u16-length
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
      ;;
    piv_responses)
      # Operation byte, then control bytes: honest answers (00), then one
      # rewrite per kind at the third response.
      python3 - "$corpus" <<'PY'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
for op in range(8):
    (out / f'seed-op{op}-honest').write_bytes(bytes([op]))
    for kind in range(0xa0, 0xab):
        (out / f'seed-op{op}-{kind:02x}').write_bytes(bytes([op, 0, 0, kind, 3, 7, 0x7c, 0x7d]))
PY
      ;;
    tlv)
      python3 - "$corpus" <<'PY'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
seeds = {
    'ga': bytes.fromhex('7c0a8208' + '30060201010201 01'.replace(' ', '')),
    'metadata': bytes.fromhex('010111020201010301010404' + '86020001'),
    'get-data': bytes.fromhex('53820004' + '70020000'),
    'long': bytes.fromhex('5f c1 05 82 01 00'.replace(' ', '')) + b'\x00' * 256,
    'nested': bytes.fromhex('7f49058603010203'),
}
for name, data in seeds.items():
    (out / f'seed-{name}').write_bytes(data)
PY
      ;;
    attestation)
      python3 - "$root/signer-lib/testdata/attestation" "$corpus" <<'PY'
import base64, pathlib, re, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def der(name):
    text = (src / name).read_text()
    body = re.search(r'-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----', text, re.S).group(1)
    return base64.b64decode(''.join(body.split()))
f9 = der('yubikey-5-fips-f9.pem')
for name in ['yubikey-5-fips-9a-p256.pem', 'yubikey-5-fips-9c-rsa2048.pem']:
    slot = der(name)
    (out / f'seed-{name}').write_bytes(len(slot).to_bytes(2, 'big') + slot + f9)
PY
      ;;
    request_validation)
      # Structured requests (selector high bit): hash, format, key kind,
      # key bytes, serial, input kind, input length, input.
      python3 - "$corpus" <<'PY'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
for i, (hash_, fmt, key_kind, input_kind, n) in enumerate([
    (1, 1, 3, 1, 32), (2, 1, 3, 1, 48), (3, 2, 3, 2, 10), (0, 1, 3, 1, 32),
    (1, 0, 4, 1, 32), (1, 1, 2, 1, 31), (1, 1, 5, 0, 0), (9, 9, 0, 1, 32),
]):
    body = bytes([0x80, 3, hash_, 3, fmt, key_kind, 0, 0, input_kind, n]) + bytes(range(n))
    (out / f'seed-structured-{i}').write_bytes(body)
PY
      ;;
    policy_file)
      python3 - "$corpus" <<'PY'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
(out / 'seed-readme').write_text('''queue_capacity = 256
max_request_bytes = 1048576
[[rule]]
name = "tuf-root-signers"
users = ["root", 1001]
groups = [0]
operations = ["list", "sign", "attest"]
keys = ["9c", "12345678:9a", "3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c3f0c"]
effect = "allow"

[[rule]]
users = ["*"]
operations = ["*"]
keys = ["*"]
effect = "deny"
''')
(out / 'seed-minimal').write_text('[[rule]]\nusers = [65534]\noperations = ["list"]\nkeys = ["*"]\n')
PY
      ;;
  esac
}

status=0
for target in "${order[@]}"; do
  crate="${crate_of[$target]}"
  corpus="$crate/corpus/$target"
  mkdir -p "$corpus"
  seed "$target" "$corpus"
  max_len=4096
  [ "$target" = apdu_front_end ] && max_len=16384
  echo "fuzz.sh: fuzzing $target for ${seconds}s (corpus $corpus)" >&2
  # The patched h2 is a path dependency, so its lints are not capped as a
  # registry crate's are, and its own `cfg(fuzzing)` module lacks the docs
  # its `deny(missing_docs)` asks for: cap lints for the fuzz build.
  flags="${RUSTFLAGS:-}"
  [ "$crate" = "$daemon_fuzz" ] && flags="$flags --cap-lints=warn"
  if ! (cd "$crate" && RUSTFLAGS="$flags" cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=4096 -print_final_stats=1); then
    echo "fuzz.sh: $target FAILED; the crash input is in $crate/artifacts/$target/" >&2
    echo "RELIABILITY	hostile	fuzz_$target	FAIL	seconds=$seconds artifacts=$crate/artifacts/$target" 
    status=1
  else
    echo "RELIABILITY	hostile	fuzz_$target	PASS	seconds=$seconds corpus_files=$(find "$corpus" -type f | wc -l)"
  fi
done
exit "$status"
