#!/usr/bin/env bash
# bench/qemu.sh — reference benchmark: multifd against the distribution's QEMU (7.2 on Debian 12),
# both measured in ONE run on this machine, moving the same 2 GiB of random bytes of a PAUSED
# guest (bench/vs-qemu migrates running guests, VM to VM; bench/README.md has both and the targets).
#
# Measured, REPEAT times each (default 2), interleaved so that noise hits every configuration alike:
#   qemu precopy      QEMU migrates a paused guest whose 2 GiB of RAM hold random data, 1 TCP stream
#   qemu multifd xN   the same with the multifd capability and multifd-channels N (default 4)
#   multifd x1        build/multifd bench --mem 2G --channels 1 --fill random --json
#   multifd xN        build/multifd bench --mem 2G --channels N --fill random --json
# All over loopback TCP (127.0.0.1).  Machines are shared and noisy: all samples are printed, with
# the median.
#
#   bench/qemu.sh                     REPEAT=2 CHANNELS=4 by default
#   REPEAT=3 CHANNELS=8 bench/qemu.sh
#   QEMU_BENCH_DIR=/tmp bench/qemu.sh where the 2 GiB random file goes (default /dev/shm)
#   QEMU_VERIFY=0 bench/qemu.sh       skip the full comparison of the destination's RAM
#   QEMU_PREALLOC=off bench/qemu.sh   do not pre-fault the source's RAM (see below)
#   FRESH_DEST=1 bench/qemu.sh        neither destination pre-faults its RAM (QEMU without
#                                     prealloc, multifd bench --fresh-dest): first touches timed
#
# QEMU set-up (see the command lines printed at the start of a run):
#  - source: the guest RAM is a private mapping (share=off) of a 2 GiB file of random bytes, via
#    -object memory-backend-file,id=pc.ram,...  -machine memory-backend=pc.ram (id pc.ram so that
#    the RAM block has the same name as the destination's default RAM), prealloc=on so that the
#    RAM is resident in the source before the migration starts, as a running guest's would be (the
#    private copy is made at start-up, outside the measurement; QEMU_PREALLOC=off maps the file
#    lazily instead); started paused (-S), no disk, no kernel, no devices (-nodefaults); before
#    migrating, a few guest-physical addresses are read with HMP "xp" and compared with the file;
#  - destination: anonymous RAM pre-faulted before the migration (memory-backend-ram with
#    prealloc=on, id pc.ram), as multifd bench pre-faults its receiving memory: this machine's
#    host takes freed memory back, and a first touch of fresh memory costs whatever luck gives
#    (bench/README.md); FRESH_DEST=1 leaves both destinations fresh; the same machine type,
#    -incoming defer, then migrate-incoming tcp:127.0.0.1:PORT;
#  - max-bandwidth set to 100 GB/s (QEMU's default cap of 128 MiB/s would be unfair), multifd
#    capability and multifd-channels set on both sides for the multifd runs;
#  - accel kvm, or tcg if QEMU cannot start with kvm (said in the output);
#  - after completion the destination's RAM is spot-checked (every sample) and, on the first
#    sample of each QEMU configuration, dumped with pmemsave and compared in full with the file
#    (except the legacy VGA/BIOS window 0xa0000-0xfffff, which is not guest RAM on a pc machine).
# Each QEMU sample uses fresh source and destination processes; both are killed at the end and on
# error, temporary files removed.
#
# What the numbers measure:
#  - QEMU total-time: from the "migrate" command to the migration's completion on the SOURCE,
#    including QEMU's setup (setup-time, also shown; for multifd it includes opening the channels).
#    QEMU's "throughput" is its own ram.mbps field (transferred bytes / (total-time - setup-time)),
#    shown converted to MiB/s.  "to dest" is the wall time from the migrate command until the
#    destination has left the inmigrate state (polled every 10 ms).
#  - multifd total_ms: from the start of the transfer session to the destination's commit,
#    excluding connection set-up; every page is verified with a digest on both sides.
#  - MiB/s in the table: guest RAM (2048 MiB) divided by the median time.
# Exit status: 0 on success, 1 on failure, 77 when QEMU is missing and cannot be installed.
set -u
BIN=${MFD_BUILD:-build}/multifd
REPEAT=${REPEAT:-2}
CHANNELS=${CHANNELS:-4}
MEM_MIB=2048
VERIFY=${QEMU_VERIFY:-1}
PREALLOC=${QEMU_PREALLOC:-on}
FRESH_DEST=${FRESH_DEST:-0}
DST_RAM=(-object memory-backend-ram,id=pc.ram,size=2G,prealloc=on -machine memory-backend=pc.ram)
MFD_FRESH=()
[ "$FRESH_DEST" = 1 ] && { DST_RAM=(); MFD_FRESH=(--fresh-dest); }
QEMU=qemu-system-x86_64

cd "$(dirname "$0")/.." || exit 1
[ -x "$BIN" ] || { echo "build first: make" >&2; exit 1; }
case $CHANNELS in [1-9] | [1-5][0-9] | 6[0-4]) ;; *) echo "CHANNELS must be 1..64" >&2; exit 1 ;; esac
case $REPEAT in [1-9] | [1-9][0-9]) ;; *) echo "REPEAT must be 1..99" >&2; exit 1 ;; esac
start_s=$(date +%s)

# 1. QEMU (bench/qmp.py installs it with apt-get if it can)
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed" >&2; exit 1; }
python3 bench/qmp.py ensure-qemu || exit $?

# 2. scratch space, clean-up
base=${QEMU_BENCH_DIR:-/dev/shm}
need_kib=$(( (MEM_MIB * (VERIFY == 1 ? 2 : 1) + 256) * 1024 ))
if [ "$(df -Pk "$base" 2>/dev/null | awk 'NR == 2 { print $4 }')" -lt "$need_kib" ] 2>/dev/null; then
	echo "   not enough room in $base, using /tmp"
	base=/tmp
fi
tmp=$(mktemp -d "$base/multifd-qemu.XXXXXX") || exit 1
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PIDS=()
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM HUP

# The per-migration driver and the table; the QMP client and the memory checks are bench/qmp.py's.
cat >"$tmp/drive.py" <<'PYEOF'
import json, random, sys, time
sys.path.insert(0, 'bench')
from qmp import QMP, BenchError, spot_check_file, dump_compare_file

def migrate(src_path, dst_path, mode, channels, rand, size, verify, dump):
    src, dst = QMP(src_path), QMP(dst_path)
    caps = [{'capability': 'multifd', 'state': mode == 'multifd'}]
    for q in (src, dst):
        q.cmd('migrate-set-capabilities', capabilities=caps)
        if mode == 'multifd':
            q.cmd('migrate-set-parameters', **{'multifd-channels': channels})
    src.cmd('migrate-set-parameters', **{'max-bandwidth': 100 * 1000 ** 3})
    params = src.cmd('query-migrate-parameters')
    kvm = src.cmd('query-kvm')
    rng = random.Random()
    addrs = [0x100000, size - 4096] + [rng.randrange(0x100000, size - 32) & ~7 for _ in range(6)]
    spot_check_file(src, rand, addrs, 'source')
    if src.cmd('query-status')['status'] != 'prelaunch':
        sys.exit('source is not paused')
    dst.cmd('migrate-incoming', uri='tcp:127.0.0.1:0')
    port = dst.cmd('query-migrate')['socket-address'][0]['port']
    t0 = time.monotonic()
    src.cmd('migrate', uri='tcp:127.0.0.1:%s' % port)
    done = dst_done = None
    while done is None or dst_done is None:
        now = time.monotonic()
        if now - t0 > 300:
            sys.exit('migration did not complete in 300 s')
        if done is None:
            r = src.cmd('query-migrate')
            st = r.get('status')
            if st == 'completed':
                done = src.query_completed()
            elif st in ('failed', 'cancelled'):
                sys.exit('migration %s: %s' % (st, r.get('error-desc', '')))
        if dst_done is None and dst.cmd('query-status')['status'] != 'inmigrate':
            dst_done = time.monotonic() - t0
        if done is None or dst_done is None:
            time.sleep(0.01)
    dst_status = dst.cmd('query-status')['status']
    r = dst.cmd('query-migrate')
    if r.get('status') not in (None, 'completed'):
        sys.exit('destination migration status %s' % r.get('status'))
    spot_check_file(dst, rand, addrs, 'destination')
    full = False
    if verify:
        dump_compare_file(dst, rand, size, dump)
        full = True
    ram = done.get('ram', {})
    out = {
        'cfg': 'qemu-' + mode, 'channels': channels if mode == 'multifd' else 1,
        'total_ms': done['total-time'], 'setup_ms': done.get('setup-time', 0),
        'downtime_ms': done.get('downtime'), 'to_dest_ms': round(dst_done * 1000),
        'qemu_mbps': ram.get('mbps'), 'transferred': ram.get('transferred'),
        'normal_pages': ram.get('normal'), 'zero_pages': ram.get('duplicate'),
        'max_bandwidth': params.get('max-bandwidth'), 'kvm': kvm.get('enabled'),
        'dst_status': dst_status, 'spot_checks': 2 * len(addrs), 'full_compare': full,
    }
    for q in (src, dst):
        try:
            q.cmd('quit')
        except BenchError:
            pass
    print(json.dumps(out))

def table(path, channels, mem_mib):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    def med(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    def by(cfg):
        return [r for r in rows if r['cfg'] == cfg]
    mib = lambda ms: mem_mib / (ms / 1000.0) if ms else float('nan')
    cfgs = [('qemu-precopy', 'QEMU 7.2 precopy (1 stream)'),
            ('qemu-multifd', 'QEMU 7.2 multifd x%d' % channels),
            ('multifd-1', 'multifd x1'),
            ('multifd-%d' % channels, 'multifd x%d' % channels)]
    m = {}
    print('%-28s %-20s %9s %9s   %s' % ('configuration', 'samples (ms)', 'median ms', 'MiB/s', 'other (medians)'))
    for cfg, name in cfgs:
        rs = by(cfg)
        if not rs:
            continue
        t = med([r['total_ms'] for r in rs])
        m[cfg] = t
        if cfg.startswith('qemu'):
            xfer = med([r['total_ms'] - r['setup_ms'] for r in rs])
            m[cfg + '/xfer'] = xfer
            other = 'setup %s ms, total-setup %s ms (%.0f MiB/s), QEMU throughput %.0f MiB/s, to dest %s ms' % (
                med([r['setup_ms'] for r in rs]), xfer, mib(xfer),
                med([r['qemu_mbps'] for r in rs]) * 1e6 / 8 / 2 ** 20, med([r['to_dest_ms'] for r in rs]))
        else:
            other = 'its own throughput %.0f MiB/s, setup %s ms' % (
                med([r['throughput_mib_s'] for r in rs]), med([r['setup_ms'] for r in rs]))
        print('%-28s %-20s %9s %9.0f   %s' % (name, ' '.join(str(r['total_ms']) for r in rs), t, mib(t), other))
    print()
    for ours, theirs, name in (('multifd-1', 'qemu-precopy', 'multifd x1 / QEMU precopy'),
                               ('multifd-%d' % channels, 'qemu-multifd',
                                'multifd x%d / QEMU multifd x%d' % (channels, channels))):
        if ours in m and theirs in m:
            print('%-36s %.2fx on QEMU total-time, %.2fx on QEMU total-time minus setup' % (
                name, m[theirs] / m[ours], m[theirs + '/xfer'] / m[ours]))
    print('(a paused guest: the plain copy of the same bytes bounds every tool; the 2x target is for a\n running guest, bench/vs-qemu; bench/README.md)')

if __name__ == '__main__':
    a = sys.argv
    try:
        if a[1] == 'migrate':
            migrate(a[2], a[3], a[4], int(a[5]), a[6], int(a[7]), a[8] == '1', a[9])
        elif a[1] == 'table':
            table(a[2], int(a[3]), int(a[4]))
    except BenchError as e:
        sys.exit(str(e))
PYEOF
py() { python3 "$tmp/drive.py" "$@"; }

# 3. the random file (outside the measurements)
rand=$tmp/guest-ram.rand
t0=$(date +%s%N)
python3 bench/qmp.py random-file "$rand" "$((MEM_MIB << 20))" || exit 1
echo "== $MEM_MIB MiB of random data in $rand, prepared in $(( ($(date +%s%N) - t0) / 1000000 )) ms (not measured)"

ACCEL=kvm
SRC=() DST=()
mk_cmds() {
	SRC=("$QEMU" -name mfd-bench-src -accel "$ACCEL" -nodefaults -no-user-config -display none -S
		-machine pc -m 2G
		-object "memory-backend-file,id=pc.ram,size=2G,mem-path=$rand,share=off,prealloc=$PREALLOC" -machine memory-backend=pc.ram
		-qmp "unix:$tmp/src.qmp,server=on,wait=off")
	DST=("$QEMU" -name mfd-bench-dst -accel "$ACCEL" -nodefaults -no-user-config -display none -S
		-machine pc -m 2G "${DST_RAM[@]}"
		-qmp "unix:$tmp/dst.qmp,server=on,wait=off" -incoming defer)
}
# start_qemu src|dst: starts it, waits for its QMP socket; sets $qpid (not in a subshell: PIDS)
start_qemu() {
	local name=$1 sock=$tmp/$1.qmp
	rm -f "$sock"
	if [ "$name" = src ]; then "${SRC[@]}" >"$tmp/$name.log" 2>&1 &
	else "${DST[@]}" >"$tmp/$name.log" 2>&1 &
	fi
	qpid=$!
	PIDS+=("$qpid")
	for _ in $(seq 200); do
		[ -S "$sock" ] && return 0
		kill -0 "$qpid" 2>/dev/null || break
		sleep 0.05
	done
	return 1
}
stop_qemu() {
	local p q keep=()
	for p in "$@"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for q in "${PIDS[@]}"; do
		for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
		keep+=("$q")
	done
	PIDS=("${keep[@]}")
}

# kvm, or tcg if QEMU cannot start with kvm
mk_cmds
if ! start_qemu src; then
	echo "   QEMU did not start with -accel kvm:"
	sed 's/^/     /' "$tmp/src.log"
	stop_qemu "${PIDS[@]}"
	ACCEL=tcg
	mk_cmds
	echo "   falling back to -accel tcg (QEMU figures are then not the KVM reference)"
	start_qemu src || { echo "QEMU does not start at all:" >&2; cat "$tmp/src.log" >&2; exit 1; }
fi
python3 -c 'import sys; sys.path.insert(0, "bench"); from qmp import QMP; QMP(sys.argv[1]).cmd("quit")' \
	"$tmp/src.qmp" || exit 1
stop_qemu "$qpid"

echo "== $("$QEMU" --version | head -1), accel $ACCEL; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   source:      ${SRC[*]}"
echo "   destination: ${DST[*]}"
echo "   then QMP: migrate-set-capabilities multifd on|off (both), migrate-set-parameters multifd-channels $CHANNELS"
echo "   (both, multifd only), max-bandwidth 100000000000 (source); migrate-incoming / migrate tcp:127.0.0.1:PORT"
echo "   multifd:     $BIN bench --mem 2G --channels 1|$CHANNELS --fill random --json ${MFD_FRESH[*]}"

results=$tmp/results.jsonl
: >"$results"
fail() {
	echo "FAILED: $*" >&2
	local f
	for f in "$tmp"/src.log "$tmp"/dst.log; do [ -s "$f" ] && { echo "-- $f:" >&2; cat "$f" >&2; }; done
	exit 1
}
qemu_sample() {	# MODE SAMPLE
	local mode=$1 i=$2 ps pd j v=0
	[ "$VERIFY" = 1 ] && [ "$i" = 1 ] && v=1
	start_qemu dst || fail "destination QEMU did not start"
	pd=$qpid
	start_qemu src || fail "source QEMU did not start"
	ps=$qpid
	j=$(py migrate "$tmp/src.qmp" "$tmp/dst.qmp" "$mode" "$CHANNELS" "$rand" "$((MEM_MIB << 20))" "$v" "$tmp/dst.dump") ||
		fail "QEMU $mode migration"
	stop_qemu "$ps" "$pd"
	echo "$j" >>"$results"
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print("   %-14s #%s  total-time %5d ms (setup %3d ms)  QEMU throughput %5.0f MiB/s  to dest %5d ms  downtime %s ms  sent %.0f MiB, %s normal + %s zero pages; spot checks %d ok%s" % (
    d["cfg"], sys.argv[2], d["total_ms"], d["setup_ms"], d["qemu_mbps"] * 1e6 / 8 / 2 ** 20, d["to_dest_ms"],
    d["downtime_ms"], d["transferred"] / 2 ** 20, d["normal_pages"], d["zero_pages"], d["spot_checks"],
    ", full RAM compare ok" if d["full_compare"] else ""))' "$j" "$i"
}
mfd_sample() {	# CHANNELS SAMPLE
	local ch=$1 i=$2 j
	j=$("$BIN" bench --mem 2G --channels "$ch" --fill random --json "${MFD_FRESH[@]}") || fail "multifd bench --channels $ch: $j"
	python3 -c '
import json, sys
d = json.loads(sys.argv[1]); d["cfg"] = "multifd-" + sys.argv[2]
if d.get("status") != "completed" or d.get("verified") is not True: sys.exit("not completed and verified: %s" % sys.argv[1])
m = d["migration"]      # the session figures (docs/json.md): kept flat, as the QEMU records are
d.update(total_ms=m["total_ms"], setup_ms=m["setup_ms"], throughput_mib_s=m["throughput_mib_s"])
open(sys.argv[4], "a").write(json.dumps(d) + "\n")
print("   %-14s #%s  total_ms   %5d ms (setup %3d ms)  its throughput  %5.0f MiB/s  verified %s" % (
    d["cfg"], sys.argv[3], d["total_ms"], d["setup_ms"], d["throughput_mib_s"], d["verified"]))' "$j" "$ch" "$i" "$results" ||
		fail "multifd bench --channels $ch"
}

echo "== samples (REPEAT=$REPEAT, configurations interleaved)"
for i in $(seq "$REPEAT"); do
	qemu_sample precopy "$i"
	qemu_sample multifd "$i"
	mfd_sample 1 "$i"
	mfd_sample "$CHANNELS" "$i"
done

echo
echo "== $MEM_MIB MiB random RAM, loopback TCP, medians of $REPEAT ($(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg))"
py table "$results" "$CHANNELS" "$MEM_MIB"
cat <<EOF
   QEMU total-time: the migrate command to completion on the source, including setup-time (for
   multifd, opening the channels); "total-setup" excludes it; QEMU throughput = its ram.mbps field
   (bytes sent / (total-time - setup-time)); "to dest": until the destination left inmigrate (±10 ms).
   multifd total_ms: start of the transfer session to the destination's commit, excluding connection
   set-up, every page digest-verified.  MiB/s column: $MEM_MIB MiB / median time.
EOF
echo "== done in $(( $(date +%s) - start_s )) s"
