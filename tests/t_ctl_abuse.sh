#!/usr/bin/env bash
# Issue 9, acceptance: the control socket under abuse while a live migration of a running
# guest is in progress — 50 clients that hang up before their reply, 3 silent clients, fd:
# URIs (by number, and with descriptors while a migration runs), a 10 MB line, garbage JSON.
# Both VMs survive, `query` answers within 1 s throughout, the migration completes and
# verifies (digests equal at the switchover, page pattern intact, the guest runs on at the
# destination).  Then, on a second migration (the guest moving on), under the same abuse,
# `cancel` is answered within 1 s and the guest keeps running where it was.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" abuse
alive() { kill -0 "$1" 2>/dev/null || fail "$2 died"; }
T0=$(date +%s.%N)
mark() { awk -v a="$T0" -v b="$(date +%s.%N)" -v m="$*" 'BEGIN { printf "%6.2f s  %s\n", b - a, m }'; }
sw_field() { "$BIN" ctl "$1" query | sed 's/.*"switchover"://' | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr -d '"'; }

# abuse SOCK: everything at once, in the background; ABUSERS gets the pids.
abuse() {
	ABUSERS=()
	$PEER silent "$1" 3 8 >"$T/silent.out" 2>&1 & ABUSERS+=($!)
	$PEER hangup "$1" 50 >"$T/hangup.out" 2>&1 & ABUSERS+=($!)
	$PEER bigline "$1" $((10 * 1024 * 1024)) >"$T/bigline.out" 2>&1 & ABUSERS+=($!)
	$PEER garbage "$1" >"$T/garbage.out" 2>&1 & ABUSERS+=($!)
	"$BIN" ctl "$1" migrate fd:5,6 >"$T/fdnum.out" 2>&1 & ABUSERS+=($!)
	$PEER request "$1" '{"cmd":"migrate","uri":"fd:"}' --fd 0 --fd 1 >"$T/fdpass.out" 2>&1 & ABUSERS+=($!)
	PIDS+=("${ABUSERS[@]}")
}
# abused SOCK: the abusers got what they should have.
abused() {
	for p in "${ABUSERS[@]:1}"; do wait "$p"; done	# all but the silent ones
	grep -q "would name descriptors of the VM process" "$T/fdnum.out" || fail "fd:5,6: $(cat "$T/fdnum.out")"
	grep -q '"ok":false' "$T/fdpass.out" || fail "fd: with descriptors during a migration: $(cat "$T/fdpass.out")"
	grep -q 'line too long\|sending stopped' "$T/bigline.out" || fail "10 MB line: $(cat "$T/bigline.out")"
	[ "$(grep -c '"ok":false' "$T/garbage.out")" -ge 16 ] || fail "garbage: $(cat "$T/garbage.out")"
}
quick_query() {	# SOCK: the reply within 1 s
	$PEER request "$1" '{"cmd":"query"}' --within 1 >"$T/q.out" || fail "query under abuse: $(cat "$T/q.out")"
}

# A small hot set, so that the capped migration converges in its second round.
VM=(--accel soft --mem 128M --workload dirty:2M)
vm_start src "${VM[@]}" --fill random; SRC=$LAST_PID
vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0; DST=$LAST_PID
wait_running "$T/src.sock"
uri=$(incoming_uri "$T/dst.sock") || exit 1

# 1. A migration that completes under abuse (capped: it takes about 2 s).
"$BIN" ctl "$T/src.sock" migrate "$uri" --max-bandwidth 64M >/dev/null || fail "migrate refused"
abuse "$T/src.sock"
mark "migration started, abuse started"
during=0
for _ in 1 2 3; do
	quick_query "$T/src.sock"
	grep -q '"status":"active"' "$T/q.out" && during=$((during + 1)) && mark "query answered during the migration"
	quick_query "$T/dst.sock"
done
[ $during -ge 1 ] || fail "the migration ended before the abuse could be checked"
mark "queries answered"
abused "$T/src.sock"
mark "abusers done"
[ "$(wait_final "$T/src.sock")" = completed ] || fail "the migration under abuse: $("$BIN" ctl "$T/src.sock" query | cut -c1-400)"
alive $SRC "the source"; alive $DST "the destination"
wait_running "$T/dst.sock"
for _ in $(seq 50); do [ -n "$(sw_field "$T/dst.sock" digest)" ] && break; sleep 0.1; done
ds=$(sw_field "$T/src.sock" digest); dd=$(sw_field "$T/dst.sock" digest)
[ -n "$ds" ] && [ "$ds" = "$dd" ] || fail "digests differ: source $ds, destination $dd"
[ "$(sw_field "$T/dst.sock" pattern_ok)" = true ] || fail "the page pattern broke"
mark "migration under abuse: completed, digest $dd on both sides, pattern ok"

# 2. The guest moves on; under the same abuse, cancel is answered within 1 s.
vm_start dst2 "${VM[@]}" --incoming tcp:127.0.0.1:0; DST2=$LAST_PID
uri2=$(incoming_uri "$T/dst2.sock") || exit 1
"$BIN" ctl "$T/dst.sock" migrate "$uri2" --max-bandwidth 16M >/dev/null || fail "second migrate refused"
abuse "$T/dst.sock"
quick_query "$T/dst.sock"
$PEER request "$T/dst.sock" '{"cmd":"cancel"}' --within 1 >"$T/c.out" || fail "cancel under abuse: $(cat "$T/c.out")"
grep -q '"ok":true' "$T/c.out" || fail "cancel refused: $(cat "$T/c.out")"
mark "cancel answered"
abused "$T/dst.sock"
mark "abusers done"
[ "$(wait_final "$T/dst.sock")" = cancelled ] || fail "after cancel: $(mig_status "$T/dst.sock")"
wait_running "$T/dst.sock"
alive $DST "the guest's VM"
mark "cancel under abuse: answered within 1 s, the guest runs on"
