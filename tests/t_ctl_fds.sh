#!/usr/bin/env bash
# Issue 9, item 2: a control client can never make the VM use descriptors of its own by number.
# "fd:N" URIs are refused (the VM keeps working: its own descriptors untouched), a bare "fd:"
# without descriptors is refused, descriptors passed with a request that takes none are
# refused and closed; descriptors passed over the control socket (SCM_RIGHTS) carry a live
# migration (connections the client opened to the destination) and a save (a file the client
# opened: one buffered descriptor, or a buffered and an O_DIRECT one), which `inspect` finds
# valid and from which a new VM restores.
set -u
. "${MFD_ROOT:-.}/tests/ctl_lib.sh" fds
refused() {	# reply, what it must say
	grep -q '"ok":false' <<<"$1" && grep -q -- "$2" <<<"$1" || fail "expected a refusal saying '$2': $1"
}

VM=(--accel soft --mem 64M --workload dirty:8M)
vm_start src "${VM[@]}" --fill random; SRC=$LAST_PID
wait_running "$T/src.sock"

# By number: refused, whatever the numbers (0..2 are stdio, 3.. the VM's own: KVM, sockets).
for uri in fd:5,6 fd:0,1,2 fd:3 "fd:7,8,9,10,11"; do
	r=$("$BIN" ctl "$T/src.sock" migrate "$uri")
	[ $? = 1 ] || fail "migrate $uri: exit status not 1"
	refused "$r" "descriptors of the VM process"
done
r=$($PEER request "$T/src.sock" '{"cmd":"migrate","uri":"fd:"}'); refused "$r" "passed with the request"
r=$($PEER request "$T/src.sock" '{"cmd":"query"}' --fd-file "$T/junk"); refused "$r" "query takes no descriptors"
r=$($PEER request "$T/src.sock" '{"cmd":"migrate","uri":"tcp:127.0.0.1:9"}' --fd-file "$T/junk")
refused "$r" "takes them"
r=$($PEER request "$T/src.sock" '{"cmd":"save","path":"x"}' --fd-file "$T/junk"); refused "$r" "not both"
r=$($PEER request "$T/src.sock" '{"cmd":"save","direct_io":true}' --fd-file "$T/junk"); refused "$r" "needs 2"
r=$($PEER request "$T/src.sock" '{"cmd":"migrate","uri":"fd:","channels":3}' --fd-file "$T/j1" --fd-file "$T/j2")
refused "$r" "make 1 data channels"
many=(); for i in $(seq 70); do many+=(--fd 0); done
r=$($PEER request "$T/src.sock" '{"cmd":"migrate","uri":"fd:"}' "${many[@]}"); refused "$r" "dropped"
kill -0 $SRC || fail "the VM died"
"$BIN" ctl "$T/src.sock" query | grep -q '"vm":"running"' || fail "the guest stopped running"
echo "refusals ok"

r=$("$BIN" ctl "$T/src.sock" migrate fd:); refused "$r" "passed with the request"

# A save on passed descriptors (`multifd ctl --fd`): one buffered, then a buffered and an
# O_DIRECT one.
r=$("$BIN" ctl "$T/src.sock" save --fd 3 --live --wait 3<>"$T/a.snap") ||
	fail "save on a descriptor: $r $("$BIN" ctl "$T/src.sock" query | cut -c1-400)"
grep -q '"status":"completed"' <<<"$r" || fail "save on a descriptor: $r"
"$BIN" inspect "$T/a.snap" >"$T/inspect.log" || fail "the saved file is not valid: $(cat "$T/inspect.log")"
if r=$($PEER request "$T/src.sock" '{"cmd":"save"}' --fd-file "$T/b.snap" --fd-file "$T/b.snap:direct"); then
	grep -q '"ok":true' <<<"$r" || fail "save on two descriptors refused: $r"
	st=$(wait_final "$T/src.sock")
	if [ "$st" = completed ]; then
		"$BIN" inspect "$T/b.snap" >/dev/null || fail "the O_DIRECT save is not valid"
		echo "save on a buffered and an O_DIRECT descriptor: valid"
	else	# a file system without O_DIRECT refuses it with EINVAL: not ours to test then
		"$BIN" ctl "$T/src.sock" query | grep -q 'Invalid argument' || fail "O_DIRECT save: $st"
		echo "O_DIRECT unsupported here: that part skipped"
	fi
else
	echo "cannot open a file with O_DIRECT here: that part skipped"
fi
"$BIN" ctl "$T/src.sock" query | grep -q '"vm":"running"' || fail "the guest did not run on after the saves"
"$BIN" vm run "${VM[@]}" --restore "$T/a.snap" --duration 0.3 --serial /dev/null >"$T/restore.log" 2>&1 ||
	fail "restore of the file saved on a descriptor"
grep -q "verify=ok" "$T/restore.log" || fail "restored guest: $(cat "$T/restore.log")"
echo "save on a descriptor: valid, restored"

# A live migration over connections the client opened and passed (bash opens them).
vm_start dst "${VM[@]}" --incoming tcp:127.0.0.1:0
uri=$(incoming_uri "$T/dst.sock") || exit 1
hp=${uri#tcp:}
host=${hp%:*} port=${hp##*:}
r=$("$BIN" ctl "$T/src.sock" migrate --fd 3 --fd 4 --fd 5 --wait 3<>"/dev/tcp/$host/$port" \
	4<>"/dev/tcp/$host/$port" 5<>"/dev/tcp/$host/$port") ||
	fail "migration over passed descriptors: $r $("$BIN" ctl "$T/src.sock" query | cut -c1-400)"
grep -q '"channels":2' <<<"$("$BIN" ctl "$T/src.sock" query)" || fail "3 descriptors did not make 2 data channels"
wait_running "$T/dst.sock"
echo "migration over 3 passed connections: completed"
