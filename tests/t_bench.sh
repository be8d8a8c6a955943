#!/usr/bin/env bash
# multifd bench, small: every mode the acceptance figures use runs, verifies, and reports the
# fields its JSON promises (the figures themselves are measured by bench/run.sh, not here).
set -u
BIN=${MFD_BUILD:-build}/multifd
T=$(mktemp -d /tmp/mfd-t-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
has() { grep -q "\"$2\":$3" <<<"$1" || fail "$2 is not $3 in: ${1:0:300}"; }
key() { grep -q "\"$2\":" <<<"$1" || fail "no $2 in: ${1:0:300}"; }

j=$("$BIN" bench --mem 64M --channels 2 --fill random --baseline --repeat 2 --json) || fail "baseline run: $j"
has "$j" verified true; has "$j" status '"completed"'; has "$j" repeat 2
for k in throughput_mib_s baseline_mib_s ratio wire_bytes total_ms zero_pages samples; do key "$j" $k; done
j=$("$BIN" bench --mem 64M --fill zero --transport unix --json) || fail "zero run"
has "$j" verified true; has "$j" normal_pages 0; has "$j" zero_pages 16384
j=$("$BIN" bench --mem 64M --fill pattern --channels 3 --batch 7 --json) || fail "pattern run"
has "$j" verified true; has "$j" zero_pages 4096
j=$("$BIN" bench --mem 128M --dirty 32M --dirty-threads 2 --channels 2 --json) || fail "live run: $j"
has "$j" verified true; has "$j" pattern_ok true
for k in downtime_ms rounds dirty_sync_count throttle_pct_max; do key "$j" $k; done
# The README's live example in its exact shape (random fill, one writer, 256 MiB of 1 GiB): the
# switchover often comes before the writer finished its first sweep, and the pattern check must
# tell pages still holding the fill from damaged ones (issue 9, item 11).
j=$("$BIN" bench --mem 1G --dirty 256M --channels 4 --json) || fail "README live example: $j"
has "$j" verified true; has "$j" pattern_ok true; has "$j" fill '"random"'
# All of memory dirty: here the first sweep is cut short nearly always, whatever the fill.
for fill in random pattern zero; do
	j=$("$BIN" bench --mem 256M --dirty 256M --fill $fill --json) || fail "live, all dirty, $fill: $j"
	has "$j" verified true; has "$j" pattern_ok true
done
j=$("$BIN" bench --save "$T/s.snap" --mem 64M --channels 2 --json) || fail "save: $j"
j=$("$BIN" bench --restore "$T/s.snap" --channels 2 --json) || fail "restore: $j"
has "$j" verified true
j=$("$BIN" bench --restore "$T/s.snap" --lazy --json) || fail "lazy restore: $j"
has "$j" verified true
"$BIN" bench --mem 1M --channels 99 >/dev/null 2>&1 && fail "bad --channels accepted"
echo "bench modes ok"
