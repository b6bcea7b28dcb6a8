#!/usr/bin/env bash
# Checks the online report's HTML page as a person sees it: renders the report of a generated
# event set (`nectar bench report` writes the data dir) with `nectar report --out …html`, then
# has headless Chromium (Debian package, installed if missing) take a screenshot and dump the
# DOM it rendered. Fails when the screenshot is missing or near-empty, when the DOM lacks an
# SVG chart per endpoint × 3 (CTR per day, lift, funnel) or their text, or when the page asks
# for anything over the network.
#
#   scripts/check-report-html.sh [OUT_DIR]    # default target/report-check; look at report.png
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/target/report-check}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NECTAR=$TARGET/debug/nectar

log() { echo "check-report-html: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
fi

(cd "$ROOT" && cargo build -q -p nectar-cli)
rm -rf "$OUT"
mkdir -p "$OUT"
"$NECTAR" bench report --data-dir "$OUT/data" --served 20000 --hits 2000 --days 7 >"$OUT/bench.json"
"$NECTAR" report --data-dir "$OUT/data" --format json --out "$OUT/report.json"
"$NECTAR" report --data-dir "$OUT/data" --out "$OUT/report.html"
endpoints=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["endpoints"]))' "$OUT/report.json")
[ "$endpoints" -ge 1 ] || fail "the generated set reported no endpoint"

chrome() {
  # No network, no background services: the page must stand on its own.
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" "$@" 2>>"$OUT/chromium.log"
}
chrome --screenshot="$OUT/report.png" --window-size=1200,2000 "file://$OUT/report.html" >/dev/null
chrome --dump-dom "file://$OUT/report.html" >"$OUT/dom.html"

[ -s "$OUT/report.png" ] || fail "no screenshot ($OUT/report.png); see $OUT/chromium.log"
python3 - "$OUT/report.png" "$OUT/dom.html" "$endpoints" <<'PY'
import re, struct, sys, zlib

png, dom_path, endpoints = sys.argv[1], sys.argv[2], int(sys.argv[3])

def pixels(path):
    """Decodes an 8-bit RGB(A) non-interlaced PNG (what Chromium writes) into rows of bytes."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"unexpected PNG format {depth}/{ctype}"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line)); prev = line
    return w, h, bpp, rows

w, h, bpp, rows = pixels(png)
non_white = sum(1 for r in rows for i in range(0, len(r), bpp) if r[i:i + 3] != b"\xff\xff\xff")
colours = {r[i:i + 3] for r in rows[::4] for i in range(0, len(r), bpp * 4)}
share = non_white / (w * h)
print(f"screenshot {w}x{h}: {share:.1%} non-white pixels, {len(colours)} colours (sampled)")
assert share > 0.02 and len(colours) > 20, "the screenshot is near-empty"

dom = open(dom_path).read()
svgs = dom.count("<svg")
print(f"DOM: {svgs} <svg> charts for {endpoints} endpoint(s), {dom.count('<text')} SVG text elements")
assert svgs == 3 * endpoints, f"want {3 * endpoints} charts"
assert dom.count("<text") >= 10 * svgs, "the charts have (almost) no text: not drawn?"
assert "chart not drawn" not in dom
loads = re.findall(r'(?:src|href)\s*=\s*"(?:https?:)?//|url\(|<script|<link|@import', dom)
assert not loads, f"the page loads resources: {loads}"
PY
log "ok: $OUT/report.png ($(stat -c %s "$OUT/report.png") bytes), DOM in $OUT/dom.html"
