#!/usr/bin/env bash
# tinyvm boot-sector mode: tests/data/bootsect.S, assembled here, starts in real mode without a
# BIOS, prints "real", enables A20 through port 0x92, switches to 32-bit protected mode, prints
# "prot", and shuts down through port 0x501 (or, built with HALT, halts with interrupts off,
# which must end the run too, also with a second vCPU left waiting for SIPI).  A triple fault
# must be reported as an error.  Skips (77) without KVM or without as/ld.
set -u
BIN=${MFD_BUILD:-build}/multifd
SRC=${MFD_ROOT:-.}/tests/data/bootsect.S
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v as >/dev/null && command -v ld >/dev/null || { echo "no as/ld: skipped"; exit 77; }
build() {	# output, extra as flags...
	local out=$1; shift
	as --32 "$@" -o "$T/$out.o" "$SRC" && \
		ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$T/$out" "$T/$out.o" ||
		fail "cannot assemble $SRC"
	[ "$(stat -c %s "$T/$out")" = 512 ] || fail "$out is not 512 bytes"
}
build boot.bin
build halt.bin --defsym HALT=1

"$BIN" vm run --accel kvm --boot-sector "$T/boot.bin" --mem 16M --serial "$T/serial" \
	--duration 10 >"$T/out" 2>"$T/err"
rc=$?
cat "$T/err" "$T/out"
[ $rc = 77 ] && { echo "KVM unavailable: skipped"; exit 77; }
[ $rc = 0 ] || fail "exit status $rc"
printf 'real\nprot\n' | cmp -s - "$T/serial" || { od -c "$T/serial"; fail "serial output"; }
grep -q 'state=stopped reason=shutdown-port exit_code=0' "$T/out" || fail "not a port shutdown"

for vcpus in 1 2; do
	"$BIN" vm run --accel kvm --boot-sector "$T/halt.bin" --mem 16M --vcpus $vcpus \
		--duration 10 >"$T/out" 2>&1 || { cat "$T/out"; fail "halt run ($vcpus vCPUs)"; }
	cat "$T/out"
	[ "$(grep -c -e '^real$' -e '^prot$' "$T/out")" = 2 ] || fail "halt run output"
	grep -q 'state=stopped reason=halt' "$T/out" || fail "HLT did not end the run"
done

# A guest that faults with an empty IDT (lidt of a zero limit, then ud2) must end the run as an
# error, exit status 1: a triple fault, or on some KVMs an emulation failure.
printf '\x0f\x01\x1e\x07\x7c\x0f\x0b\0\0\0\0\0\0' >"$T/ud2.bin"
"$BIN" vm run --accel kvm --boot-sector "$T/ud2.bin" --mem 16M --duration 5 >"$T/out" 2>&1
rc=$?
cat "$T/out"
[ $rc = 1 ] || fail "a failing guest exited $rc"
grep -q 'guest failed: vcpu0: ' "$T/out" || fail "no error message for the failing guest"
echo "ok"
