#!/usr/bin/env bash
# Issue 9, item 5: a save leaves the guest in the run state it found it in.  A guest the
# operator paused (`ctl stop`) stays paused through a stopped save, a live save and a failed
# save (its sweep counter does not move); after `cont` a save lets it run on.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" save-paused
sweep() { "$BIN" ctl "$1" query | grep -o '"sweeps":\[[0-9]*' | head -n 1 | grep -o '[0-9]*$'; }
vm_state() { "$BIN" ctl "$1" query | grep -o '"vm":"[a-z]*"' | cut -d'"' -f4; }

vm_start src --accel soft --mem 64M --workload dirty:8M
S=$T/src.sock
wait_running "$S"
"$BIN" ctl "$S" stop >/dev/null || fail "stop"
before=$(sweep "$S")
for how in "" --live; do
	"$BIN" ctl "$S" save "$T/p$how.snap" $how --wait >"$T/save.out" || fail "save $how: $(cat "$T/save.out")"
	[ "$(vm_state "$S")" = paused ] || fail "a paused guest runs after a save $how"
done
"$BIN" ctl "$S" save "$T/no/such/dir/x.snap" --wait >"$T/save.out" && fail "a save into a missing directory succeeded"
grep -q '"status":"failed"' "$T/save.out" || fail "the failed save: $(cut -c1-300 "$T/save.out")"
[ "$(vm_state "$S")" = paused ] || fail "a paused guest runs after a failed save"
sleep 0.3
[ "$(sweep "$S")" = "$before" ] || fail "the paused guest advanced from sweep $before to $(sweep "$S")"
"$BIN" inspect "$T/p.snap" >/dev/null && "$BIN" inspect "$T/p--live.snap" >/dev/null || fail "the saves are not valid"
echo "paused guest: stayed paused at sweep $before through 3 saves"

"$BIN" ctl "$S" cont >/dev/null || fail "cont"
"$BIN" ctl "$S" save "$T/r.snap" --wait >/dev/null || fail "save of a running guest"
[ "$(vm_state "$S")" = running ] || fail "a running guest is $(vm_state "$S") after a save"
a=$(sweep "$S"); sleep 0.3; b=$(sweep "$S")
[ "$b" -gt "$a" ] || fail "the guest does not run on after a save ($a -> $b)"
echo "running guest: runs on after a save ($a -> $b)"
