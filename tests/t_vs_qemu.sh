#!/usr/bin/env bash
# bench/vs-qemu cannot rot: its options, its tables and its JSON on made-up samples
# (--self-check), then, where QEMU is installed, a tiny real run (64 MiB guests, one sample of
# each tool, two configurations: a few seconds) whose JSON must say that every migration
# completed and was checked.  The figures themselves are bench/vs-qemu's business.
# Skips (77) the real run where QEMU is missing, or while someone holds the benchmark lock.
set -u
ROOT=${MFD_ROOT:-.}
VSQ="python3 $ROOT/bench/vs-qemu"
T=$(mktemp -d /tmp/mfd-t-vsq.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

$VSQ --help >"$T/help" || fail "--help"
for w in random-x1 random-x4 random-x8 dirty-x4 zero-8g --quick --json --repeat MFD_BENCH_LOCK; do
	grep -q -- "$w" "$T/help" || fail "--help does not mention $w"
done
[ "$($VSQ --list | wc -l)" = 5 ] || fail "--list: not 5 configurations"
$VSQ --self-check >"$T/self" || { cat "$T/self"; fail "--self-check"; }
tail -n 1 "$T/self" | grep -q 'self-check ok' || fail "--self-check did not end with ok"
for bad in "--config nope" "--repeat 0" "--mem 1K" "--timeout -1" "--bogus" "--paused-source --config dirty-x4"; do
	# shellcheck disable=SC2086
	$VSQ $bad --self-check >/dev/null 2>&1
	[ $? = 2 ] || fail "$bad: not a usage error (exit 2)"
done
python3 "$ROOT/bench/qmp.py" >/dev/null 2>&1
[ $? = 2 ] || fail "bench/qmp.py without a command: not exit 2"

command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not installed: real run skipped"; exit 77; }
flock -n -E 75 /tmp/mfd-bench.lock $VSQ --mem 64M --config random-x4,dirty-x4 --repeat 1 --json \
	>"$T/run.json" 2>"$T/run.log"
rc=$?
if [ $rc = 75 ]; then	# flock -n: somebody is benchmarking
	echo "the benchmark lock is held: real run skipped"
	exit 77
fi
[ $rc = 0 ] || { tail -n 30 "$T/run.log"; fail "tiny real run (exit $rc)"; }
python3 - "$T/run.json" <<'EOF' || { tail -n 30 "$T/run.log"; fail "tiny real run: its JSON"; }
import json, sys
r = json.load(open(sys.argv[1]))          # the whole of stdout is one object
assert r['schema'] == 1 and r['repeat'] == 1, r
assert [c['config']['name'] for c in r['configs']] == ['random-x4', 'dirty-x4']
for c in r['configs']:
    assert 'RAM digest' in c['verification']['tinyvm'], c['verification']
    assert len(c['samples']) == 2, c['samples']
    for s in c['samples']:
        assert s['converged'] and s['wall_ms'] > 0 and s['cpu_s'] >= 0, s
        assert s['check'].endswith('ok') if s['tool'] == 'qemu' else s['check'] == 'completed', s
    for tool in ('qemu', 'tinyvm'):
        assert c['median'][tool]['converged'] == 1, c['median']
    assert c['ratio']['wall'] > 0, c['ratio']
assert 'full RAM' in r['configs'][0]['samples'][0]['check'] or \
       'full RAM' in r['configs'][0]['samples'][1]['check']
EOF
echo "ok"
