#!/usr/bin/env bash
# bench/run.sh — the figures we report, each a ratio (or a rate with its target) measured in one
# run on this machine.  Machines are shared and noisy: every figure is taken REPEAT times
# (default 3) and all samples are printed, with the median.
#
#   bench/run.sh [transfer|zero|live|demo|all]
set -u
BIN=${MFD_BUILD:-build}/multifd
REPEAT=${REPEAT:-3}
what=${1:-all}
[ -x "$BIN" ] || { echo "build first: make" >&2; exit 1; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

if [ "$what" = transfer ] || [ "$what" = all ]; then
	echo "== 2 GiB random, 4 channels, loopback tcp: multifd vs a plain copy in the same run (target >= 0.85)"
	# multifd bench itself takes REPEAT (ours, baseline) pairs and reports the median ratio.
	j=$("$BIN" bench --mem 2G --channels 4 --fill random --baseline --repeat "$((REPEAT < 3 ? 5 : REPEAT))" --json) || exit 1
	get '"\n".join("   %s MiB/s vs %s MiB/s: ratio %s" % (s["memory_mib_s"], s["baseline_mib_s"], s["ratio"]) for s in d["samples"])' <<<"$j"
	echo "   median ratio $(get 'd["ratio"]' <<<"$j"), verified $(get 'd["verified"]' <<<"$j")"
fi
if [ "$what" = zero ] || [ "$what" = all ]; then
	echo "== 8 GiB of zero RAM (target >= 10 GiB/s)"
	r=()
	for i in $(seq "$REPEAT"); do
		j=$("$BIN" bench --mem 8G --fill zero --json) || exit 1
		g=$(get 'round(d["memory_mib_s"] / 1024, 2)' <<<"$j")
		echo "   $g GiB/s, verified $(get 'd["verified"]' <<<"$j")"
		r+=("$g")
	done
	echo "   median $(printf '%s\n' "${r[@]}" | median) GiB/s"
fi
if [ "$what" = live ] || [ "$what" = all ]; then
	echo "== live: 1 GiB, 256 MiB rewritten continuously, 4 channels (downtime target <= 350 ms)"
	for i in $(seq "$REPEAT"); do
		j=$("$BIN" bench --mem 1G --dirty 256M --channels 4 --json) || exit 1
		echo "   $(get '"status %s, downtime %s ms, %s rounds, throttle max %s%%, verified %s" % (d["status"], d["migration"]["downtime_ms"], d["migration"]["rounds"], d["migration"]["throttle_pct_max"], d["verified"])' <<<"$j")"
	done
	echo "== live with the link below the dirty rate (200 MB/s cap): throttling must converge"
	j=$("$BIN" bench --mem 1G --dirty 256M --dirty-threads 2 --channels 4 --max-bandwidth 200M --json)
	echo "   $(get '"status %s, %s ms, downtime %s ms, %s rounds, throttle max %s%%, verified %s" % (d["status"], d["migration"]["total_ms"], d["migration"]["downtime_ms"], d["migration"]["rounds"], d["migration"]["throttle_pct_max"], d["verified"])' <<<"$j")"
fi
if [ "$what" = demo ] || [ "$what" = all ]; then
	echo "== tinyvm: 1 GiB guest dirtying 256 MiB, 4 channels"
	for accel in kvm soft; do
		j=$("$BIN" demo --accel "$accel" --mem 1G --dirty 256M --channels 4 --json)
		echo "   $accel: $(get '"status %s, %s ms, downtime %s ms, %s rounds, verified %s, guest resumed %s" % (d["status"], d["migration"]["total_ms"], d["migration"]["downtime_ms"], d["migration"]["rounds"], d["verified"], d["guest_resumed"])' <<<"$j")"
	done
fi
