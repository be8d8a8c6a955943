#!/usr/bin/env python3
"""tests/pngstat.py PNG [COLOR...] — what a picture holds, for tests that render one: prints
"WIDTH HEIGHT NONWHITE_FRACTION" and, for each COLOR given as RRGGBB, how many pixels are within
40 of it in every channel.  A small PNG reader (8-bit RGB/RGBA, not interlaced: what
rsvg-convert writes), so that no imaging library is needed."""
import struct, sys, zlib

def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("%s: not a PNG" % path)
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                sys.exit("%s: unsupported PNG (depth %d, type %d)" % (path, depth, ctype))
            bpp = 4 if ctype == 6 else 3
        elif kind == b"IDAT":
            idat += body
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev = [], bytearray(stride)
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
        rows.append(line)
        prev = line
    return w, h, bpp, rows

w, h, bpp, rows = read_png(sys.argv[1])
colors = [tuple(int(c[i:i + 2], 16) for i in (0, 2, 4)) for c in sys.argv[2:]]
counts, nonwhite = [0] * len(colors), 0
for line in rows:
    for x in range(w):
        px = line[x * bpp:x * bpp + 3]
        if bpp == 4 and line[x * bpp + 3] == 0:
            px = (255, 255, 255)
        if min(px) < 245:
            nonwhite += 1
        for k, c in enumerate(colors):
            if all(abs(px[i] - c[i]) <= 40 for i in range(3)):
                counts[k] += 1
print(w, h, "%.4f" % (nonwhite / (w * h)), *counts)
