# bench/vm_lib.sh — two tinyvm processes and a migration between them, for bench/run.sh.
# Sourced, not run.  Needs BIN (the multifd command).  Every process started here is killed and
# every file removed by vm_cleanup, which the caller traps on EXIT.
#
#   vm_pair MEM WORKLOAD SRC_ARGS DST_ARGS   start a source (running, --fill random unless
#                                            SRC_ARGS says otherwise) and a destination
#                                            (--incoming tcp:127.0.0.1:0), wait until both are
#                                            ready; sets VM_DIR, VM_SRC, VM_DST (pids)
#   vm_migrate CHANNELS                      migrate source -> destination and wait; prints one
#                                            line of key=value figures (below); 1 if it failed
#   vm_stop                                  quit both VMs
#
# The figures of vm_migrate: total_ms, downtime_ms and rounds (the source's statistics),
# start_ms (the destination's: from the end of the migration to its guest running),
# wall_ms (the ctl command's, from the request to the reply that says completed),
# cpu_src_s and cpu_dst_s (user + system time of each whole process during the migration,
# from /proc/PID/stat), cpu_s_per_gib (both over the guest's GiB), dst_rss_kib (growth of the
# destination's resident memory) and status.

VM_ALL_DIRS=()
VM_ALL_PIDS=()

vm_cleanup() {
	local p
	for p in "${VM_ALL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	for p in "${VM_ALL_DIRS[@]}"; do rm -rf "$p"; done
}

vm__ready() {	# SOCK PATTERN: wait up to 60 s for a query reply matching PATTERN
	local i
	for i in $(seq 1200); do
		[ -S "$1" ] && "$BIN" ctl "$1" query 2>/dev/null | grep -q "$2" && return 0
		sleep 0.05
	done
	echo "bench: $1 never became ready" >&2
	return 1
}

vm__cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
vm__rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

vm_pair() {	# MEM WORKLOAD "SRC_ARGS" "DST_ARGS"
	VM_DIR=$(mktemp -d /tmp/mfd-bench-vm.XXXXXX)
	VM_ALL_DIRS+=("$VM_DIR")
	VM_MEM=$1
	# shellcheck disable=SC2086
	"$BIN" vm run --accel "${ACCEL:-auto}" --mem "$1" --workload "$2" $3 \
		--control "$VM_DIR/src.sock" --serial /dev/null >"$VM_DIR/src.log" 2>&1 &
	VM_SRC=$!
	# shellcheck disable=SC2086
	"$BIN" vm run --accel "${ACCEL:-auto}" --mem "$1" --workload "$2" $4 \
		--incoming tcp:127.0.0.1:0 --control "$VM_DIR/dst.sock" --serial /dev/null \
		>"$VM_DIR/dst.log" 2>&1 &
	VM_DST=$!
	VM_ALL_PIDS+=("$VM_SRC" "$VM_DST")
	vm__ready "$VM_DIR/src.sock" '"vm":"running"' && vm__ready "$VM_DIR/dst.sock" '"incoming_uri"'
}

vm_migrate() {	# CHANNELS
	local uri c1 c2 r0 t0 t1 c1b c2b r1 dq
	uri=$("$BIN" ctl "$VM_DIR/dst.sock" query | python3 -c \
		'import json,sys; print(json.load(sys.stdin)["incoming_uri"])') || return 1
	c1=$(vm__cpu "$VM_SRC"); c2=$(vm__cpu "$VM_DST"); r0=$(vm__rss "$VM_DST")
	t0=$(date +%s%N)
	"$BIN" ctl "$VM_DIR/src.sock" migrate "$uri" --channels "$1" --wait \
		>"$VM_DIR/final.json" 2>/dev/null
	t1=$(date +%s%N)
	c1b=$(vm__cpu "$VM_SRC"); c2b=$(vm__cpu "$VM_DST")
	vm__ready "$VM_DIR/dst.sock" '"start_ms"' || return 1
	r1=$(vm__rss "$VM_DST")
	dq=$("$BIN" ctl "$VM_DIR/dst.sock" query)
	python3 - "$VM_DIR/final.json" "$dq" "$c1" "$c1b" "$c2" "$c2b" "$t0" "$t1" "$r0" "$r1" <<'PY'
import json, os, sys
a = sys.argv
m = json.load(open(a[1]))["migration"]
d = json.loads(a[2])
hz = os.sysconf("SC_CLK_TCK")
src, dst = (int(a[4]) - int(a[3])) / hz, (int(a[6]) - int(a[5])) / hz
gib = m["mem_bytes"] / 2**30
print("status=%s total_ms=%d downtime_ms=%d start_ms=%.1f rounds=%d wall_ms=%.0f cpu_src_s=%.2f "
      "cpu_dst_s=%.2f cpu_s_per_gib=%.3f dst_rss_kib=%d"
      % (m["status"], m["total_ms"], m["downtime_ms"], d["switchover"]["start_ms"], m["rounds"],
         (int(a[8]) - int(a[7])) / 1e6, src, dst, (src + dst) / gib, int(a[10]) - int(a[9])))
PY
	grep -q '"status":"completed"' "$VM_DIR/final.json"
}

vm_stop() {
	"$BIN" ctl "$VM_DIR/src.sock" quit >/dev/null 2>&1
	"$BIN" ctl "$VM_DIR/dst.sock" quit >/dev/null 2>&1
	wait "$VM_SRC" "$VM_DST" 2>/dev/null
	rm -rf "$VM_DIR"
}

kv() {	# LINE KEY: the value of KEY= in a vm_migrate line
	tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}
