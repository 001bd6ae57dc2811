#!/usr/bin/env python3
"""Writes DIRS directories of FILES files of 4 KiB each, every file distinct, under ROOT.

Usage: python3 benches/gen_many_files.py ROOT DIRS FILES
The README's memory-against-the-number-of-files table uses 30 x 1000 and 300 x 1000.
"""
import os, sys, random
root = sys.argv[1]; dirs = int(sys.argv[2]); per = int(sys.argv[3])
rng = random.Random(7)
block = bytes(rng.getrandbits(8) for _ in range(1 << 16))
for d in range(dirs):
    p = os.path.join(root, f"d{d:04}")
    os.makedirs(p, exist_ok=True)
    for f in range(per):
        n = d * per + f
        off = (n * 4099) % (len(block) - 4096)
        with open(os.path.join(p, f"f{f:05}"), "wb") as h:
            h.write(n.to_bytes(8, "little") + block[off:off + 4088])
