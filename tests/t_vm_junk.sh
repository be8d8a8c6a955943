#!/usr/bin/env bash
# Issue 10, acceptance: strangers on the migration port of a waiting `vm run --incoming`.
#  1. A connect-and-close before the real source arrives does not end the destination.
#  2. With 500 idle connections and a client sending a hello at one byte per second open
#     against it, a genuine live migration completes and verifies; the destination's thread
#     count and memory stay bounded (printed); every stranger is counted (rejected_connections)
#     and logged.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" vm-junk
JUNK="python3 $T/junk.py"
cat >"$T/junk.py" <<'EOF'
import socket, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "close":			# connect and close, N times
    for _ in range(int(sys.argv[4])):
        socket.create_connection((host, port)).close()
elif mode == "idle":			# N connections that say nothing, held until killed
    held = [socket.create_connection((host, port)) for _ in range(int(sys.argv[4]))]
    print("open", len(held), flush=True)
    time.sleep(3600)
elif mode == "trickle":			# a hello-sized message, one byte a second
    s = socket.create_connection((host, port))
    for b in b"MFDH" + bytes(60):
        s.send(bytes([b]))
        time.sleep(1)
EOF
proc_threads() { ls "/proc/$1/task" | wc -l; }
proc_rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status"; }
sw() { "$BIN" ctl "$1" query | sed 's/.*"switchover"://' | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr -d '"'; }

VM=(--accel auto --mem 96M --vcpus 2 --workload dirty:8M)
vm_start src "${VM[@]}" --fill random
vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0
DST=$LAST_PID
uri=$(incoming_uri "$T/dst.sock")
port=${uri##*:}

# ---- 1. connect and close ---------------------------------------------------------------------
$JUNK 127.0.0.1 "$port" close 1
sleep 0.3
kill -0 "$DST" 2>/dev/null || fail "a connect-and-close ended the destination"
grep -q "refused a connection" "$T/dst.log" || fail "the stranger was not logged"
echo "a connect-and-close: counted and logged, the destination waits on"

# ---- 2. 500 idle connections and a trickler, then the source -----------------------------------
threads0=$(proc_threads "$DST") rss0=$(proc_rss "$DST")
$JUNK 127.0.0.1 "$port" idle 500 >"$T/idle.out" 2>&1 &
IDLE=$!
PIDS+=($IDLE)
$JUNK 127.0.0.1 "$port" trickle >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q open "$T/idle.out" && break; sleep 0.1; done
grep -q open "$T/idle.out" || fail "the idle connections did not open: $(cat "$T/idle.out")"
sleep 0.5
threads1=$(proc_threads "$DST") rss1=$(proc_rss "$DST")
kill -0 "$DST" 2>/dev/null || fail "the destination died under 500 idle connections"
wait_running "$T/src.sock"
t0=$(date +%s.%N)
"$BIN" ctl "$T/src.sock" migrate "$uri" --channels 4 --wait >"$T/mig.json" 2>&1 ||
	fail "the genuine migration: $(cat "$T/mig.json")"
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
for _ in $(seq 100); do [ -n "$(sw "$T/src.sock" digest)" ] && [ -n "$(sw "$T/dst.sock" digest)" ] && break; sleep 0.1; done
ds=$(sw "$T/src.sock" digest) dd=$(sw "$T/dst.sock" digest)
[ -n "$ds" ] && [ "$ds" = "$dd" ] || fail "digests differ ($ds / $dd)"
[ "$(sw "$T/dst.sock" pattern_ok)" = true ] || fail "page pattern broken"
rejected=$("$BIN" ctl "$T/dst.sock" query | grep -o '"rejected_connections":[0-9]*' | head -n 1 | cut -d: -f2)
[ "${rejected:-0}" -ge 500 ] || fail "only ${rejected:-0} strangers counted"
[ "$threads1" -le "$threads0" ] || fail "threads grew with the connections: $threads0 -> $threads1"
[ "$rss1" -le $((rss0 + 16384)) ] || fail "memory grew with the connections: $rss0 -> $rss1 KiB"
echo "500 idle connections and a trickler open: migration completed in $secs s, digest $dd, pattern"
echo "intact; destination threads $threads0 -> $threads1, RSS $rss0 -> $rss1 KiB while they were"
echo "open; $rejected strangers refused and counted"
exit 0
