#!/usr/bin/env bash
# Issue 9, item 3: control clients are served concurrently.  While a live migration runs,
# silent clients (connected, nothing or half a line sent), a client that sends requests but
# never reads the replies, and more silent clients than there are client slots must not hold up
# anyone: `query` and then `cancel` each get their reply within 1 s, the migration ends
# cancelled, and the guest keeps running on the source.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" concurrent

VM=(--accel soft --mem 64M --workload dirty:16M)
vm_start src "${VM[@]}"; SRC=$LAST_PID
vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0
wait_running "$T/src.sock"
uri=$(incoming_uri "$T/dst.sock") || exit 1
# Slow enough (8 MiB/s for 64 MiB) that it is still running when we are done.
r=$("$BIN" ctl "$T/src.sock" migrate "$uri" --max-bandwidth 8M) || fail "migrate refused: $r"

$PEER silent "$T/src.sock" 3 20 >"$T/silent.log" 2>&1 &
PIDS+=($!)
$PEER noread "$T/src.sock" 100000 20 >"$T/noread.log" 2>&1 &
PIDS+=($!)
sleep 0.5
$PEER request "$T/src.sock" '{"cmd":"query"}' --within 1 >"$T/q1" || fail "query behind silent clients: $(cat "$T/q1")"
grep -q '"status":"active"' "$T/q1" || fail "the migration is not running: $(cut -c1-300 "$T/q1")"
# More silent clients than slots: the idlest give way, a new client still gets in.
$PEER silent "$T/src.sock" 20 20 >"$T/silent2.log" 2>&1 &
PIDS+=($!)
sleep 0.5
$PEER request "$T/src.sock" '{"cmd":"query"}' --within 1 >"$T/q2" || fail "query with every slot taken: $(cat "$T/q2")"
$PEER request "$T/src.sock" '{"cmd":"cancel"}' --within 1 >"$T/c" || fail "cancel: $(cat "$T/c")"
grep -q '"ok":true' "$T/c" || fail "cancel refused: $(cat "$T/c")"
st=$(wait_final "$T/src.sock")
[ "$st" = cancelled ] || fail "after cancel the migration is $st"
"$BIN" ctl "$T/src.sock" query | grep -q '"vm":"running"' || fail "the guest does not run on the source"
kill -0 $SRC || fail "the source died"
grep -q "stopped reading" "$T/noread.log" || fail "the non-reading client did not fill its socket: $(cat "$T/noread.log")"
echo "ok: query and cancel answered within 1 s behind $(( 3 + 20 )) silent clients and one that never reads"
