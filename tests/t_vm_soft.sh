#!/usr/bin/env bash
# tinyvm, soft backend (no KVM needed): the dirty workload runs on host threads for about a
# second, the pattern verifies, every vCPU's counter advanced and COM1 printed it in order;
# the idle workload pauses cleanly; throttling slows the guest; the CLI rejects bad options.
set -u
BIN=${MFD_BUILD:-build}/multifd
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --- dirty, 2 vCPUs, 1 s -------------------------------------------------------------------
"$BIN" vm run --accel soft --mem 64M --vcpus 2 --workload dirty:16M --fill random \
	--duration 1 --serial "$T/serial" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "vm run"; }
cat "$T/out"
grep -q '^tinyvm: accel soft$' "$T/err" || fail "accel not reported on stderr"
line=$(grep '^tinyvm: accel=soft' "$T/out") || fail "no summary"
[[ $line == *verify=ok* ]] || fail "pattern did not verify"
sweeps=$(sed -n 's/.* sweeps=\([0-9,]*\) .*/\1/p' <<<"$line")
serial=$(sed -n 's/.* serial=\([0-9,]*\) .*/\1/p' <<<"$line")
IFS=, read -r s0 s1 <<<"$sweeps"
IFS=, read -r p0 p1 <<<"$serial"
[ "${s0:-0}" -ge 10 ] && [ "${s1:-0}" -ge 10 ] || fail "counters did not advance: $sweeps"
# COM1 holds, per vCPU, the lines 1..n in order, and n is what the summary reports.
for i in 0 1; do
	want=$([ $i = 0 ] && echo "$p0" || echo "$p1")
	grep "^cpu$i sweep " "$T/serial" | awk -v w="$want" -v i="$i" '
		{ n++; if ($3 != n) { print "cpu" i ": line " n " says " $3; bad = 1; exit } }
		END { if (!bad && n != w) { print "cpu" i ": " n " lines, summary says " w; bad = 1 }
		      exit bad }' || fail "serial log of vCPU $i"
done
[ "$(grep -cv '^cpu[01] sweep [0-9]*$' "$T/serial")" = 0 ] || fail "garbled serial lines"

# --- idle: pauses after the duration, nothing to verify --------------------------------------
"$BIN" vm run --accel soft --mem 16M --vcpus 3 --workload idle --duration 0.3 >"$T/out" 2>&1 ||
	fail "idle run"
grep -q 'workload=idle .*state=paused' "$T/out" || { cat "$T/out"; fail "idle summary"; }

# --- throttle: 90% throttled must be much slower than unthrottled ----------------------------
rate() { sed -n 's/.* sweeps_per_s=\([0-9.]*\) .*/\1/p' "$1"; }
"$BIN" vm run --accel soft --mem 16M --workload dirty:4M --duration 0.5 --serial /dev/null \
	>"$T/fast" 2>/dev/null || fail "unthrottled run"
"$BIN" vm run --accel soft --mem 16M --workload dirty:4M --duration 0.5 --serial /dev/null \
	--throttle 90 >"$T/slow" 2>/dev/null || fail "throttled run"
grep -q verify=ok "$T/slow" || fail "throttled run did not verify"
awk -v f="$(rate "$T/fast")" -v s="$(rate "$T/slow")" 'BEGIN { exit !(s < f * 0.5) }' ||
	fail "throttle 90: $(rate "$T/slow") sweeps/s vs $(rate "$T/fast") unthrottled"

# --- the command line ---------------------------------------------------------------------
"$BIN" help vm | grep -q 'multifd vm run' || fail "help vm"
for bad in "--vcpus 0" "--vcpus 65" "--mem 1M" "--workload dirty:3000" "--workload busy" \
	   "--accel qemu" "--duration -1" "--throttle 100" "--workload dirty:64M --mem 64M"; do
	# shellcheck disable=SC2086
	"$BIN" vm run --accel soft $bad --duration 0.1 >/dev/null 2>"$T/err"
	rc=$?
	[ $rc = 2 ] || [ $rc = 1 ] || fail "'$bad' exited $rc"
	[ -s "$T/err" ] || fail "'$bad' gave no message"
done
"$BIN" vm run --accel soft --boot-sector /dev/null >/dev/null 2>&1 && fail "empty boot sector"
echo "ok"
