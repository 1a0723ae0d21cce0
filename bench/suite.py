#!/usr/bin/env python3
"""netmon's whole benchmark suite, one command:

    python3 bench/suite.py [--quick] [--write]

Runs, in order, on the release build:
  interceptor   bench/run.py: overhead ratios with and without netmon (ping-pong, connect/close,
                getaddrinfo, bulk transfer), instructions per send() (callgrind), ring push cost
  ingest        collector: events drained from a ring into the tracker per second
  export        collector: spans and flow events per second to a local OTLP receiver, RSS
                during a backend outage
  /proc         procnet: one sampling pass with 10,000 sockets (in a fresh network namespace)
  lambda        bench/lambda.py: post-runtime overhead, cold start, RSS, layer size, with and
                without netmon on the local Lambda

and prints one table of every measure next to its target. With --write, the table replaces the
"Suite results" section of BENCHMARKS.md (with the date and the command). Exits 1 if a target is
missed. --quick is a smoke run (fewer repetitions, 10 s outage): not for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN = "<!-- suite results: written by bench/suite.py --write -->"
END = "<!-- end of suite results -->"


def run(cmd: list[str], env: dict | None = None) -> str:
    """Runs a benchmark command, echoing it; its output is returned (and shown on failure)."""
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if p.returncode not in (0, 1):  # 1: the bench ran and a target was missed
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"benchmark failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout


def number(pattern: str, text: str, what: str) -> float:
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"{what}: no match for {pattern!r} in its output:\n{text[-3000:]}")
    return float(m.group(1))


def measure(area, what, with_, unit, target=None, without=None, better="lower", command=""):
    return {"area": area, "measure": what, "without": without, "with": with_, "unit": unit,
            "target": target, "better": better, "command": command}


def interceptor(quick: bool, work: Path) -> list[dict]:
    out = work / "interceptor.json"
    cmd = ["python3", "bench/run.py", "--reps", "3" if quick else "9", "--json", str(out)]
    run(cmd + (["--quick"] if quick else []))
    return [{**m, "area": "interceptor", "command": " ".join(cmd[:4])} for m in json.loads(out.read_text())]


def ingest() -> list[dict]:
    cmd = ["cargo", "test", "-q", "--release", "-p", "netmon", "ingest_bench", "--",
           "--ignored", "--nocapture", "--test-threads", "1"]
    text = run(cmd)
    rate = number(r"= (\d+) events/s on one core", text, "ingest")
    return [measure("collector", "ring → tracker ingest", rate / 1e6, "M events/s", better="higher",
                    command=" ".join(cmd))]


def export(quick: bool) -> list[dict]:
    cmd = ["cargo", "test", "-q", "--release", "-p", "netmon", "telemetry::bench", "--",
           "--ignored", "--nocapture", "--test-threads", "1"]
    text = run(cmd, env={"NETMON_BENCH_OUTAGE_S": "10" if quick else "60"})
    c = " ".join(cmd)
    spans = number(r"= (\d+) spans per CPU-second, receiver", text, "spans")
    flows = number(r"= (\d+) events/s;", text, "flow events")
    rss = number(r"max RSS ([\d.]+) MiB", text, "outage RSS")
    secs = "10 s" if quick else "60 s"
    return [
        measure("export", "spans converted + exported over OTLP/gRPC, netmon CPU", spans / 1e3,
                "k spans/CPU-s", 200, better="higher", command=c),
        measure("export", "flow events aggregated into metrics", flows / 1e6, "M events/s", 1,
                better="higher", command=c),
        measure("export", f"RSS during a {secs} backend outage at 10,000 events/s", rss, "MiB", 64, command=c),
    ]


def proc_sampling() -> list[dict]:
    inner = "ip link set lo up && cargo bench -q -p netmon-procnet --bench sampling"
    cmd = ["unshare", "-n", "sh", "-c", inner]
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        cmd = ["sh", "-c", "cargo bench -q -p netmon-procnet --bench sampling"]  # no namespaces here
    text = run(cmd)
    c = f"unshare -n sh -c '{inner}'"
    ours = number(r"full pass, sock_diag \+ /proc/net \(netmon\)\s+median\s+([\d.]+) ms", text, "/proc pass")
    text_only = number(r"full pass, /proc/net text only \(fallback\)\s+median\s+([\d.]+) ms", text, "text pass")
    growth = number(r"heap growth over \d+ passes: (-?\d+) bytes", text, "heap growth")
    return [
        measure("/proc", "one sampling pass, 10,000 sockets (sock_diag)", ours, "ms", 20, command=c),
        measure("/proc", "one sampling pass, 10,000 sockets (/proc/net text fallback)", text_only, "ms",
                command=c),
        measure("/proc", "heap growth over 200 passes", growth, "bytes", 0, command=c),
    ]


def lambda_(quick: bool, work: Path) -> list[dict]:
    out = work / "lambda.json"
    cmd = ["python3", "bench/lambda.py", "--invocations", "15" if quick else "60",
           "--cold-starts", "2" if quick else "7", "--json", str(out)]
    run(cmd)
    c = " ".join(cmd[:6])
    return [{**m, "area": "lambda", "command": c} for m in json.loads(out.read_text())]


def met(m: dict) -> bool | None:
    if m["target"] is None or m["with"] is None:
        return None
    return m["with"] <= m["target"] if m["better"] == "lower" else m["with"] >= m["target"]


def fmt(v, unit: str) -> str:
    if v is None:
        return "—"
    if unit in ("ns", "instr", "bytes") or abs(v) >= 100:
        s = f"{v:,.0f}"
    else:
        s = f"{v:.3f}" if unit == "×" else f"{v:.2f}"
    return s + ("×" if unit == "×" else f" {unit}")


def table(measures: list[dict]) -> str:
    rows = ["| area | measure | without netmon | with netmon | target | met |", "|---|---|---|---|---|---|"]
    for m in measures:
        ok = met(m)
        target = "—" if m["target"] is None else ("≤ " if m["better"] == "lower" else "≥ ") + fmt(m["target"], m["unit"])
        rows.append(f"| {m['area']} | {m['measure']} | {fmt(m['without'], m['unit'])} | "
                    f"{fmt(m['with'], m['unit'])} | {target} | {'' if ok is None else ('yes' if ok else '**no**')} |")
    return "\n".join(rows)


def write(measures: list[dict], header: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"BENCHMARKS.md: the markers {BEGIN!r} … {END!r} are missing")
    commands = sorted({m["command"] for m in measures})
    block = "\n".join([
        BEGIN, "", header, "", table(measures), "",
        "The commands the suite ran (each can be run alone):", "",
        *[f"- `{c}`" for c in commands], "", END,
    ])
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer repetitions, not for BENCHMARKS.md")
    ap.add_argument("--write", action="store_true", help="put the results into BENCHMARKS.md")
    ap.add_argument("--only", help="comma-separated areas: interceptor,ingest,export,proc,lambda")
    args = ap.parse_args()
    if args.write and args.quick:
        raise SystemExit("--quick results are not for BENCHMARKS.md: drop --write or --quick")
    areas = set((args.only or "interceptor,ingest,export,proc,lambda").split(","))
    unknown = areas - {"interceptor", "ingest", "export", "proc", "lambda"}
    if unknown:
        raise SystemExit(f"--only: unknown area(s) {', '.join(sorted(unknown))}")
    if args.write and args.only:
        raise SystemExit("--write needs the whole suite: drop --only")
    run(["cargo", "build", "-q", "--release", "--workspace"])
    work = Path(tempfile.mkdtemp(prefix="netmon-suite-"))
    measures: list[dict] = []
    if "interceptor" in areas:
        measures += interceptor(args.quick, work)
    if "ingest" in areas:
        measures += ingest()
    if "export" in areas:
        measures += export(args.quick)
    if "proc" in areas:
        measures += proc_sampling()
    if "lambda" in areas:
        measures += lambda_(args.quick, work)
    header = (f"{date.today()}, `python3 bench/suite.py --write`, {platform.machine()}, "
              f"{os.cpu_count()} cores, Linux {platform.release()}")
    print(header + "\n")
    print(table(measures))
    if args.write:
        write(measures, header)
    missed = [m["measure"] for m in measures if met(m) is False]
    if missed:
        print(f"\ntargets missed: {'; '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
