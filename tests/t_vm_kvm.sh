#!/usr/bin/env bash
# tinyvm on KVM: the dirty workload on 2 vCPUs for about 2 s (16 MiB, so a sweep is quick);
# the pattern verifies, each vCPU completed at least 2 sweeps, COM1 printed every sweep in
# order; the idle guest costs nothing and pauses; throttling slows the guest.
# Skips (77) when KVM is unavailable.
set -u
BIN=${MFD_BUILD:-build}/multifd
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" vm run --accel kvm --mem 64M --vcpus 2 --workload dirty:16M --fill pattern \
	--duration 2 --serial "$T/serial" >"$T/out" 2>"$T/err"
rc=$?
cat "$T/err" "$T/out"
[ $rc = 77 ] && { echo "KVM unavailable: skipped"; exit 77; }
[ $rc = 0 ] || fail "vm run exited $rc"
grep -q '^tinyvm: accel kvm$' "$T/err" || fail "accel not reported"
line=$(grep '^tinyvm: accel=kvm' "$T/out") || fail "no summary"
[[ $line == *verify=ok* ]] || fail "pattern did not verify"
sweeps=$(sed -n 's/.* sweeps=\([0-9,]*\) .*/\1/p' <<<"$line")
IFS=, read -r s0 s1 <<<"$sweeps"
[ "${s0:-0}" -ge 2 ] && [ "${s1:-0}" -ge 2 ] || fail "fewer than 2 sweeps per vCPU: $sweeps"
# Only complete lines count: a line the guest was printing when the VM stopped is flushed as
# it stands, without its newline.
if [ "$(tail -c 1 "$T/serial" | od -An -tx1 | tr -d ' \n')" = 0a ]; then
	cp "$T/serial" "$T/serial.complete"
else
	head -n -1 "$T/serial" >"$T/serial.complete"
fi
for i in 0 1; do
	grep "^cpu$i sweep " "$T/serial.complete" | awk -v i="$i" '
		{ n++; if ($3 != n) { print "cpu" i ": line " n " says " $3; exit 1 } }
		END { if (n < 2) { print "cpu" i ": only " n " lines"; exit 1 } }' ||
		fail "serial log of vCPU $i"
done
[ "$(grep -cv '^cpu[01] sweep [0-9]*$' "$T/serial.complete")" = 0 ] || fail "garbled serial lines"

# idle: 2 vCPUs halted with interrupts on; runs (does not count as powered off) and pauses.
"$BIN" vm run --accel kvm --mem 16M --vcpus 2 --workload idle --duration 0.5 >"$T/out" 2>&1 ||
	{ cat "$T/out"; fail "idle run"; }
grep -q 'workload=idle .*state=paused' "$T/out" || { cat "$T/out"; fail "idle summary"; }

# throttle 90% must be much slower than the unthrottled run above.
rate() { sed -n 's/.* sweeps_per_s=\([0-9.]*\) .*/\1/p' <<<"$1"; }
"$BIN" vm run --accel kvm --mem 64M --vcpus 2 --workload dirty:16M --duration 1 \
	--serial /dev/null --throttle 90 >"$T/slow" 2>/dev/null || fail "throttled run"
grep -q verify=ok "$T/slow" || fail "throttled run did not verify"
slow=$(grep '^tinyvm: accel=kvm' "$T/slow")
echo "$slow"
awk -v f="$(rate "$line")" -v s="$(rate "$slow")" 'BEGIN { exit !(s < f * 0.5) }' ||
	fail "throttle 90: $(rate "$slow") sweeps/s vs $(rate "$line") unthrottled"
echo "ok"
