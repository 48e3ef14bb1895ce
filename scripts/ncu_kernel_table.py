#!/usr/bin/env python3
"""Per-kernel GPU time from an Nsight Compute CSV (ncu --csv --page raw --metrics gpu__time_duration.sum).

Usage: ncu_kernel_table.py ncu.csv [--after NAME] [--steps N | --steps-from NAME]
Sums gpu__time_duration per kernel name over the launches after the last launch whose name contains
--after (e.g. the last kernel of a setup phase), divides by --steps (or by the number of launches whose
name contains --steps-from: a kernel that runs once per step), and prints the table, largest first.
ncu runs each kernel alone with caches flushed: weight-streaming kernels read HBM as in a real step;
activations that would sit in L2 are read cold, so small kernels look a little slower than in a step.
"""
import csv
import sys
from collections import defaultdict


def main():
    args = sys.argv[1:]
    path = args[0]
    after = args[args.index("--after") + 1] if "--after" in args else None
    steps = float(args[args.index("--steps") + 1]) if "--steps" in args else 1.0
    steps_from = args[args.index("--steps-from") + 1] if "--steps-from" in args else None
    rows = []
    scale = 1.0  # to nanoseconds
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prints its own log lines first
    reader = csv.DictReader(lines)
    for r in reader:
        name = r.get("Kernel Name") or r.get("Function Name") or ""
        t = r.get("gpu__time_duration.sum", "")
        try:
            rows.append((name, float(t.replace(",", "")) * scale))
        except ValueError:  # the units row
            scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(t.strip(), 1.0)
    if after:
        idx = [i for i, (n, _) in enumerate(rows) if after in n]
        rows = rows[idx[-1] + 1:] if idx else rows
    if steps_from:
        steps = float(max(1, sum(1 for n, _ in rows if steps_from in n)))
    tot = defaultdict(float)
    cnt = defaultdict(int)
    for n, t in rows:
        short = n.replace("(anonymous namespace)::", "").replace("<unnamed>::", "").replace("void ", "")
        short = short.split("(")[0].split("<")[0].strip().split("::")[-1]
        tot[short] += t
        cnt[short] += 1
    total = sum(tot.values())
    print(f"{len(rows)} launches, {total / steps / 1e3:.1f} us per step ({steps:g} steps)")
    print(f"{'kernel':<40} {'calls/step':>10} {'us/step':>10} {'share':>7}")
    for n in sorted(tot, key=tot.get, reverse=True):
        print(f"{n[:40]:<40} {cnt[n] / steps:>10.1f} {tot[n] / steps / 1e3:>10.1f} {100 * tot[n] / total:>6.1f}%")


if __name__ == "__main__":
    main()
