#!/usr/bin/env bash
# The timeline picture (issue 12): `bench --timeline` of a live, capped migration (several
# rounds, a downtime) writes an SVG that rsvg-convert renders to a PNG of the expected size,
# mostly white but with a real share of drawing, in which the throughput line, the dirty-rate
# line, the remaining-bytes area and the downtime band each show in their colour; the SVG marks
# one round start per round the statistics count.  Skips (77) without rsvg-convert (make deps
# installs it: librsvg2-bin).
set -u
BIN=${MFD_BUILD:-build}/multifd
ROOT=${MFD_ROOT:-.}
T=$(mktemp -d /tmp/mfd-t-timeline.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v rsvg-convert >/dev/null || { echo "no rsvg-convert (apt-get install librsvg2-bin)"; exit 77; }

j=$("$BIN" bench --mem 128M --dirty 32M --max-bandwidth 150M --channels 2 --json \
	--timeline "$T/t.svg") || fail "bench: $j"
rounds=$(python3 -c 'import json,sys; d=json.load(sys.stdin)["migration"]; print(d["rounds"], d["downtime_ms"])' <<<"$j")
read -r rounds downtime <<<"$rounds"
[ "$rounds" -ge 2 ] || fail "a capped live migration made $rounds round(s): no picture of rounds"
marks=$(grep -c 'class="round"' "$T/t.svg")
# A round shorter than the sampling period can fall between two samples: most must show.
[ "$marks" -ge $((rounds * 2 / 3)) ] && [ "$marks" -le "$rounds" ] ||
	fail "$marks round marks for $rounds rounds"
rsvg-convert -o "$T/t.png" "$T/t.svg" || fail "rsvg-convert refused the SVG"
read -r w h ink blue orange green red <<<"$(python3 "$ROOT/tests/pngstat.py" "$T/t.png" 1f77b4 ff7f0e 2ca02c f1b1b1)"
echo "png ${w}x$h, ${ink} drawn, pixels: throughput $blue, dirty rate $orange, remaining $green, downtime $red; $rounds rounds, downtime $downtime ms"
[ "$w" = 960 ] && [ "$h" = 660 ] || fail "picture of ${w}x$h"
python3 -c "import sys; sys.exit(0 if 0.03 < $ink < 0.6 else 1)" || fail "$ink of the picture drawn"
[ "$blue" -ge 100 ] || fail "no throughput line"
[ "$orange" -ge 50 ] || fail "no dirty-rate line"
[ "$green" -ge 500 ] || fail "no remaining-bytes area"
[ "$downtime" -gt 0 ] && { [ "$red" -ge 20 ] || fail "no downtime band"; }
echo "timeline picture ok"
