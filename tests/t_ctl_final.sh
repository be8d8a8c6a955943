#!/usr/bin/env bash
# Issue 9, item 6: a migration or save shows a final status only once everything the reply
# reports for it exists.  A client querying as fast as it can must never see "completed"
# without the switchover record (the source's digest, taken after the session ended), and
# after a stopped save it must find the guest running again in the same reply.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" final

# 256 MiB: the digest after completion takes long enough to be seen missing.
VM=(--accel soft --mem 256M --workload dirty:16M)
vm_start src "${VM[@]}" --fill random
wait_running "$T/src.sock"

for round in 1 2; do
	"$BIN" ctl "$T/src.sock" save "$T/s$round.snap" >/dev/null || fail "save refused"
	$PEER watch "$T/src.sock" >"$T/save$round.out" || fail "save $round: $(tail -n 2 "$T/save$round.out")"
	grep -q '"status":"completed"' "$T/save$round.out" || fail "save $round: $(head -c 300 "$T/save$round.out")"
	grep -q '"vm":"running"' "$T/save$round.out" || fail "save $round completed with the guest not running yet"
done

vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0
uri=$(incoming_uri "$T/dst.sock") || exit 1
# Capped, so that the watcher is querying when it completes.
"$BIN" ctl "$T/src.sock" migrate "$uri" --max-bandwidth 384M >/dev/null || fail "migrate refused"
$PEER watch "$T/src.sock" >"$T/mig.out" || fail "migration: $(tail -n 2 "$T/mig.out")"
grep -q '"status":"completed"' "$T/mig.out" || fail "migration: $(head -c 300 "$T/mig.out")"
grep -o '"switchover":{[^}]*"digest":"[0-9a-f]*"' "$T/mig.out" >/dev/null || fail "no digest with completed"
echo "ok: $(tail -n 1 "$T/mig.out"); completed came with its switchover record every time"
