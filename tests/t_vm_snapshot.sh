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
	if [ $mode = lazy ]; then	# its pages were checked in the background meanwhile
		grep -q "background check of .*pages good" "$T/$mode.log" ||
			fail "lazy restore: no background check: $(cat "$T/$mode.log")"
	fi
	echo "$mode restore: continued from sweep $a to $b; $(grep -o 'ready in [0-9.]* ms' "$T/$mode.log")"
done
# A page flipped on disk: inspect --verify and an eager restore name it; a lazy restore starts
# and its background check reports it.
cp "$T/live.snap" "$T/bad.snap"
# The 8th present page of the first block (its bitmap says which), one bit flipped.
page=$(python3 -c 'import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(128 + 272); bm = struct.unpack("<Q", f.read(8))[0]
    f.seek(128 + 288); pages = struct.unpack("<Q", f.read(8))[0]
    f.seek(128 + 260); ps = struct.unpack("<I", f.read(4))[0]
    f.seek(bm); bits = f.read(4096)
    present = [i for i in range(len(bits) * 8) if bits[i // 8] >> (i % 8) & 1]
    p = present[7]; o = pages + p * ps + 100
    f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 0x20]))
    print(p)' "$T/bad.snap")
"$BIN" inspect --verify "$T/bad.snap" >"$T/verify.out" && fail "inspect --verify passed a flipped page"
grep -q "page $page (file offset" "$T/verify.out" || fail "inspect --verify: $(cat "$T/verify.out")"
"$BIN" vm run "${VM[@]}" --restore "$T/bad.snap" --duration 1 >"$T/badeager.log" 2>&1 &&
	fail "an eager restore took a flipped page"
grep -q "page $page (file offset" "$T/badeager.log" || fail "eager restore: $(cat "$T/badeager.log")"
"$BIN" vm run "${VM[@]}" --restore "$T/bad.snap" --lazy --duration 1 >"$T/badlazy.log" 2>&1
grep -q "background check of .*page $page (file offset" "$T/badlazy.log" ||
	fail "lazy restore: the flipped page was not reported: $(cat "$T/badlazy.log")"
echo "page $page flipped: named by inspect --verify, refused by an eager restore, reported by a lazy one"
# A snapshot that does not fit the VM is refused with a precise error.
"$BIN" vm run --accel auto --mem 64M --workload dirty:32M --restore "$T/live.snap" --duration 1 \
	>"$T/bad.log" 2>&1 && fail "a 64M VM accepted a 128M snapshot"
grep -q "restore:" "$T/bad.log" || fail "no reason given: $(cat "$T/bad.log")"
echo "mismatch refused: $(grep -o 'restore:.*' "$T/bad.log" | head -c 150)"
exit 0
