#!/usr/bin/env bash
# Issue 10: network faults between two "hosts" — two network namespaces joined by a veth pair —
# during a live migration of a running tinyvm guest (capped, so that it is still running when
# the fault comes):
#   link       the link goes down (ip link set down)
#   reset      one data channel is reset (nftables: reject with tcp reset)
#   blackhole  one data channel is black-holed both ways (nftables: drop)
#   kill-dst   the destination is killed (SIGKILL)
#   kill-src   the source is killed (SIGKILL)
# Each time every surviving side reports a precise error within 3 s of the fault, the source
# guest (where it survives) keeps running, and a retried migration to a fresh destination
# completes with the source's memory intact: equal digests at the switchover and the
# workload's page pattern intact.  Skips (77) where namespaces cannot be made; the nftables
# cases are skipped (and said so) where nft is missing.
set -u
BIN=$(cd "$(dirname "${MFD_BUILD:-build}/multifd")" && pwd)/multifd
T=$(mktemp -d /tmp/mfd-t-net.XXXXXX)
NA=mfd-a-$$ NB=mfd-b-$$
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$NA" 2>/dev/null
	ip netns del "$NB" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$T"/*.log; do echo "--- $f"; tail -n 4 "$f"; done; exit 1; }
skip() { echo "skip: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
ip netns add "$NA" 2>/dev/null && ip netns add "$NB" 2>/dev/null || skip "ip netns is not permitted here"
ip link add va netns "$NA" type veth peer vb netns "$NB" 2>/dev/null || skip "no veth pairs here"
ip -n "$NA" addr add 10.91.0.1/24 dev va && ip -n "$NB" addr add 10.91.0.2/24 dev vb &&
	ip -n "$NA" link set va up && ip -n "$NB" link set vb up &&
	ip -n "$NA" link set lo up && ip -n "$NB" link set lo up || fail "cannot set the link up"
HAVE_NFT=0
ip netns exec "$NA" nft list tables >/dev/null 2>&1 && HAVE_NFT=1

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
q() { "$BIN" ctl "$1" query 2>/dev/null; }
field() { sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p" <<<"$1" | head -n 1; }
sw() { local r; r=$(q "$1") || return 1; field "${r#*\"switchover\":}" "$2"; }
first_sweep() { q "$1" | grep -o '"sweeps":\[[0-9]*' | head -n 1 | grep -o '[0-9]*$'; }
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }

VM=(--accel auto --mem 128M --vcpus 2 --workload dirty:8M)
vm() {	# NS NAME ARGS...: a VM in a namespace; its pid in LAST
	local ns=$1 n=$2; shift 2
	ip netns exec "$ns" "$BIN" vm run "${VM[@]}" --verify --control "$T/$n.sock" --serial /dev/null "$@" \
		>"$T/$n.log" 2>&1 &
	LAST=$!
	PIDS+=($LAST)
	wait_sock "$T/$n.sock" || fail "$n did not start"
}
src() { vm "$NA" "$1" --fill random; SRC_PID=$LAST; }
dst() { vm "$NB" "$1" --incoming tcp:10.91.0.2:0; DST_PID=$LAST; }
uri_of() {
	local u
	for _ in $(seq 50); do u=$(field "$(q "$1")" incoming_uri); [ -n "$u" ] && { echo "$u"; return; }; sleep 0.05; done
	fail "no incoming address at $1"
}
mig_status() { q "$1" | grep -o '"status":"[a-z]*"' | head -n 1 | cut -d'"' -f4; }
running_on() {
	local a b
	a=$(first_sweep "$1")
	for _ in $(seq 60); do
		b=$(first_sweep "$1")
		[ "${b:-0}" -gt "${a:-0}" ] && return 0
		sleep 0.05
	done
	fail "the guest does not run at $1"
}
# The local port of the source's last data channel (the highest: they connect in order).
data_port() {
	ip netns exec "$NA" ss -tnH state established dst 10.91.0.2 |
		awk '{ n = split($3, a, ":"); print a[n] }' | sort -n | tail -n 1
}
nft_a() { ip netns exec "$NA" nft "$@"; }
nft_b() { ip netns exec "$NB" nft "$@"; }

# start_capped NAME: source NAME-s and destination NAME-d, a capped migration under way.
start_capped() {
	src "$1-s"
	dst "$1-d"
	running_on "$T/$1-s.sock"
	"$BIN" ctl "$T/$1-s.sock" migrate "$(uri_of "$T/$1-d.sock")" --channels 3 \
		--max-bandwidth 32M >"$T/$1-start.json" || fail "$1: the migration did not start"
	for _ in $(seq 100); do [ "$(mig_status "$T/$1-s.sock")" = active ] && break; sleep 0.02; done
	sleep 0.8	# well inside the rounds, channels busy
	[ "$(mig_status "$T/$1-s.sock")" = active ] || fail "$1: the migration is not running"
}
# src_fails NAME T0: the source's migration fails within 3 s of T0; prints when and why.
src_fails() {
	local st
	for _ in $(seq 80); do
		st=$(mig_status "$T/$1-s.sock")
		[ "$st" = failed ] && break
		sleep 0.05
	done
	[ "$st" = failed ] || fail "$1: the source did not fail (status $st)"
	local dt; dt=$(since "$2")
	awk -v d="$dt" 'BEGIN { exit !(d < 3.0) }' || fail "$1: the source took $dt s"
	echo "  source after ≤ $dt s: $(field "$(q "$T/$1-s.sock")" migration_error)"
}
# dst_fails NAME T0: the destination gives up within 3 s of T0.
dst_fails() {
	for _ in $(seq 200); do grep -q "incoming migration failed" "$T/$1-d.log" && break; sleep 0.05; done
	grep -q "incoming migration failed" "$T/$1-d.log" || fail "$1: the destination did not notice"
	local dt; dt=$(since "$2")
	awk -v d="$dt" 'BEGIN { exit !(d < 3.0) }' || fail "$1: the destination took $dt s"
	echo "  destination after ≤ $dt s: $(grep -o 'incoming migration failed: .*' "$T/$1-d.log" | cut -c 28-)"
}
# retry NAME SRC_SOCK: a fresh destination takes the guest; its memory is the source's.
retry() {
	dst "$1-r"
	"$BIN" ctl "$2" migrate "$(uri_of "$T/$1-r.sock")" --channels 3 --wait >"$T/$1-r.json" 2>&1 ||
		fail "$1: the retried migration: $(cat "$T/$1-r.json")"
	local ds dd
	for _ in $(seq 100); do
		ds=$(sw "$2" digest); dd=$(sw "$T/$1-r.sock" digest)
		[ -n "$ds" ] && [ -n "$dd" ] && break
		sleep 0.05
	done
	[ -n "$ds" ] && [ "$ds" = "$dd" ] || fail "$1: digests differ after the retry ($ds / $dd)"
	[ "$(sw "$T/$1-r.sock" pattern_ok)" = true ] || fail "$1: page pattern broken after the retry"
	running_on "$T/$1-r.sock"
	echo "  retried: completed, digest $dd, pattern intact"
}
quit_all() { for s in "$@"; do "$BIN" ctl "$s" quit >/dev/null 2>&1; done; }

# ---- the link goes down -----------------------------------------------------------------------
echo "link down:"
start_capped link
t0=$(now)
ip -n "$NA" link set va down
src_fails link "$t0"
dst_fails link "$t0"
running_on "$T/link-s.sock"
ip -n "$NA" link set va up
sleep 0.2
retry link "$T/link-s.sock"
quit_all "$T/link-s.sock" "$T/link-r.sock"

# ---- one data channel reset, one black-holed ---------------------------------------------------
if [ "$HAVE_NFT" = 1 ]; then
	echo "one data channel reset:"
	start_capped reset
	port=$(data_port)
	[ -n "$port" ] || fail "reset: no connection found"
	nft_a add table inet mfd && nft_a add chain inet mfd out '{ type filter hook output priority 0; }' &&
		nft_a add rule inet mfd out tcp sport "$port" reject with tcp reset || fail "nft rule"
	t0=$(now)
	src_fails reset "$t0"
	dst_fails reset "$t0"
	running_on "$T/reset-s.sock"
	nft_a delete table inet mfd
	retry reset "$T/reset-s.sock"
	quit_all "$T/reset-s.sock" "$T/reset-r.sock"

	echo "one data channel black-holed:"
	start_capped hole
	port=$(data_port)
	[ -n "$port" ] || fail "blackhole: no connection found"
	nft_a add table inet mfd && nft_a add chain inet mfd out '{ type filter hook output priority 0; }' &&
		nft_a add rule inet mfd out tcp sport "$port" drop || fail "nft rule (source)"
	nft_b add table inet mfd && nft_b add chain inet mfd out '{ type filter hook output priority 0; }' &&
		nft_b add rule inet mfd out tcp dport "$port" drop || fail "nft rule (destination)"
	t0=$(now)
	src_fails hole "$t0"
	dst_fails hole "$t0"
	running_on "$T/hole-s.sock"
	nft_a delete table inet mfd
	nft_b delete table inet mfd
	retry hole "$T/hole-s.sock"
	quit_all "$T/hole-s.sock" "$T/hole-r.sock"
else
	echo "nft not available: the reset and black-hole cases are skipped"
fi

# ---- the destination is killed --------------------------------------------------------------
echo "destination killed:"
start_capped kd
t0=$(now)
kill -9 "$DST_PID"
wait "$DST_PID" 2>/dev/null
src_fails kd "$t0"
running_on "$T/kd-s.sock"
retry kd "$T/kd-s.sock"
quit_all "$T/kd-s.sock" "$T/kd-r.sock"

# ---- the source is killed ----------------------------------------------------------------------
echo "source killed:"
start_capped ks
t0=$(now)
kill -9 "$SRC_PID"
wait "$SRC_PID" 2>/dev/null
dst_fails ks "$t0"
src ks2-s	# the guest is gone with its process: a new source, the same workload
running_on "$T/ks2-s.sock"
retry ks "$T/ks2-s.sock"
quit_all "$T/ks2-s.sock" "$T/ks-r.sock"
exit 0
