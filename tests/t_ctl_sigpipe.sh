#!/usr/bin/env bash
# Issue 9, item 1: control clients that close before reading their reply never kill the VM
# (SIGPIPE).  Checked on a running guest, on a destination waiting for a migration, and on both
# while a live migration runs between them; each must still answer and the migration complete.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" sigpipe
alive() { kill -0 "$1" 2>/dev/null || { wait "$1"; fail "$2 died (exit $?)"; }; }

VM=(--accel soft --mem 64M --workload dirty:16M)
vm_start src "${VM[@]}"; SRC=$LAST_PID
vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0; DST=$LAST_PID
wait_running "$T/src.sock"

$PEER hangup "$T/src.sock" 20 || fail "hangup clients (source)"
$PEER hangup "$T/dst.sock" 20 || fail "hangup clients (destination)"
sleep 0.3
alive $SRC "the running guest"
alive $DST "the waiting destination"
"$BIN" ctl "$T/src.sock" query >/dev/null || fail "the source stopped answering"

uri=$(incoming_uri "$T/dst.sock") || exit 1
r=$("$BIN" ctl "$T/src.sock" migrate "$uri" --max-bandwidth 64M) || fail "migrate refused: $r"
for _ in 1 2 3; do
	$PEER hangup "$T/src.sock" 10 || fail "hangup clients during the migration"
	$PEER hangup "$T/dst.sock" 10 '{"cmd":"nosuch"}' || fail "hangup clients during the migration"
	sleep 0.1
done
st=$(wait_final "$T/src.sock")
[ "$st" = completed ] || fail "migration ended with $st"
alive $SRC "the source"
alive $DST "the destination"
"$BIN" ctl "$T/dst.sock" query | grep -q '"vm":"running"' || fail "the guest does not run on the destination"
$PEER hangup "$T/dst.sock" 5
sleep 0.2
alive $DST "the migrated guest"
echo "ok: both VMs survived 100 clients that hung up"
