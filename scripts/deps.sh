#!/usr/bin/env bash
# Install (or, with --check, only verify) the dependencies of multifd on Debian.
#
# Build: a C compiler and pkg-config (the code links only libc, libpthread and libm; zlib, zstd
# and lz4 join when the codecs land).  Tests: python3 (the control-protocol peers), groff (the
# man pages are checked), rsvg-convert from librsvg2-bin (the timeline picture is rendered), and
# ip and nft (iproute2, nftables: two network namespaces and the faults between them).
# --check verifies the build's only: a machine without the test tools still builds, and the tests
# that need one skip (exit 77).  Run as root, the default installs what is missing of both with
# apt-get; otherwise it prints the exact command.
set -u
BUILD_PKGS="build-essential pkg-config"
TEST_PKGS="python3 groff-base librsvg2-bin iproute2 nftables"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

have_build() {
    command -v cc >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1
}

have_test() {
    command -v python3 >/dev/null 2>&1 && command -v groff >/dev/null 2>&1 &&
        command -v rsvg-convert >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 &&
        command -v nft >/dev/null 2>&1
}

missing_pkgs() {
    local p out=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
    done
    echo "$out"
}

if [ "$check_only" = 1 ]; then
    have_build && exit 0
    miss=$(missing_pkgs $BUILD_PKGS)
    [ -z "$miss" ] && miss=" $BUILD_PKGS"
    echo "multifd: missing build dependencies:$miss" >&2
    echo "  run: make deps   (or: apt-get install -y$miss)" >&2
    exit 1
fi
if have_build && have_test; then exit 0; fi
# shellcheck disable=SC2086
miss=$(missing_pkgs $BUILD_PKGS $TEST_PKGS)
[ -z "$miss" ] && miss=" $BUILD_PKGS $TEST_PKGS"
if [ "$(id -u)" != 0 ]; then
    echo "multifd: missing dependencies:$miss" >&2
    echo "  run as root: apt-get update && apt-get install -y$miss" >&2
    # Without the test tools the build still works (their tests skip); without a compiler not.
    have_build && exit 0
    exit 1
fi
echo "multifd: installing dependencies:$miss"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq $miss >/dev/null || apt-get install -y $miss
have_build && have_test || { echo "multifd: dependencies still missing after apt-get" >&2; exit 1; }
