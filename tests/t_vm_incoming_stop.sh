#!/usr/bin/env bash
# Issue 9, item 4: `vm run --incoming` ends cleanly when told to while it waits: SIGTERM,
# SIGINT and `ctl quit` each end it within a second with a message saying why and status 0
# (nothing had arrived).  Stopped while a migration arrives, it cancels it and exits 1, and the
# source keeps its guest running.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" incoming-stop
# ended PID: waits up to 3 s for PID to exit; its status in rc.
ended() {
	for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$1" 2>/dev/null && fail "still running 3 s after being told to stop"
	wait "$1"; rc=$?
}
VM=(--accel soft --mem 32M --workload dirty:4M)

for sig in TERM INT; do
	vm_start d$sig "${VM[@]}" --incoming tcp:127.0.0.1:0
	incoming_uri "$T/d$sig.sock" >/dev/null
	kill -$sig $LAST_PID
	ended $LAST_PID
	[ "$rc" = 0 ] || fail "SIG$sig while waiting: exit $rc"
	grep -q "SIG$sig while waiting for a migration" "$T/d$sig.log" || fail "SIG$sig: $(cat "$T/d$sig.log")"
done
vm_start dquit "${VM[@]}" --incoming tcp:127.0.0.1:0
"$BIN" ctl "$T/dquit.sock" quit >/dev/null || fail "quit refused"
ended $LAST_PID
[ "$rc" = 0 ] || fail "quit while waiting: exit $rc: $(cat "$T/dquit.log")"
grep -q "quit requested while waiting" "$T/dquit.log" || fail "quit: $(cat "$T/dquit.log")"
echo "stopped while waiting: SIGTERM, SIGINT, quit: exit 0 with a reason"

# While a migration arrives (slowly: 4 MiB/s for 32 MiB).
vm_start src "${VM[@]}"
wait_running "$T/src.sock"
vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0
DST=$LAST_PID
uri=$(incoming_uri "$T/dst.sock") || exit 1
"$BIN" ctl "$T/src.sock" migrate "$uri" --max-bandwidth 4M >/dev/null || fail "migrate refused"
for _ in $(seq 50); do [ "$(mig_status "$T/dst.sock")" = active ] && break; sleep 0.1; done
[ "$(mig_status "$T/dst.sock")" = active ] || fail "the migration did not start arriving"
kill -TERM $DST
ended $DST
[ "$rc" = 1 ] || fail "SIGTERM during an incoming migration: exit $rc"
grep -q "SIGTERM during an incoming migration: migration canceled" "$T/dst.log" || fail "$(cat "$T/dst.log")"
[ "$(wait_final "$T/src.sock")" = failed ] || fail "the source's migration did not fail"
wait_running "$T/src.sock"
echo "stopped while a migration arrives: canceled, exit 1, the source runs on"
