# tests/ctl_lib.sh — what the control-socket tests (t_ctl_*.sh) share; sourced, not run.
# After `. tests/ctl_lib.sh NAME`: BIN, PEER (tests/ctlpeer.py), T (a private temporary
# directory, removed at exit with every process started by vm_start), and the helpers below.
BIN=${MFD_BUILD:-build}/multifd
PEER="python3 ${MFD_ROOT:-.}/tests/ctlpeer.py"
T=$(mktemp -d "/tmp/mfd-t-${1:-ctl}.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fail() { { echo "FAIL: $*"; for f in "$T"/*.log; do echo "--- $f"; tail -n 5 "$f"; done; } >&2; exit 1; }

# vm_start NAME ARGS...: `vm run ARGS --verify --control $T/NAME.sock` in the background, its output in
# $T/NAME.log, its pid in LAST_PID; returns once the control socket exists.
vm_start() {
	local n=$1; shift
	"$BIN" vm run "$@" --verify --control "$T/$n.sock" --serial /dev/null >"$T/$n.log" 2>&1 &
	LAST_PID=$!
	PIDS+=($LAST_PID)
	for _ in $(seq 100); do [ -S "$T/$n.sock" ] && return 0; sleep 0.1; done
	fail "$n did not start"
}
# wait_running SOCK: until the guest runs.
wait_running() {
	for _ in $(seq 50); do "$BIN" ctl "$1" query | grep -q '"vm":"running"' && return 0; sleep 0.1; done
	fail "the guest at $1 does not run"
}
# incoming_uri SOCK: where a `vm run --incoming` listens (it may not know yet at first).
incoming_uri() {
	local uri
	for _ in $(seq 50); do
		uri=$("$BIN" ctl "$1" query | sed -n 's/.*"incoming_uri":"\([^"]*\)".*/\1/p')
		[ -n "$uri" ] && { echo "$uri"; return 0; }
		sleep 0.1
	done
	fail "no incoming address at $1"
}
# mig_status SOCK: the status of the running or last migration or save.
mig_status() { "$BIN" ctl "$1" query | grep -o '"status":"[a-z]*"' | head -n 1 | cut -d'"' -f4; }
# wait_final SOCK: prints the final status (or the last one seen after 30 s).
wait_final() {
	local st
	for _ in $(seq 300); do
		st=$(mig_status "$1")
		case $st in completed|failed|cancelled) break ;; esac
		sleep 0.1
	done
	echo "$st"
}
