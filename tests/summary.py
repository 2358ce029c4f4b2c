#!/usr/bin/python3
"""Prints the closing line of a meson test run: 'N passed, N failed'
(with skipped), from meson-logs/testlog.json. Exits 1 when any failed or
when no test ran at all."""

import json
import sys

counts = {"passed": 0, "failed": 0, "skipped": 0}
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        result = json.loads(line)["result"]
        if result == "OK":
            counts["passed"] += 1
        elif result == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
print("tests: %(passed)d passed, %(failed)d failed, %(skipped)d skipped" % counts)
sys.exit(1 if counts["failed"] or not counts["passed"] else 0)
