#!/usr/bin/env bash
# Install (or, with --check, only verify) the build dependencies of multifd on Debian.
# Run as root it installs what is missing with apt-get; otherwise it prints the exact command.
set -u
PKGS="build-essential pkg-config zlib1g-dev libzstd-dev liblz4-dev"
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

have_all() {
    command -v cc >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists zlib libzstd liblz4 2>/dev/null
}

missing_pkgs() {
    local p out=""
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
    done
    echo "$out"
}

if have_all; then exit 0; fi
miss=$(missing_pkgs)
[ -z "$miss" ] && miss=" $PKGS"
if [ "$check_only" = 1 ]; then
    echo "multifd: missing build dependencies:$miss" >&2
    echo "  run: make deps   (or: apt-get install -y$miss)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "multifd: missing build dependencies:$miss" >&2
    echo "  run as root: apt-get update && apt-get install -y$miss" >&2
    exit 1
fi
echo "multifd: installing build dependencies:$miss"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq $miss >/dev/null || apt-get install -y $miss
have_all || { echo "multifd: dependencies still missing after apt-get" >&2; exit 1; }
