#!/usr/bin/env python3
"""Interceptor overhead benchmark: the same workloads with and without netmon, in one run.

    python3 bench/run.py [--reps N] [--quick]

Builds the release binaries and bench/overhead.c, runs every workload alternately plain and
under `netmon run` (which preloads libnetmon.so and runs the collector), and prints a Markdown
table of medians and ratios. Instructions per hooked send() come from callgrind (stable on a
noisy machine): the difference between 2N and N calls, with and without the interceptor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NETMON = REPO / "target" / "release" / "netmon"
LIB = REPO / "target" / "release" / "libnetmon.so"

# (mode, iterations, target ratio, what)
WORKLOADS = [
    ("pingpong", 20000, 1.03, "64-byte TCP ping-pong on loopback"),
    ("connect", 5000, 1.05, "socket + connect + close"),
    ("gai", 20000, 1.03, 'getaddrinfo("localhost")'),
    ("bulk", 2 << 30, None, "bulk transfer, 2 GiB in 64 KiB writes"),
]


def sh(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def elapsed(argv: list) -> float:
    out = sh(*argv).stdout.split()
    if len(out) != 3:
        raise SystemExit(f"unexpected output from {argv}: {out}")
    return int(out[2]) / 1e9


def callgrind_instructions(binary: Path, n: int, preload: bool, work: Path) -> int:
    out = work / f"cg.{n}.{int(preload)}"
    env = dict(os.environ)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "send", n]
    if preload:
        cmd = [NETMON, "run", "-q", "--"] + cmd
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, env=env)
    text = out.read_text(errors="replace")
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    if not m:
        raise SystemExit(f"no instruction total in {out}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7, help="repetitions of each workload and variant")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, not for BENCHMARKS.md)")
    ap.add_argument("--json", type=Path, help="also write the measures here (bench/suite.py reads them)")
    args = ap.parse_args()
    measures = []

    sh("cargo", "build", "--release", "--workspace", cwd=REPO)
    work = Path(tempfile.mkdtemp(prefix="netmon-bench-"))
    binary = work / "overhead"
    sh("gcc", "-O2", "-pthread", "-o", binary, REPO / "bench" / "overhead.c")

    print(f"netmon overhead benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.release()}\n")
    print("| workload | plain (median) | with netmon (median) | ratio | target |")
    print("|---|---|---|---|---|")
    failed = False
    for mode, n, target, what in WORKLOADS:
        if args.quick:
            n = max(n // 10, 1)
        plain, monitored = [], []
        for _ in range(args.reps):
            # The workload and its server share CPU 0 (same-core wake-ups are stable on a VM);
            # the collector is free to run on the other core.
            plain.append(elapsed(["taskset", "-c", "0", binary, mode, n]))
            monitored.append(elapsed([NETMON, "run", "-q", "--", "taskset", "-c", "0", binary, mode, n]))
        p, m = statistics.median(plain), statistics.median(monitored)
        ratio = m / p
        ok = target is None or ratio <= target
        failed |= not ok
        per = f"{p / n * 1e9:.0f} ns/op" if mode != "bulk" else f"{n / p / 2**30:.2f} GiB/s"
        per_m = f"{m / n * 1e9:.0f} ns/op" if mode != "bulk" else f"{n / m / 2**30:.2f} GiB/s"
        tgt = f"≤ {target:.2f}×" if target else "—"
        print(f"| {what} | {per} | {per_m} | {ratio:.3f}× {'' if ok else '(over target)'} | {tgt} |")
        if mode == "bulk":
            measures.append({"measure": f"{what}, throughput", "without": n / p / 2**30, "with": n / m / 2**30,
                             "unit": "GiB/s", "target": None, "better": "higher"})
        else:
            measures.append({"measure": f"{what}, time per call", "without": p / n * 1e9, "with": m / n * 1e9,
                             "unit": "ns", "target": None, "better": "lower"})
        measures.append({"measure": f"{what}, ratio", "without": None, "with": ratio, "unit": "×",
                         "target": target, "better": "lower"})

    n = 20000 if args.quick else 100000
    base1 = callgrind_instructions(binary, n, False, work)
    base2 = callgrind_instructions(binary, 2 * n, False, work)
    mon1 = callgrind_instructions(binary, n, True, work)
    mon2 = callgrind_instructions(binary, 2 * n, True, work)
    per_plain = (base2 - base1) / n
    per_mon = (mon2 - mon1) / n
    extra = per_mon - per_plain
    print(f"\nInstructions per send() call (callgrind, {n} vs {2 * n} calls): "
          f"{per_plain:.0f} without, {per_mon:.0f} with the interceptor: **{extra:.0f} extra** (target ≤ 150).")
    failed |= extra > 150
    measures.append({"measure": "instructions per send() (callgrind)", "without": per_plain, "with": per_mon,
                     "unit": "instr", "target": None, "better": "lower"})
    measures.append({"measure": "extra instructions per send() (callgrind)", "without": None, "with": extra,
                     "unit": "instr", "target": 150, "better": "lower"})

    out = sh("cargo", "bench", "-q", "-p", "netmon-proto", "--bench", "ring", cwd=REPO).stdout
    pushes = re.findall(r"ring push (.+?): ([\d.]+) ns", out)
    worst = {}
    for what, ns in pushes:
        worst[what] = max(worst.get(what, 0.0), float(ns))
    print("\nRing write (`cargo bench -p netmon-proto --bench ring`): "
          + ", ".join(f"{w}: {ns:.1f} ns" for w, ns in worst.items()) + " (target ≤ 25 ns).")
    failed |= any(ns > 25 for ns in worst.values())
    for what, ns in worst.items():
        measures.append({"measure": f"ring push, {what}", "without": None, "with": ns, "unit": "ns",
                         "target": 25, "better": "lower"})
    if args.json:
        args.json.write_text(json.dumps(measures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
