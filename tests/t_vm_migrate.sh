#!/usr/bin/env bash
# Live migration of a running tinyvm guest between processes, driven through the control
# protocol (`multifd ctl`):
#  1. A -> B -> A: a dirty-workload guest hops from process A to B and on to a third process
#     (A's host again); after each hop the destination's RAM digest equals the source's at the
#     switchover, the workload's page pattern is intact, and the guest runs on (its sweep
#     counter advances).  Uses --accel auto: KVM where it works, the soft guest elsewhere.
#  2. A boot-sector guest written for the test (real mode -> protected mode -> a letter per
#     tick on the serial port) is migrated mid-run: source and destination serial logs
#     together read "real", "prot", then consecutive letters, none lost or repeated; run
#     without migrating, the output starts the same way.  Needs KVM (skipped otherwise).
set -u
BIN=${MFD_BUILD:-build}/multifd
SRC=${MFD_ROOT:-.}/tests/data/bootsect.S
T=$(mktemp -d /tmp/mfd-t-vm-migrate.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$T"/*.log; do echo "--- $f"; tail -n 5 "$f"; done; exit 1; }

q() { "$BIN" ctl "$1" query; }
field() { sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p" <<<"$1" | head -n 1; }
# The value of key inside the "switchover" object of a query reply.
sw() { local r; r=$(q "$1") || return 1; field "${r#*\"switchover\":}" "$2"; }
# The live counter of vCPU 0: the first "sweeps" array of the reply (the switchover one is later).
first_sweep() { local r; r=$(q "$1") && grep -o '"sweeps":\[[0-9]*' <<<"$r" | head -n 1 | grep -o '[0-9]*$'; }
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }

start_dest() {	# name, extra args...
	local n=$1; shift
	"$BIN" vm run --verify --control "$T/$n.sock" --incoming tcp:127.0.0.1:0 --serial "$T/$n.serial" \
		"$@" >"$T/$n.log" 2>&1 &
	PIDS+=($!)
	wait_sock "$T/$n.sock" || fail "$n did not start"
}

migrate() {	# from, to
	local uri
	uri=$(field "$(q "$T/$2.sock")" incoming_uri)
	[ -n "$uri" ] || fail "$2 has no incoming address"
	"$BIN" ctl "$T/$1.sock" migrate "$uri" --channels 3 --wait >"$T/$1-$2.json" 2>>"$T/$1.log" ||
		fail "migration $1 -> $2: $(cat "$T/$1-$2.json")"
	# Both record their switchover digest once done (the source right after completing).
	for _ in $(seq 300); do
		[ -n "$(sw "$T/$1.sock" digest)" ] && [ -n "$(sw "$T/$2.sock" digest)" ] && break
		sleep 0.1
	done
	local ds dd
	ds=$(sw "$T/$1.sock" digest); dd=$(sw "$T/$2.sock" digest)
	[ -n "$ds" ] && [ "$ds" = "$dd" ] || fail "$1 -> $2: digests differ ($ds / $dd)"
	[ "$(sw "$T/$2.sock" pattern_ok)" = true ] || fail "$1 -> $2: page pattern broken"
	echo "$1 -> $2: digest $dd, pattern ok"
}

running_on() {	# name: the sweep counter advances
	local a b
	a=$(first_sweep "$T/$1.sock")
	for _ in $(seq 100); do
		b=$(first_sweep "$T/$1.sock")
		[ "${b:-0}" -gt "${a:-0}" ] && { echo "$1 runs: sweep $a -> $b"; return 0; }
		sleep 0.1
	done
	fail "the guest does not advance on $1"
}

# ---- 1. A -> B -> A ---------------------------------------------------------------------
VMARGS=(--accel auto --mem 96M --vcpus 2 --workload dirty:24M)
"$BIN" vm run "${VMARGS[@]}" --verify --fill random --control "$T/a.sock" --serial "$T/a.serial" \
	>"$T/a.log" 2>&1 &
PIDS+=($!)
wait_sock "$T/a.sock" || fail "A did not start"
start_dest b "${VMARGS[@]}"
running_on a
migrate a b
running_on b
start_dest a2 "${VMARGS[@]}"
migrate b a2
running_on a2
# A completed source stays paused and refuses to resume a guest that lives elsewhere now.
"$BIN" ctl "$T/a.sock" cont >/dev/null && fail "A resumed a guest that migrated away"
for n in a b a2; do "$BIN" ctl "$T/$n.sock" quit >/dev/null; done

# ---- 2. a boot-sector guest -----------------------------------------------------------------
command -v as >/dev/null && command -v ld >/dev/null || { echo "no as/ld: boot part skipped"; exit 0; }
as --32 --defsym TICK=1 -o "$T/tick.o" "$SRC" &&
	ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$T/tick.bin" "$T/tick.o" ||
	fail "cannot assemble the boot sector"
"$BIN" vm run --accel kvm --boot-sector "$T/tick.bin" --mem 16M --serial "$T/plain.serial" \
	--duration 1 >"$T/plain.log" 2>&1
rc=$?
[ $rc = 77 ] && { echo "KVM unavailable: boot-sector part skipped"; exit 0; }
[ $rc = 0 ] || fail "boot-sector guest: exit $rc"
[ "$(head -n 3 "$T/plain.serial" | tr '\n' ' ')" = "real prot a " ] || fail "plain run: $(head -c 40 "$T/plain.serial")"

"$BIN" vm run --accel kvm --boot-sector "$T/tick.bin" --mem 16M --verify --control "$T/s.sock" \
	--serial "$T/s.serial" >"$T/s.log" 2>&1 &
PIDS+=($!)
wait_sock "$T/s.sock" || fail "boot-sector source did not start"
start_dest d --accel kvm --boot-sector "$T/tick.bin" --mem 16M
sleep 1
uri=$(field "$(q "$T/d.sock")" incoming_uri)
"$BIN" ctl "$T/s.sock" migrate "$uri" --wait >"$T/s-d.json" 2>>"$T/s.log" || fail "boot-sector migration"
sleep 1
"$BIN" ctl "$T/s.sock" quit >/dev/null
"$BIN" ctl "$T/d.sock" quit >/dev/null
sleep 0.3
cat "$T/s.serial" "$T/d.serial" >"$T/all.serial"
[ "$(head -n 2 "$T/all.serial" | tr '\n' ' ')" = "real prot " ] || fail "migrated run starts with $(head -c 20 "$T/all.serial")"
ns=$(wc -l <"$T/s.serial"); nd=$(wc -l <"$T/d.serial")
[ "$ns" -gt 3 ] && [ "$nd" -gt 3 ] || fail "too few ticks on one side ($ns source, $nd destination)"
# Letters after the two banner lines must be consecutive (mod 26): nothing lost, nothing repeated.
tail -n +3 "$T/all.serial" | awk 'BEGIN { want = 0 } {
	if ($0 != sprintf("%c", 97 + want % 26)) { printf "tick %d is %s\n", NR, $0; exit 1 }
	want++ } END { printf "%d consecutive ticks\n", want }' || fail "ticks out of sequence"
echo "boot-sector guest: $ns source lines, $nd destination lines"
exit 0
