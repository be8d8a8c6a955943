#!/usr/bin/env bash
# Issue 9, item 12: the command's surface.  One rule for exit statuses everywhere (0 ok,
# 1 failure, 2 usage error), and every refusal says what was wrong.
#  - ctl: an option the command does not take is refused (not ignored); a migration URI is
#    checked before the VM answers (no "ok" for a URI that cannot work), and nothing starts.
#  - demo, help, vm run, bench, inspect: bad values are usage errors (2) with a message.
#  - inspect --json writes UTF-8 as it is (a file é.snap reads back as é.snap) and stays valid
#    JSON whatever bytes a name holds; snapshot truncation is called "file truncated", never
#    "truncated packet", by inspect, vm run --restore and bench --restore (status 1).
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" usage
# expect STATUS WORDS COMMAND...: exit status STATUS, and stderr+stdout mention WORDS.
expect() {
	local want=$1 words=$2 out rc; shift 2
	out=$("$@" 2>&1); rc=$?
	[ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $out"
	grep -q -- "$words" <<<"$out" || fail "'$*' did not say '$words': $out"
}

vm_start src --accel soft --mem 32M --workload dirty:4M
wait_running "$T/src.sock"
S=$T/src.sock
expect 2 "query takes no --channels" "$BIN" ctl "$S" query --channels 3
expect 2 "stop takes no --wait" "$BIN" ctl "$S" stop --wait
expect 2 "migrate takes no --live" "$BIN" ctl "$S" migrate tcp:127.0.0.1:9 --live
expect 2 "unknown command 'frob'" "$BIN" ctl "$S" frob
expect 2 "too many arguments" "$BIN" ctl "$S" cancel now
expect 1 '\\"foo\\" is not a migration URI' "$BIN" ctl "$S" migrate foo
expect 1 "expected tcp:HOST:PORT" "$BIN" ctl "$S" migrate tcp:127.0.0.1
expect 1 "expected tcp:HOST:PORT" "$BIN" ctl "$S" migrate tcp:127.0.0.1:0
expect 1 "expected tcp:HOST:PORT" "$BIN" ctl "$S" migrate tcp:::1:4444
expect 1 "not a migration target" "$BIN" ctl "$S" migrate file:/tmp/x
expect 1 "unix socket path" "$BIN" ctl "$S" migrate "unix:$(printf 'x%.0s' $(seq 120))"
r=$("$BIN" ctl "$S" query)
grep -q '"role":"none"' <<<"$r" && ! grep -q '"operation"' <<<"$r" ||
	fail "a refused migrate left traces: $(cut -c1-300 <<<"$r")"
echo "ctl: ok"

expect 2 "--accel is kvm, soft or auto" "$BIN" demo --accel xen
expect 2 "bad value '2M': --mem" "$BIN" demo --mem 2M
expect 2 "at most --mem minus 2 MiB" "$BIN" demo --mem 8M --dirty 8M
expect 2 "no command 'nosuch'" "$BIN" help nosuch
expect 0 "usage: multifd" "$BIN" help
expect 0 "usage: multifd vm run" "$BIN" help vm
for mem in 1K 0 -5 3000 65G; do
	expect 2 "memory\\|--mem" "$BIN" vm run --accel soft --mem $mem --duration 0.1
done
expect 2 "--lazy goes with --restore" "$BIN" vm run --accel soft --lazy --duration 0.1
expect 2 "exclude each other" "$BIN" vm run --accel soft --incoming tcp:127.0.0.1:0 --restore x
expect 2 "channels must be" "$BIN" bench --mem 1M --channels 99
expect 2 "expected one PATH" "$BIN" inspect
expect 1 "No such file" "$BIN" inspect "$T/none.snap"
echo "usage errors: ok"

# UTF-8 in inspect --json, and bytes that are not UTF-8.
"$BIN" bench --save "$T/é.snap" --mem 4M --json >/dev/null || fail "bench --save"
"$BIN" inspect "$T/é.snap" --json >"$T/i.json" || fail "inspect é.snap"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1], encoding="utf-8", errors="strict")); sys.exit(0 if d["path"].endswith("/é.snap") and d["valid"] else 1)' "$T/i.json" ||
	fail "inspect --json does not read back é.snap: $(head -c 100 "$T/i.json")"
odd=$(printf '%s/x\xff\x01y.snap' "$T")
cp "$T/é.snap" "$odd"
"$BIN" inspect "$odd" --json >"$T/o.json" || fail "inspect of an odd name"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1], encoding="utf-8", errors="strict")); sys.exit(0 if d["path"].endswith("/x\ufffd\x01y.snap") else 1)' "$T/o.json" ||
	fail "inspect --json of a name that is not UTF-8: $(head -c 100 "$T/o.json")"
echo "inspect --json: UTF-8 kept, other bytes escaped, valid JSON"

# A truncated snapshot.
head -c 100000 "$T/é.snap" >"$T/cut.snap"
for cmd in "inspect $T/cut.snap" "inspect $T/cut.snap --json" "bench --restore $T/cut.snap" \
	   "vm run --accel soft --mem 4M --restore $T/cut.snap --duration 0.1"; do
	# shellcheck disable=SC2086
	out=$("$BIN" $cmd 2>&1); rc=$?
	[ $rc = 1 ] || fail "$cmd: exit $rc"
	grep -q "file truncated" <<<"$out" || fail "$cmd does not say the file is truncated: $out"
	grep -q "truncated packet" <<<"$out" && fail "$cmd speaks of a packet: $out"
done
echo "truncated snapshot: 'file truncated' everywhere"
