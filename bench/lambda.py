#!/usr/bin/env python3
"""Lambda overhead benchmark, against the local Lambda of the test suite.

    python3 bench/lambda.py [--invocations N]

Builds the release binaries and the layer, then runs the same Python function (awslambdaric;
each invocation resolves `localhost` and does an HTTP GET and POST over a keep-alive connection
to a local server) N times in three environments: without netmon, with the netmon layer
exporting OTLP/gRPC to a local rotel receiver in the default `background` flush policy, and the
same with `NETMON_FLUSH=end`. Prints a Markdown report: the extension's post-runtime duration
(Lambda's PostRuntimeExtensionsDuration: from the runtime's `next` to the last extension's
`next`), the function's runtime duration with and without the interceptor, the extension's
time from start to registered, its peak RSS, and the layer's size.
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
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from support import harness  # noqa: E402
from support.lambda_local import LambdaConfig, LocalLambda  # noqa: E402
from support.otlp import Rotel  # noqa: E402

NETMON = REPO / "target" / "release" / "netmon"
FUNCTION = REPO / "tests" / "e2e" / "lambda" / "functions" / "netmon_python"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def layer(work: Path) -> tuple[Path, int]:
    opt, zpath = harness.lambda_layer(NETMON, work)
    return opt, zpath.stat().st_size


def run(cfg: LambdaConfig, n: int, port: int) -> dict:
    lam = LocalLambda(cfg).start()
    try:
        event = {"port": port, "download": 10_000, "upload": 1_000, "resolve": "localhost"}
        post, runtime = [], []
        for _ in range(n):
            r = lam.invoke(event)
            if not r.ok:
                raise SystemExit(r.describe())
            runtime.append(r.runtime_duration_ms)
            if r.post_runtime_extensions_duration_ms is not None:
                post.append(r.post_runtime_extensions_duration_ms)
        rss_kib = None
        for pid in lam.pids():
            try:
                if Path(f"/proc/{pid}/exe").resolve().name == "netmon":
                    status = Path(f"/proc/{pid}/status").read_text()
                    rss_kib = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
            except OSError:
                pass
        registered = None
        for ln in lam.logs(source="extension:netmon"):
            m = re.search(r"extension registered in ([\d.]+) ms", ln.text)
            if m:
                registered = float(m.group(1))
        init_ms = lam.init_result.duration_ms if lam.init_result else None
        lam.shutdown()
        return {"post": post, "runtime": runtime, "rss_kib": rss_kib, "registered_ms": registered, "init_ms": init_ms}
    finally:
        lam.close()


def cold_starts(cfg: LambdaConfig, n: int) -> list[float]:
    """Init durations (extensions and runtime started, every one ready) of n fresh environments."""
    out = []
    for _ in range(n):
        lam = LocalLambda(cfg).start()
        try:
            if not (lam.init_result and lam.init_result.ok):
                raise SystemExit(f"init failed: {lam.init_result}")
            out.append(lam.init_result.duration_ms)
            lam.shutdown()
        finally:
            lam.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invocations", type=int, default=300)
    ap.add_argument("--cold-starts", type=int, default=7, help="fresh environments started for the init duration")
    ap.add_argument("--json", type=Path, help="also write the measures here (bench/suite.py reads them)")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--workspace"], cwd=REPO, check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="netmon-lambda-bench-"))
    opt, zip_size = layer(work)
    server = harness.start_server("http", work / "logs")
    rotel = Rotel(work / "logs").start()
    try:
        base = dict(function_dir=FUNCTION, handler="app.handler", runtime="python", work_dir=work)
        netmon_env = {
            "NETMON_SHM_DIR": str(work / "shm"),
            "NETMON_LIB": str(opt / "lib" / "libnetmon.so"),
            "NETMON_DEBUG": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rotel.grpc_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        wrapper = str(opt / "netmon-wrapper")
        plain = run(LambdaConfig(**base), args.invocations, server.port)
        background = run(
            LambdaConfig(**base, opt_dir=opt, env=netmon_env, exec_wrapper=wrapper), args.invocations, server.port
        )
        end = run(
            LambdaConfig(**base, opt_dir=opt, env={**netmon_env, "NETMON_FLUSH": "end"}, exec_wrapper=wrapper),
            args.invocations,
            server.port,
        )
        init_plain = cold_starts(LambdaConfig(**base), args.cold_starts)
        init_netmon = cold_starts(
            LambdaConfig(**base, opt_dir=opt, env=netmon_env, exec_wrapper=wrapper), args.cold_starts
        )
    finally:
        rotel.kill()
        server.stop()

    n = args.invocations
    print(f"netmon Lambda benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{n} invocations per environment (local Lambda, awslambdaric, OTLP/gRPC to rotel)\n")
    print("| measure | without netmon | netmon, flush=background | netmon, flush=end | target |")
    print("|---|---|---|---|---|")

    def ms(v):
        return f"{v:.2f} ms"

    print(f"| post-runtime extension duration, median | — | {ms(statistics.median(background['post']))} | "
          f"{ms(statistics.median(end['post']))} | ≤ 1 ms |")
    print(f"| post-runtime extension duration, p99 | — | {ms(pct(background['post'], 99))} | "
          f"{ms(pct(end['post'], 99))} | ≤ 5 ms |")
    print(f"| runtime duration (function code), median | {ms(statistics.median(plain['runtime']))} | "
          f"{ms(statistics.median(background['runtime']))} | {ms(statistics.median(end['runtime']))} | — |")
    print(f"| extension start → registered | — | {ms(background['registered_ms'] or float('nan'))} | "
          f"{ms(end['registered_ms'] or float('nan'))} | ≤ 10 ms |")
    ip, im = statistics.median(init_plain), statistics.median(init_netmon)
    print(f"| init duration (cold start), median of {args.cold_starts} | {ms(ip)} | {ms(im)} | | — |")
    rss = background["rss_kib"]
    print(f"| extension peak RSS | — | {rss / 1024:.1f} MiB | {(end['rss_kib'] or 0) / 1024:.1f} MiB | ≤ 16 MiB |")
    print(f"| layer zip | — | {zip_size / 2**20:.1f} MiB | | ≤ 8 MiB |")
    if args.json:
        measures = [
            ("post-runtime extension duration, median", None, statistics.median(background["post"]), "ms", 1),
            ("post-runtime extension duration, p99", None, pct(background["post"], 99), "ms", 5),
            ("post-runtime extension duration, median, flush=end", None, statistics.median(end["post"]), "ms", 1),
            ("post-runtime extension duration, p99, flush=end", None, pct(end["post"], 99), "ms", 5),
            ("runtime duration (function code), median", statistics.median(plain["runtime"]),
             statistics.median(background["runtime"]), "ms", None),
            ("init duration (cold start), median", ip, im, "ms", None),
            ("extension start → registered", None, background["registered_ms"], "ms", 10),
            ("extension peak RSS", None, (rss or 0) / 1024, "MiB", 16),
            ("extension peak RSS, flush=end", None, (end["rss_kib"] or 0) / 1024, "MiB", 16),
            ("layer zip", None, zip_size / 2**20, "MiB", 8),
        ]
        args.json.write_text(json.dumps([
            {"measure": m, "without": w, "with": v, "unit": u, "target": t, "better": "lower"}
            for m, w, v, u, t in measures
        ]))
    ok = (
        statistics.median(background["post"]) <= 1
        and pct(background["post"], 99) <= 5
        and (background["registered_ms"] or 99) <= 10
        and (rss or 1 << 30) <= 16 * 1024
        and zip_size <= 8 << 20
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
