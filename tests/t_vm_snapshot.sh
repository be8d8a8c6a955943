#!/usr/bin/env bash
# A running tinyvm guest saved to a mapped-ram snapshot (live, and stopped), checked with
# `multifd inspect`, and restored in new processes, eagerly and lazily: the guest continues
# from where it was saved (its sweep counter starts at the saved value and advances, and the
# workload's page pattern verifies).  --accel auto: KVM where it works, the soft guest elsewhere.
set -u
BIN=${MFD_BUILD:-build}/multifd
T=$(mktemp -d /tmp/mfd-t-vm-snap.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$T"/*.log; do echo "--- $f"; tail -n 5 "$f"; done; exit 1; }
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
sweep() { "$BIN" ctl "$1" query | grep -o '"sweeps":\[[0-9]*' | head -n 1 | grep -o '[0-9]*$'; }
VM=(--accel auto --mem 128M --workload dirty:32M)

"$BIN" vm run "${VM[@]}" --fill random --control "$T/a.sock" --serial "$T/a.serial" >"$T/a.log" 2>&1 &
PIDS+=($!)
wait_sock "$T/a.sock" || fail "the VM did not start"
for _ in $(seq 100); do [ "$(sweep "$T/a.sock")" -ge 2 ] 2>/dev/null && break; sleep 0.1; done

"$BIN" ctl "$T/a.sock" save "$T/live.snap" --live --wait >"$T/save.json" || fail "live save: $(cat "$T/save.json")"
saved=$(grep -o '"switchover":{[^}]*' "$T/save.json" | grep -o '"sweeps":\[[0-9]*' | grep -o '[0-9]*$')
[ -n "$saved" ] || fail "no switchover record after the save"
# The guest runs on after a save.
s1=$(sweep "$T/a.sock"); sleep 0.5; s2=$(sweep "$T/a.sock")
[ "$s2" -gt "$s1" ] || fail "the guest did not continue after the save ($s1 -> $s2)"
"$BIN" ctl "$T/a.sock" save "$T/stopped.snap" --wait >"$T/save2.json" || fail "stopped save"
"$BIN" ctl "$T/a.sock" quit >/dev/null

size=$(stat -c %s "$T/live.snap")
[ "$size" -le $((128 * 1024 * 1024 + 8 * 1024 * 1024)) ] || fail "file of $size bytes for 128 MiB of RAM"
"$BIN" inspect "$T/live.snap" --json >"$T/inspect.json" || fail "inspect: $(cat "$T/inspect.json")"
grep -q '"valid":true' "$T/inspect.json" && grep -q '"live":true' "$T/inspect.json" || fail "inspect says: $(cut -c1-300 "$T/inspect.json")"
"$BIN" inspect "$T/stopped.snap" >/dev/null || fail "inspect of the stopped save"
echo "saved at sweep $saved: $size bytes, valid"

for mode in eager lazy; do
	extra=(); [ $mode = lazy ] && extra=(--lazy)
	"$BIN" vm run "${VM[@]}" --restore "$T/live.snap" "${extra[@]}" --control "$T/$mode.sock" \
		--serial "$T/$mode.serial" >"$T/$mode.log" 2>&1 &
	PIDS+=($!)
	wait_sock "$T/$mode.sock" || fail "$mode restore did not start"
	a=$(sweep "$T/$mode.sock"); sleep 0.6; b=$(sweep "$T/$mode.sock")
	[ "$a" -ge "$saved" ] && [ "$b" -gt "$a" ] || fail "$mode restore: sweep $a -> $b (saved at $saved)"
	"$BIN" ctl "$T/$mode.sock" quit >/dev/null
	wait "${PIDS[-1]}"; rc=$?
	[ $rc = 0 ] || fail "$mode restore ended with $rc (pattern check)"
	grep -q "verify=ok" "$T/$mode.log" || fail "$mode restore: pattern not verified"
	echo "$mode restore: continued from sweep $a to $b; $(grep -o 'ready in [0-9.]* ms' "$T/$mode.log")"
done
# A snapshot that does not fit the VM is refused with a precise error.
"$BIN" vm run --accel auto --mem 64M --workload dirty:32M --restore "$T/live.snap" --duration 1 \
	>"$T/bad.log" 2>&1 && fail "a 64M VM accepted a 128M snapshot"
grep -q "restore:" "$T/bad.log" || fail "no reason given: $(cat "$T/bad.log")"
echo "mismatch refused: $(grep -o 'restore:.*' "$T/bad.log" | head -c 150)"
exit 0
