#!/usr/bin/env bash
# One JSON, documented (issue 12): every member that `ctl query` (and the control socket's other
# replies and its events), `bench --json` and `demo --json` write is listed in docs/json.md, and
# every member docs/json.md lists is written by one of them.  The runs cover each optional
# member: a source, a destination started with --incoming defer, a failed migration, a refused
# request, the event stream, bench's transfer (baseline, samples), live, save and restore modes,
# and the demo.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" json-keys
J=$T/json	# every JSON text written, one per file
mkdir -p "$J"
keep() { cat >"$(mktemp "$J/out.XXXXXX")"; }	# also at the end of a pipeline (a subshell)

# A destination that waits for migrate-incoming, and a source.
vm_start dst --accel soft --mem 64M --workload dirty:16M --incoming defer
vm_start src --accel soft --mem 64M --workload dirty:16M --fill random
wait_running "$T/src.sock"
"$BIN" ctl "$T/dst.sock" query | keep
"$BIN" ctl "$T/dst.sock" migrate-incoming tcp:127.0.0.1:0 >"$T/mi.json" || fail "migrate-incoming: $(cat "$T/mi.json")"
keep <"$T/mi.json"
uri=$(incoming_uri "$T/dst.sock")
"$BIN" ctl "$T/src.sock" events --wait >"$T/events.jsonl" &
ev=$!
sleep 0.3
"$BIN" ctl "$T/src.sock" migrate "$uri" --channels 2 --wait >"$T/final.json" 2>"$T/progress.jsonl" ||
	fail "migration: $(cat "$T/final.json")"
wait $ev || fail "events --wait did not end with a completed migration: $(tail -n 2 "$T/events.jsonl")"
keep <"$T/final.json"
split -l 1 -a 4 "$T/events.jsonl" "$J/ev."
split -l 1 -a 4 "$T/progress.jsonl" "$J/pr."
for _ in $(seq 50); do "$BIN" ctl "$T/dst.sock" query | grep -q '"switchover"' && break; sleep 0.1; done
"$BIN" ctl "$T/dst.sock" query | keep
"$BIN" ctl "$T/src.sock" frob 2>/dev/null
"$BIN" ctl "$T/src.sock" cont | keep		# refused: the guest migrated away

# A migration that fails (nobody listens there), with its final event.
vm_start bad --accel soft --mem 32M --workload dirty:4M
wait_running "$T/bad.sock"
"$BIN" ctl "$T/bad.sock" events --wait >"$T/bad-events.jsonl" &
ev=$!
sleep 0.3
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" ctl "$T/bad.sock" migrate "tcp:127.0.0.1:$port" --wait >"$T/bad.json" 2>/dev/null &&
	fail "a migration to a closed port completed"
wait $ev
keep <"$T/bad.json"
split -l 1 -a 4 "$T/bad-events.jsonl" "$J/bev."
grep -q '"migration_error"' "$T/bad.json" || fail "no migration_error after a failure: $(cat "$T/bad.json")"

# bench, every mode.
"$BIN" bench --mem 32M --channels 2 --baseline --repeat 2 --json | keep
"$BIN" bench --mem 64M --dirty 16M --channels 2 --json | keep
"$BIN" bench --save "$T/b.snap" --mem 16M --baseline --json | keep
"$BIN" bench --save "$T/l.snap" --mem 32M --dirty 8M --json | keep
"$BIN" bench --restore "$T/b.snap" --lazy --json | keep
# The demo.
"$BIN" demo --accel soft --mem 64M --dirty 16M --channels 2 --json 2>/dev/null | keep

python3 - "$J" "${MFD_ROOT:-.}/docs/json.md" <<'PY' || fail "emitted and documented members differ"
import json, os, re, sys
emitted = {}
def walk(v, where):
    if isinstance(v, dict):
        for k, x in v.items():
            emitted.setdefault(k, where)
            walk(x, where)
    elif isinstance(v, list):
        for x in v:
            walk(x, where)
d = sys.argv[1]
count = 0
for f in sorted(os.listdir(d)):
    text = open(os.path.join(d, f), encoding="utf-8").read().strip()
    if not text:
        continue
    try:
        walk(json.loads(text), f)
    except ValueError as e:
        sys.exit("%s is not one JSON object: %s: %.200s" % (f, e, text))
    count += 1
doc = open(sys.argv[2], encoding="utf-8").read()
documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", doc, re.M))
undocumented = sorted(set(emitted) - documented)
unwritten = sorted(documented - set(emitted))
for k in undocumented:
    print("written but not in docs/json.md: %s (first in %s)" % (k, emitted[k]))
for k in unwritten:
    print("in docs/json.md but never written: %s" % k)
print("%d JSON texts, %d members written, %d documented" % (count, len(emitted), len(documented)))
sys.exit(1 if undocumented or unwritten else 0)
PY
echo "every member written is documented, and every documented member is written"
