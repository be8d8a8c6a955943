#!/usr/bin/env bash
# Packaging (issue 12): `make install` into a temporary DESTDIR puts the header, the shared
# library (file, soname link, development link), the archive, multifd.pc, the command and the
# man pages where PREFIX and LIBDIR say; examples/transfer.c builds against that installed
# library with `pkg-config --cflags --libs multifd`, links the shared library (ldd), and moves
# a buffer between two processes; every public function has a man page that renders without a
# warning; the shared library exports exactly the functions the header declares, each with
# the version node of the linker map; `make uninstall` removes everything it installed.
set -u
ROOT=${MFD_ROOT:-.}
BUILD=${MFD_BUILD:-$ROOT/build}
T=$(mktemp -d /tmp/mfd-t-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v pkg-config >/dev/null || { echo "no pkg-config"; exit 77; }
# The packaging is that of the plain build: a sanitizer build's library needs its runtime first.
[ "$(basename "$BUILD")" = build ] || { echo "packaging is checked in the plain build"; exit 77; }

D=$T/root
# The build directory of this run (a sanitizer build has its own): make knows it as BUILD.
make -C "$ROOT" -s BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr LIBDIR=/usr/lib64 install >"$T/make.log" 2>&1 ||
	{ cat "$T/make.log"; fail "make install"; }
ver=$(sed -n 's/^#define MFD_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' "$ROOT/include/multifd.h" | paste -sd.)
major=${ver%%.*}
for f in usr/include/multifd.h usr/lib64/libmultifd.so.$ver usr/lib64/libmultifd.a \
	 usr/lib64/pkgconfig/multifd.pc usr/bin/multifd usr/share/man/man1/multifd.1 \
	 usr/share/man/man3/libmultifd.3; do
	[ -e "$D/$f" ] || fail "$f not installed"
done
[ "$(readlink "$D/usr/lib64/libmultifd.so.$major")" = "libmultifd.so.$ver" ] || fail "soname link"
[ "$(readlink "$D/usr/lib64/libmultifd.so")" = "libmultifd.so.$ver" ] || fail "development link"
soname=$(readelf -d "$D/usr/lib64/libmultifd.so.$ver" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libmultifd.so.$major" ] || fail "soname is '$soname'"
grep -qx "libdir=/usr/lib64" "$D/usr/lib64/pkgconfig/multifd.pc" || fail "multifd.pc: libdir"
grep -qx "Version: $ver" "$D/usr/lib64/pkgconfig/multifd.pc" || fail "multifd.pc: version"
echo "installed: version $ver, soname libmultifd.so.$major"

# The example, built through pkg-config against the staged installation.
export PKG_CONFIG_PATH="$D/usr/lib64/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
flags=$(pkg-config --cflags --libs multifd) || fail "pkg-config multifd"
grep -q -- "-L$D/usr/lib64" <<<"$flags" && grep -q -- "-I$D/usr/include" <<<"$flags" ||
	fail "pkg-config flags: $flags"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror "$ROOT/examples/transfer.c" $flags -o "$T/transfer" ||
	fail "examples/transfer.c does not build against the installed library"
out=$(LD_LIBRARY_PATH="$D/usr/lib64" ldd "$T/transfer") || fail "ldd"
grep -q "libmultifd.so.$major => $D/usr/lib64/libmultifd.so.$major" <<<"$out" ||
	fail "the example does not use the installed shared library: $out"
out=$(LD_LIBRARY_PATH="$D/usr/lib64" timeout 60 "$T/transfer" 16) || fail "the example failed: $out"
grep -q "libmultifd $ver" <<<"$out" && grep -q "moved 16 MiB .*: identical" <<<"$out" ||
	fail "the example said: $out"
echo "example: $(tail -n 1 <<<"$out")"
# -L build -lmultifd takes the shared library too (the development link is in the build tree).
cc -std=c11 -I"$ROOT/include" "$ROOT/examples/transfer.c" -L"$BUILD" -lmultifd -o "$T/t2" ||
	fail "-L build -lmultifd"
readelf -d "$T/t2" | grep -q "NEEDED.*libmultifd.so.$major" || fail "-L build -lmultifd linked the archive"

# Exports: the header's functions, no more, each in a version node of the map.
nm -D --defined-only "$D/usr/lib64/libmultifd.so.$ver" | awk '$3 ~ /^mfd_/ {print $3}' |
	sort >"$T/exported"
grep -c "@@MULTIFD_" "$T/exported" | grep -qx "$(wc -l <"$T/exported")" || fail "a symbol without a version node"
sed 's/@@.*//' "$T/exported" | sort >"$T/names"
grep -oE "MFD_API [^;]*[ *(]mfd_[a-z0-9_]+\)?\(" "$ROOT/include/multifd.h" |
	grep -oE "mfd_[a-z0-9_]+\)?\($" | tr -d '()' | sort -u >"$T/declared"
# The 0.1 entry points behind the macros of growing structs are exported too.
grep -oE "^#define (mfd_[a-z0-9_]+)\(" "$ROOT/include/multifd.h" | sed 's/#define //; s/(//' >>"$T/declared"
sort -u -o "$T/declared" "$T/declared"
diff "$T/declared" "$T/names" || fail "exported symbols differ from the header's functions"
echo "exports: $(wc -l <"$T/names") functions, every one with its version node"

# Man pages: one for every function (a page or a .so link), each rendering without a warning.
M=$D/usr/share/man
while read -r fn; do
	[ -f "$M/man3/$fn.3" ] || fail "no man page for $fn"
	warn=$(cd "$M" && groff -s -man -Tutf8 -ww -z "man3/$fn.3" 2>&1) || fail "groff $fn"
	[ -z "$warn" ] || fail "man3/$fn.3: $warn"
done <"$T/declared"
for p in "$M"/man3/*.3 "$M"/man1/*.1; do
	warn=$(cd "$M" && groff -s -man -Tutf8 -ww -z "${p#"$M"/}" 2>&1)
	[ -z "$warn" ] || fail "$p: $warn"
done
echo "man pages: every function has one, all render cleanly"

make -C "$ROOT" -s BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr LIBDIR=/usr/lib64 uninstall ||
	fail "make uninstall"
left=$(find "$D" -type f -o -type l)
[ -z "$left" ] || fail "left after uninstall: $left"
echo "uninstall: nothing left"
