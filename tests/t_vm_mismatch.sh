#!/usr/bin/env bash
# Issue 9 item 8: a destination configured otherwise (vCPU count, workload) than the source is
# found out before any page moves, and both sides name the real cause (the VM's configuration,
# not the RAM block table); the source guest keeps running, and a matching destination then
# takes the migration.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" mismatch
pages_moved() { "$BIN" ctl "$1" query | grep -o '"normal_pages":[0-9]*' | head -n 1 | cut -d: -f2; }

vm_start src --accel soft --mem 64M --vcpus 2 --workload dirty:4M
wait_running "$T/src.sock"
n=0
for dest in "--vcpus 1 --workload dirty:4M" "--vcpus 2 --workload idle"; do
	n=$((n + 1))
	# shellcheck disable=SC2086
	vm_start "d$n" --accel soft --mem 64M $dest --incoming tcp:127.0.0.1:0
	uri=$(incoming_uri "$T/d$n.sock")
	out=$("$BIN" ctl "$T/src.sock" migrate "$uri" --wait 2>&1) && fail "migration to a VM with $dest succeeded"
	grep -q "device tinyvm.0 is 'tinyvm accel=soft vcpus=2 workload=dirty:4194304' on the source" <<<"$out" ||
		fail "the source's error does not name the configurations: $out"
	grep -qi "block" <<<"$out" && fail "the source blames the RAM blocks: $out"
	for _ in $(seq 50); do grep -q "incoming migration failed" "$T/d$n.log" && break; sleep 0.1; done
	grep -q "vcpus=2 workload=dirty:4194304' on the source" "$T/d$n.log" ||
		fail "the destination does not name the configurations: $(cat "$T/d$n.log")"
	[ "$(pages_moved "$T/src.sock")" = 0 ] || fail "pages moved before the refusal"
	echo "refused before any page moved: $(grep -o "device tinyvm.0 is.*here" <<<"$out" | head -n 1)"
done
wait_running "$T/src.sock"
vm_start ok --accel soft --mem 64M --vcpus 2 --workload dirty:4M --incoming tcp:127.0.0.1:0
"$BIN" ctl "$T/src.sock" migrate "$(incoming_uri "$T/ok.sock")" --wait >"$T/ok.json" ||
	fail "the matching destination: $(cat "$T/ok.json")"
echo "the matching destination took it"
exit 0
