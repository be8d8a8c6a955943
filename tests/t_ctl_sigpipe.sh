#!/usr/bin/env bash
# Issue 9, item 1: control clients that close before reading their reply never kill the VM
# (SIGPIPE).  Checked on a running guest, on a destination waiting for a migration, and on both
# while a live migration runs between them; each must still answer and the migration complete.
set -u
BIN=${MFD_BUILD:-build}/multifd
PEER="python3 ${MFD_ROOT:-.}/tests/ctlpeer.py"
T=$(mktemp -d /tmp/mfd-t-sigpipe.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$T"/*.log; do echo "--- $f"; tail -n 5 "$f"; done; exit 1; }
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
alive() { kill -0 "$1" 2>/dev/null || { wait "$1"; fail "$2 died (exit $?)"; }; }

VM=(--accel soft --mem 64M --workload dirty:16M)
"$BIN" vm run "${VM[@]}" --control "$T/src.sock" --serial /dev/null >"$T/src.log" 2>&1 &
SRC=$!; PIDS+=($SRC)
"$BIN" vm run "${VM[@]}" --control "$T/dst.sock" --incoming tcp:127.0.0.1:0 --serial /dev/null \
	>"$T/dst.log" 2>&1 &
DST=$!; PIDS+=($DST)
wait_sock "$T/src.sock" && wait_sock "$T/dst.sock" || fail "the VMs did not start"

$PEER hangup "$T/src.sock" 20 || fail "hangup clients (source)"
$PEER hangup "$T/dst.sock" 20 || fail "hangup clients (destination)"
sleep 0.3
alive $SRC "the running guest"
alive $DST "the waiting destination"
"$BIN" ctl "$T/src.sock" query >/dev/null || fail "the source stopped answering"

uri=$("$BIN" ctl "$T/dst.sock" query | sed -n 's/.*"incoming_uri":"\([^"]*\)".*/\1/p')
[ -n "$uri" ] || fail "no incoming address"
"$BIN" ctl "$T/src.sock" migrate "$uri" --max-bandwidth 64M >/dev/null || fail "migrate refused"
for _ in 1 2 3; do
	$PEER hangup "$T/src.sock" 10 || fail "hangup clients during the migration"
	$PEER hangup "$T/dst.sock" 10 '{"cmd":"nosuch"}' || fail "hangup clients during the migration"
	sleep 0.1
done
for _ in $(seq 200); do
	st=$("$BIN" ctl "$T/src.sock" query | grep -o '"status":"[a-z]*"' | head -n 1)
	case $st in *completed*|*failed*|*cancelled*) break ;; esac
	sleep 0.1
done
[ "$st" = '"status":"completed"' ] || fail "migration ended with $st"
alive $SRC "the source"
alive $DST "the destination"
"$BIN" ctl "$T/dst.sock" query | grep -q '"vm":"running"' || fail "the guest does not run on the destination"
$PEER hangup "$T/dst.sock" 5
sleep 0.2
alive $DST "the migrated guest"
echo "ok: both VMs survived 100 clients that hung up"
