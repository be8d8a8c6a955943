#!/usr/bin/env bash
# Test runner: every tests/t_*.c program (built into BUILD/tests/), every tests/t_*.sh script,
# and every fuzz target replaying its checked-in corpus.  Exit codes: 0 pass, 77 skip, else fail.
# Each test gets a timeout (TEST_TIMEOUT seconds, default 120).  Ends with "N passed, N failed,
# N skipped" and exits non-zero when anything failed.
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TIMEOUT=${TEST_TIMEOUT:-120}
FILTER=${TESTS:-}
LOGDIR="$BUILD/test-logs"
mkdir -p "$LOGDIR"
export MFD_BUILD="$ROOT/$BUILD" MFD_ROOT="$ROOT"
pass=0 fail=0 skip=0 failed_names=""

run_one() {	# name, command...
	local name=$1; shift
	if [ -n "$FILTER" ] && [[ "$name" != *$FILTER* ]]; then return; fi
	local log="$LOGDIR/$name.log" start end rc
	start=$(date +%s.%N)
	timeout -k 5 "$TIMEOUT" "$@" >"$log" 2>&1 </dev/null
	rc=$?
	end=$(date +%s.%N)
	local secs
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	case $rc in
	0) pass=$((pass + 1)); printf '  PASS  %-32s %6ss\n' "$name" "$secs" ;;
	77) skip=$((skip + 1)); printf '  SKIP  %-32s %6ss  %s\n' "$name" "$secs" "$(tail -n 1 "$log")" ;;
	124|137) fail=$((fail + 1)); failed_names="$failed_names $name"
		printf '  FAIL  %-32s %6ss  (timed out after %ss)\n' "$name" "$secs" "$TIMEOUT" ;;
	*) fail=$((fail + 1)); failed_names="$failed_names $name"
		printf '  FAIL  %-32s %6ss  (exit %d)\n' "$name" "$secs" "$rc"
		sed 's/^/        | /' "$log" | tail -n 25 ;;
	esac
}

echo "Running tests ($BUILD)"
for t in "$BUILD"/tests/t_*; do
	[ -x "$t" ] || continue
	run_one "$(basename "$t")" "$t"
done
for t in tests/t_*.sh; do
	[ -f "$t" ] || continue
	run_one "$(basename "$t" .sh)" bash "$t"
done
for f in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	run_one "$n-corpus" "$f" "fuzz/corpus/${n#fuzz_}"
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
