#!/usr/bin/env bash
# bench/run.sh — the figures we report, each a ratio (or a rate with its target) measured in one
# run on this machine.  Machines are shared and noisy: every figure is taken REPEAT times
# (default 3) and all samples are printed, with the median.
#
#   bench/run.sh [transfer|zero|live|demo|vm|vm-dirty|vm-fresh|vm-snap|all]
#
# The vm modes run two tinyvm processes (`vm run` + `ctl`, KVM where it works) and need root for
# the page-cache drops of vm-snap; SNAPDIR (default /var/tmp) is where vm-snap writes 2 GiB twice.
set -u
BIN=${MFD_BUILD:-build}/multifd
REPEAT=${REPEAT:-3}
what=${1:-all}
[ -x "$BIN" ] || { echo "build first: make" >&2; exit 1; }
. "$(dirname "$0")/vm_lib.sh"
trap vm_cleanup EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

if [ "$what" = transfer ] || [ "$what" = all ]; then
	echo "== 2 GiB random, 4 channels, loopback tcp: multifd vs a plain copy in the same run (target: median >= 0.9, every sample >= 0.75)"
	# multifd bench itself takes the (ours, baseline) pairs and reports the median ratio.
	j=$("$BIN" bench --mem 2G --channels 4 --fill random --baseline --repeat "$((REPEAT < 7 ? 7 : REPEAT))" --json) || exit 1
	get '"\n".join("   %s MiB/s vs %s MiB/s: ratio %s, %s CPU-s/GiB" % (s["memory_mib_s"], s["baseline_mib_s"], s["ratio"], s["cpu_s_per_gib"]) for s in d["samples"])' <<<"$j"
	echo "   median ratio $(get 'd["ratio"]' <<<"$j"), lowest $(get 'min(s["ratio"] for s in d["samples"])' <<<"$j"), verified $(get 'd["verified"]' <<<"$j")"
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
		j=$("$BIN" demo --accel "$accel" --mem 1G --dirty 256M --channels 4 --json 2>/dev/null)
		echo "   $accel: $(get '"status %s, %s ms, downtime %s ms, %s rounds, verified %s, guest resumed %s" % (d["status"], d["migration"]["total_ms"], d["migration"]["downtime_ms"], d["migration"]["rounds"], d["verified"], d["guest_resumed"])' <<<"$j")"
	done
fi
if [ "$what" = vm ] || [ "$what" = all ]; then
	echo "== a 2 GiB random idle tinyvm guest (vm run --prealloc on the destination + ctl migrate, 4 channels)"
	echo "   against multifd bench of the same size, pairs in one run (target: VM <= 1.1x bench;"
	echo "   CPU of both VM processes <= 0.6 s per GiB; downtime <= 15 ms)"
	for i in $(seq "$REPEAT"); do
		b=$("$BIN" bench --mem 2G --channels 4 --fill random --repeat 1 --json) || exit 1
		bms=$(get 'd["migration"]["total_ms"]' <<<"$b")
		vm_pair 2G idle "--fill random" "--prealloc" || exit 1
		v=$(vm_migrate 4) || { echo "   VM migration failed: $v"; exit 1; }
		vm_stop
		echo "   bench ${bms} ms ($(get 'd["cpu_s_per_gib"]' <<<"$b") CPU-s/GiB in its sessions); VM $(kv "$v" total_ms) ms:" \
			"$(python3 -c "print('%.2f' % ($(kv "$v" total_ms) / $bms))")x; VM CPU $(kv "$v" cpu_s_per_gib) s/GiB" \
			"(source $(kv "$v" cpu_src_s) s, destination $(kv "$v" cpu_dst_s) s), downtime $(kv "$v" downtime_ms) ms," \
			"guest started $(kv "$v" start_ms) ms after, ${v%% *}"
	done
fi
if [ "$what" = vm-dirty ] || [ "$what" = all ]; then
	echo "== a 2 GiB tinyvm guest rewriting 256 MiB, 4 channels, downtime limit 300 ms (target: downtime <= 60 ms)"
	for i in $(seq "$REPEAT"); do
		vm_pair 2G dirty:256M "--fill random" "--prealloc" || exit 1
		v=$(vm_migrate 4) || { echo "   VM migration failed: $v"; exit 1; }
		vm_stop
		echo "   downtime $(kv "$v" downtime_ms) ms, $(kv "$v" rounds) rounds, $(kv "$v" total_ms) ms," \
			"guest started $(kv "$v" start_ms) ms after, CPU $(kv "$v" cpu_s_per_gib) s/GiB, ${v%% *}"
	done
fi
if [ "$what" = vm-fresh ] || [ "$what" = all ]; then
	echo "== a fresh 8 GiB tinyvm guest (nothing written): target <= 50 ms, destination RSS + < 64 MiB"
	for i in $(seq "$REPEAT"); do
		vm_pair 8G idle "" "" || exit 1
		v=$(vm_migrate 4) || { echo "   VM migration failed: $v"; exit 1; }
		vm_stop
		echo "   $(kv "$v" total_ms) ms ($(python3 -c "t=$(kv "$v" total_ms); print('%.0f GiB/s' % (8 / (t / 1000)) if t else 'under 1 ms')")), downtime $(kv "$v" downtime_ms) ms," \
			"destination RSS +$(( $(kv "$v" dst_rss_kib) / 1024 )) MiB, ${v%% *}"
	done
fi
if [ "$what" = vm-snap ] || [ "$what" = all ]; then
	echo "== snapshots of a 2 GiB random idle tinyvm guest, page checksums on, in ${SNAPDIR:-/var/tmp}:"
	echo "   ctl save PATH against dd writing 2 GiB to a new file with fsync, in turns (one goes"
	echo "   first, then the other); eager restore (cold page cache) against dd reading the file"
	echo "   (target: both >= 0.9x dd, on the medians)"
	[ "$(id -u)" = 0 ] || { echo "   needs root (drop_caches)"; exit 1; }
	[ "$REPEAT" -ge 2 ] || { echo "   needs REPEAT >= 2 (the save and dd take turns going first)"; exit 1; }
	dir=$(mktemp -d "${SNAPDIR:-/var/tmp}/mfd-bench-snap.XXXXXX")
	VM_ALL_DIRS+=("$dir")
	head -c 2G /dev/urandom >"$dir/src" && sync || exit 1
	ms() { python3 -c "import sys; print(round((int(sys.argv[2]) - int(sys.argv[1])) / 1e6))" "$@"; }
	vm_pair 2G idle "--fill random" "" || exit 1
	saves=() dds=() rests=() reads=()
	for i in $(seq "$REPEAT"); do
		for turn in 1 2; do
			sync
			t0=$(date +%s%N)
			if [ $(( (i + turn) % 2 )) = 0 ]; then
				"$BIN" ctl "$VM_DIR/src.sock" save "$dir/g.snap" --wait >/dev/null 2>&1 ||
					{ echo "   save failed"; exit 1; }
				s=$(ms "$t0" "$(date +%s%N)")
			else
				dd if="$dir/src" of="$dir/dd.out" bs=1M conv=fsync status=none || exit 1
				w=$(ms "$t0" "$(date +%s%N)")
			fi
		done
		echo 3 >/proc/sys/vm/drop_caches
		"$BIN" vm run --accel "${ACCEL:-auto}" --mem 2G --workload idle --restore "$dir/g.snap" \
			--duration 0.05 >"$dir/restore.log" 2>&1 || { echo "   restore failed"; exit 1; }
		ready=$(sed -n 's/.*ready in \([0-9.]*\) ms.*/\1/p' "$dir/restore.log")
		echo 3 >/proc/sys/vm/drop_caches
		t0=$(date +%s%N); dd if="$dir/dd.out" of=/dev/null bs=1M status=none; r=$(ms "$t0" "$(date +%s%N)")
		echo "   $([ $((i % 2)) = 1 ] && echo "save first" || echo "dd first  "): save ${s} ms, dd+fsync ${w} ms;" \
			"eager restore ready in ${ready} ms, dd read ${r} ms"
		saves+=("$s") dds+=("$w") rests+=("$ready") reads+=("$r")
		rm -f "$dir/g.snap" "$dir/dd.out"
	done
	vm_stop
	# The second writer of a pair pays for the first (the host's disk behind this machine's own
	# is busy with it for seconds): compare save and dd in the same place of their pairs.
	pos() { local k; for k in $(seq "$2" 2 "$REPEAT"); do eval "echo \${$1[$((k - 1))]}"; done | median; }
	s1=$(pos saves 1) d1=$(pos dds 2) s2=$(pos saves 2) d2=$(pos dds 1)
	mr=$(printf '%s\n' "${rests[@]}" | median) mq=$(printf '%s\n' "${reads[@]}" | median)
	echo "   medians writing first: save ${s1} ms, dd ${d1} ms: $(python3 -c "print('%.2f' % ($d1 / $s1))")x;" \
		"writing second: save ${s2} ms, dd ${d2} ms: $(python3 -c "print('%.2f' % ($d2 / $s2))")x"
	echo "   median restore ${mr} ms, dd read ${mq} ms: $(python3 -c "print('%.2f' % ($mq / $mr))")x"
fi
