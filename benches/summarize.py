#!/usr/bin/env python3
"""Summarizes a results TSV of benches/compare.sh: medians per tool and step, ratios to cairn.

Rows are: run, tool, step, value, peak KiB. Time steps have seconds as value; `repo_tree` and
`dump2_added` have bytes. A ratio above 1 means the other tool takes longer (or stores more).
"""

import statistics
import sys
from collections import defaultdict

TIME_STEPS = [
    ("backup", "initial backup of the tree"),
    ("rebackup", "unchanged re-backup"),
    ("restore", "restore of the tree"),
    ("check", "check --read-data"),
    ("dump1", "day-1 dump from stdin"),
    ("dump2", "day-2 dump from stdin"),
]
SIZE_STEPS = [("repo_tree", "repository after the tree"), ("dump2_added", "bytes the day-2 dump adds")]


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def main(path):
    values = defaultdict(list)
    memory = defaultdict(list)
    runs = set()
    for line in open(path):
        run, tool, step, value, kib = line.rstrip("\n").split("\t")
        runs.add(run)
        values[(tool, step)].append(float(value))
        memory[(tool, step)].append(int(kib))
    tools = [t for t in ("cairn", "restic", "rustic") if any(k[0] == t for k in values)]
    med = {k: statistics.median(v) for k, v in values.items()}
    mem = {k: statistics.median(v) for k, v in memory.items()}

    def cell(tool, step, fmt):
        if (tool, step) not in med:
            return "-"
        text = fmt(med[(tool, step)])
        base = med.get(("cairn", step))
        if tool != "cairn" and base:
            text += f" ({med[(tool, step)] / base:.2f}x)"
        return text

    print(f"Medians of {len(runs)} run(s); (Nx) = that tool's figure divided by cairn's.\n")
    print("| step | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for step, label in TIME_STEPS:
        print(f"| {label} | " + " | ".join(cell(t, step, lambda v: f"{v:.2f} s") for t in tools) + " |")
    if ("cp", "restore") in med:
        cp = med[("cp", "restore")]
        base = med.get(("cairn", "restore"))
        ratio = f" (cairn restore = {base / cp:.2f}x cp)" if base else ""
        print(f"| `cp -a` of the tree | {cp:.2f} s{ratio} |" + " |" * (len(tools) - 1))
    for step, label in SIZE_STEPS:
        print(f"| {label} | " + " | ".join(cell(t, step, human) for t in tools) + " |")
    print("\nPeak RSS (median):\n")
    print("| step | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for step, label in TIME_STEPS:
        row = [human(mem[(t, step)] * 1024) if (t, step) in mem else "-" for t in tools]
        print(f"| {label} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
