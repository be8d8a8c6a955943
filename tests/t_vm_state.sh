#!/usr/bin/env bash
# tinyvm device state: a paused guest's vCPU state is saved with vm_state_save, damaged copies
# are refused or handled safely, and the real buffer plus a copy of RAM is loaded into a second
# VM in the same process, which then runs on from where the first stopped: pattern verified at
# every pause, counters strictly higher, COM1 counters continuing without a gap.
# KVM (skipped with 77 when unavailable) and soft; dirty and idle.
set -u
BIN=${MFD_BUILD:-build}/multifd
fail() { echo "FAIL: $*"; exit 1; }
check() {	# args...
	local out rc
	out=$("$BIN" vm selftest-state "$@" 2>&1)
	rc=$?
	echo "$out"
	[ $rc = 0 ] || return $rc
	[[ $out == *result=ok* ]] || return 1
}

check --accel soft --mem 64M --vcpus 2 --workload dirty:16M --fill random || fail "soft dirty"
check --accel soft --mem 16M --vcpus 1 --workload idle || fail "soft idle"
check --accel kvm --mem 64M --vcpus 2 --workload dirty:16M --duration 0.6
rc=$?
[ $rc = 77 ] && { echo "KVM unavailable: kvm part skipped"; exit 0; }
[ $rc = 0 ] || fail "kvm dirty"
check --accel kvm --mem 64M --vcpus 3 --workload dirty:8M --duration 0.5 || fail "kvm 3 vCPUs"
check --accel kvm --mem 16M --vcpus 2 --workload idle || fail "kvm idle"
echo "ok"
