#!/usr/bin/env python3
"""Writes the calibration text the quantization tests use: the first 40 modules of this Python's standard
library by name (varied code, a few hundred kB, and no part of tiny-code's held-out file).

    python3 tests/support/calibration_text.py OUT.txt
"""
import glob
import os
import sys

files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:40]
assert len(files) == 40, "fewer than 40 standard-library modules found"
with open(sys.argv[1], "w") as out:
    for f in files:
        out.write(open(f, encoding="utf-8", errors="replace").read())
