#!/usr/bin/env bash
# Issue 9, item 12: the command's surface.  One rule for exit statuses everywhere (0 ok,
# 1 failure, 2 usage error), and every refusal says what was wrong.
#  - ctl: an option the command does not take is refused (not ignored); a migration URI is
#    checked before the VM answers (no "ok" for a URI that cannot work), and nothing starts.
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
