#!/usr/bin/env bash
# Operating a running migration (issue 12), QMP's way:
#  - `ctl S set max-bandwidth` during a capped migration changes the measured rate within the
#    round under way (the first pass, here);
#  - `ctl S set downtime-ms` lets a migration that could not converge under its limit switch
#    over at the end of the round under way;
#  - `ctl S info` shows the state for people; set, migrate-incoming refuse what they cannot do;
#  - `--timeline` on ctl draws the migration (the picture itself: t_timeline).
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" ctl-live
q() { "$BIN" ctl "$1" query; }
field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(eval("d" + sys.argv[1]))' "$1"; }
# rate SOCK SECONDS: whole MiB/s of wire bytes over about SECONDS (timed by the session's own
# clock, total_ms, not by when the queries ran), and the round at the end.
rate() {
	local a b
	a=$(q "$1")
	sleep "$2"
	b=$(q "$1")
	python3 -c 'import json, sys
a, b = (json.loads(x)["migration"] for x in sys.argv[1:3])
print(int((b["wire_bytes"] - a["wire_bytes"]) / 1048576 / ((b["total_ms"] - a["total_ms"]) / 1000)), b["rounds"])' "$a" "$b"
}

vm_start dst --accel soft --mem 256M --workload dirty:16M --incoming tcp:127.0.0.1:0
vm_start src --accel soft --mem 256M --workload dirty:16M --fill random
wait_running "$T/src.sock"
S=$T/src.sock
"$BIN" ctl "$S" set max-bandwidth 100M >"$T/out" 2>&1 && fail "set with nothing running: $(cat "$T/out")"
grep -q "no migration or save is running" "$T/out" || fail "set said: $(cat "$T/out")"
"$BIN" ctl "$S" set channels 3 >/dev/null 2>&1; [ $? = 2 ] || fail "set channels is not a usage error"
"$BIN" ctl "$S" migrate-incoming tcp:127.0.0.1:0 >"$T/out" && fail "migrate-incoming on a source"
grep -q "not started with --incoming defer" "$T/out" || fail "migrate-incoming said: $(cat "$T/out")"

uri=$(incoming_uri "$T/dst.sock")
"$BIN" ctl "$S" migrate "$uri" --max-bandwidth 16M --timeline "$T/m.svg" >"$T/final.json" 2>/dev/null &
mig=$!
sleep 1.5
read -r r1 round1 <<<"$(rate "$S" 1.0)"
"$BIN" ctl "$S" set max-bandwidth 64M | grep -q '"ok":true' || fail "set max-bandwidth refused"
[ "$(q "$S" | field '["parameters"]["max_bandwidth"]')" = $((64 << 20)) ] || fail "query does not show the new cap"
sleep 0.3
read -r r2 round2 <<<"$(rate "$S" 1.5)"
echo "capped at 16 MiB/s: $r1 MiB/s in round $round1; set to 64 MiB/s: $r2 MiB/s in round $round2"
[ "$round1" = 1 ] && [ "$round2" = 1 ] || fail "the first pass ended before the measurement (rounds $round1, $round2)"
# Over a second, 2 MiB packets (counted when written whole, in bunches when the destination is
# slow) make a measured rate a few packets off the cap: within half the cap is what we ask.
[ "$r1" -ge 10 ] && [ "$r1" -le 24 ] || fail "the 16 MiB/s cap measured ${r1} MiB/s"
[ $((r2 * 2)) -ge $((r1 * 5)) ] && [ "$r2" -le 96 ] || fail "the new cap did not show within the round: ${r1} then ${r2} MiB/s"
"$BIN" ctl "$S" info >"$T/info" || fail "info"
for w in "status:" "round:" "dirty rate:" "expected downtime:" "ETA:" "max-bandwidth 64.0 MiB/s" "data 1"; do
	grep -q "$w" "$T/info" || fail "info has no '$w': $(cat "$T/info")"
done
wait $mig || fail "the migration failed: $(cat "$T/final.json")"
[ -s "$T/m.svg" ] && grep -q '</svg>' "$T/m.svg" || fail "no timeline from ctl --timeline"
echo "max-bandwidth: changed within the round; info and timeline ok"

# downtime-ms: a guest that keeps 32 MiB dirty behind a 24 MiB/s link cannot reach 1 ms.
vm_start dst2 --accel soft --mem 64M --workload dirty:32M --incoming tcp:127.0.0.1:0
vm_start src2 --accel soft --mem 64M --workload dirty:32M --fill random
wait_running "$T/src2.sock"
S=$T/src2.sock
"$BIN" ctl "$S" migrate "$(incoming_uri "$T/dst2.sock")" --max-bandwidth 24M --downtime-ms 1 \
	>/dev/null || fail "migrate"
for _ in $(seq 100); do
	[ "$(q "$S" | field '["migration"]["rounds"]')" -ge 3 ] && break
	sleep 0.1
done
r=$(q "$S")
[ "$(field '["migration"]["status"]' <<<"$r")" = active ] || fail "converged under 1 ms: $r"
at=$(field '["migration"]["rounds"]' <<<"$r")
"$BIN" ctl "$S" set downtime-ms 60000 | grep -q '"ok":true' || fail "set downtime-ms refused"
st=$(wait_final "$S")
[ "$st" = completed ] || fail "after downtime-ms 60000: $st"
end=$(q "$S" | field '["migration"]["rounds"]')
echo "downtime-ms: set in round $at, completed after round $end"
[ "$end" -le $((at + 2)) ] || fail "the new limit took from round $at to $end"
echo "downtime-ms: took effect at the end of the round under way"
