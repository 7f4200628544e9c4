#!/usr/bin/env bash
# The reliability suite (issue 12) in one command, with its summary table.
#
#   tests/scripts/reliability.sh                 the CI-sized suite (minutes)
#   tests/scripts/reliability.sh --long          + the 100,000-signature soak
#                                                  and every fuzz target
#   options: --fuzz-seconds N   libFuzzer time per target with --long (default 120)
#            --soak-signatures N  the soak's size with --long (default 100000)
#
# Runs every reliability test file with `-- --nocapture`:
#   tests/tests/reliability_*.rs          (crate signer-e2e)
#   signer-lib/tests/reliability_*.rs     (crate signer-lib)
#   signer-daemon/tests/reliability_*.rs  (crate signer-daemon)
# Each case prints `RELIABILITY<TAB>group<TAB>case<TAB>PASS|FAIL<TAB>figures`
# (groups fault, crash, audit, hostile, load); this script collects those
# lines and prints one row per case and the totals: faults survived, hostile
# inputs tried, load held, records lost (the sum of every `lost=N` figure,
# which must be 0). The same tests run in CI through the README's test
# command (cargo test --workspace); this script adds the table and, with
# --long, the parts too long for CI:
#   - load_soak_100k (tests/tests/reliability_soak.rs, ignored by default):
#     64 clients, >= 100,000 signatures; about 4 minutes on 2 cores (debug
#     daemon, ~450 signatures/s);
#   - tests/scripts/fuzz.sh: each cargo-fuzz target for --fuzz-seconds
#     (6 targets: 12 minutes at the default 120 s); needs the nightly
#     toolchain and cargo-fuzz.
# Needs what the tests need (tests/scripts/install-deps.sh; root for the
# private pcscd and the tmpfs cases). Logs: target/reliability/*.log.
# Exit status: 0 only when every test run passed, no case failed, at least
# one case ran, and no record was lost.
set -euo pipefail
cd "$(dirname "$0")/../.."

long=0
fuzz_seconds=120
soak_signatures=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --long) long=1 ;;
    --fuzz-seconds) fuzz_seconds="${2:?--fuzz-seconds needs a number}"; shift ;;
    --soak-signatures) soak_signatures="${2:?--soak-signatures needs a number}"; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "reliability.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for n in "$fuzz_seconds" "$soak_signatures"; do
  case "$n" in ''|*[!0-9]*) echo "reliability.sh: '$n' is not a whole number" >&2; exit 2 ;; esac
done

logs=target/reliability
mkdir -p "$logs"
rm -f "$logs"/*.log
export SIGNER_REQUIRE_PCSC=1
failed_runs=()
declare -a durations=()
last_status=0

# run NAME CMD...: run one part, log it, remember its duration and status.
run() {
  local name="$1"; shift
  local start=$SECONDS status=0
  echo "== $name: $*" >&2
  "$@" >"$logs/$name.log" 2>&1 </dev/null || status=$?
  last_status=$status
  durations+=("$(printf '%-28s %5ss  exit %s' "$name" "$((SECONDS - start))" "$status")")
  if [ "$status" -ne 0 ]; then
    failed_runs+=("$name")
    echo "   FAILED (exit $status): $logs/$name.log" >&2
    tail -n 25 "$logs/$name.log" | sed 's/^/   | /' >&2
  fi
}

# The daemon binaries the end-to-end tests start.
run build cargo build --locked -p signer-daemon --bins

# One cargo invocation per crate, every reliability_*.rs of that crate.
for spec in "signer-e2e:tests/tests" "signer-lib:signer-lib/tests" "signer-daemon:signer-daemon/tests"; do
  crate="${spec%%:*}" dir="${spec#*:}"
  args=()
  for f in "$dir"/reliability_*.rs; do
    [ -e "$f" ] || continue
    args+=(--test "$(basename "$f" .rs)")
  done
  [ ${#args[@]} -gt 0 ] || continue
  run "$crate" cargo test --locked --no-fail-fast -p "$crate" "${args[@]}" -- --nocapture
done

if [ "$long" -eq 1 ]; then
  SIGNER_SOAK_SIGNATURES="$soak_signatures" \
    run soak_long cargo test --locked -p signer-e2e --test reliability_soak -- --ignored --nocapture load_soak_100k
  # fuzz.sh prints a RELIABILITY line per target (hostile fuzz_TARGET).
  run fuzz tests/scripts/fuzz.sh "$fuzz_seconds"
fi

# Collect the lines (a line may follow libtest's "test NAME ... " on the same
# output line when tests run in parallel with --nocapture).
lines="$logs/lines.tsv"
cat "$logs"/*.log | grep -ao $'RELIABILITY\t.*' >"$lines" || true

# Tests that failed (libtest's closing "failures:" list; a test that
# failed before printing its line shows up here only).
failed_tests="$(cat "$logs"/*.log | awk '
  /^failures:$/ { inblk = 1; next }
  inblk && /^    [A-Za-z0-9_:]+$/ { print $1; next }
  { inblk = 0 }' | sort -u)"

echo
echo "Reliability suite ($([ "$long" -eq 1 ] && echo "long: soak $soak_signatures signatures, fuzz ${fuzz_seconds}s per target" || echo "CI-sized; --long adds the soak and the fuzzers"))"
echo
awk -F'\t' '{ printf "%-8s %-52s %-4s %s\n", $2, $3, $4, $5 }' "$lines"
echo
awk -F'\t' -v failed_runs="${#failed_runs[@]}" '
  function add_lost(figs,   n, a, i) {
    n = split(figs, a, /[ ,;]+/)
    for (i = 1; i <= n; i++) if (a[i] ~ /^lost=[0-9]+$/) lost += substr(a[i], 6) + 0
  }
  function runs(figs,   n, a, i) {
    n = split(figs, a, /[ ,;]+/)
    for (i = 1; i <= n; i++) if (a[i] ~ /^runs=[0-9]+$/) return substr(a[i], 6) + 0
    return 1
  }
  {
    total++; g = $2; cases[g]++
    if ($4 == "PASS") pass[g]++; else fail++
    if (g == "hostile") inputs += runs($5)
    add_lost($5)
  }
  END {
    fs = cases["fault"] + cases["crash"] + cases["audit"]
    fp = pass["fault"] + pass["crash"] + pass["audit"]
    printf "%-22s %s\n", "faults survived:", fp "/" fs " cases (fault " pass["fault"]+0 "/" cases["fault"]+0 ", crash " pass["crash"]+0 "/" cases["crash"]+0 ", audit " pass["audit"]+0 "/" cases["audit"]+0 ")"
    printf "%-22s %s\n", "hostile inputs tried:", inputs+0 " inputs in " cases["hostile"]+0 " cases, " pass["hostile"]+0 " passed"
    printf "%-22s %s\n", "load held:", pass["load"]+0 "/" cases["load"]+0 " cases"
    printf "%-22s %s\n", "records lost:", lost+0 " (must be 0)"
    printf "%-22s %s\n", "failed cases:", fail+0
    printf "%-22s %s\n", "failed test runs:", failed_runs " (cargo test or fuzz.sh exited non-zero)"
    ok = (total > 0 && fail == 0 && lost == 0 && failed_runs == 0)
    exit ok ? 0 : 1
  }' "$lines" && status=0 || status=1
echo
echo "Durations:"
printf '  %s\n' "${durations[@]}"
if [ -n "$failed_tests" ]; then
  echo "Failed tests:"
  printf '  %s\n' $failed_tests
  status=1
fi
if [ ${#failed_runs[@]} -gt 0 ]; then
  echo "Failed runs: ${failed_runs[*]} (logs in $logs/)"
fi
if [ ! -s "$lines" ]; then
  echo "reliability.sh: no RELIABILITY line was printed: nothing was tested" >&2
fi
exit "$status"
