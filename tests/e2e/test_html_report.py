"""`netmon run --html FILE`: the self-contained report, opened in headless Chromium.

A Python program (its own little server it connects to, an HTTP download through `localhost`,
a refused connection, a child process talking to a server by address) runs under netmon with
`--json` and `--html`; Chromium opens the report from the file system with its network features
off, and the graph it drew (published by the page in #netmon-drawn) must be the one the --json
summary describes: processes → domains → ip:port, clients → processes, bytes and failures on
the edges, widths growing with the bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import harness
from support.otlp import free_port

ASSETS = harness.REPO / "collector" / "assets"


def chromium() -> str:
    path = harness.which("chromium")
    assert path, "chromium is missing; scripts/install-test-deps.sh installs it"
    return path


def dump_dom(page: Path) -> str:
    """The DOM after the page's scripts ran."""
    with tempfile.TemporaryDirectory(prefix="netmon-chromium-") as profile:
        p = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=60,
        )
    assert p.returncode == 0 and "</html>" in p.stdout, p.stderr[-3000:]
    return p.stdout


def script_json(html: str, element_id: str):
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m, f"no #{element_id}"
    return json.loads(m.group(1))


def expected_graph(summary: dict) -> tuple[dict, dict]:
    """The report's rules, from the --json summary: nodes by id (kind), edges by (source,
    target) with their summed numbers."""
    nodes = {f"p:{summary['pid']}": "process"}
    edges: dict[tuple[str, str], dict] = {}

    def add(a: str, b: str, f: dict) -> None:
        e = edges.setdefault((a, b), {"bytes_sent": 0, "bytes_received": 0, "connections": 0, "failed": 0})
        e["bytes_sent"] += f["bytes_sent"] or 0
        e["bytes_received"] += f["bytes_received"] or 0
        e["connections"] += f["connections"]
        e["failed"] += f["failed"]

    for f in summary["flows"]:
        for pid in f["pids"]:
            p = f"p:{pid}"
            nodes[p] = "process"
            if f["direction"] == "incoming":
                nodes[f"c:{f['dst_ip']}"] = "client"
                add(f"c:{f['dst_ip']}", p, f)
                continue
            ip = f"[{f['dst_ip']}]" if f["family"] == "IPv6" else f["dst_ip"]
            e = f"e:{ip}:{f['dst_port']}" if f["dst_port"] is not None else f"e:{ip}"
            nodes[e] = "endpoint"
            if f["dst_domain"]:
                d = f"d:{f['dst_domain']}"
                nodes[d] = "domain"
                add(p, d, f)
                add(d, e, f)
            else:
                add(p, e, f)
    for d in summary["dns"]:
        nodes[f"d:{d['name']}"] = "domain"
    return nodes, edges


PROGRAM = """
import socket, subprocess, sys, threading, urllib.request
http_port, raw_port, closed = map(int, sys.argv[1:4])
# A server of our own, and a connection to it: an incoming and an outgoing flow.
srv = socket.create_server(("127.0.0.1", 0))
def serve():
    c, _ = srv.accept()
    c.sendall(c.recv(100) * 3)
    c.close()
threading.Thread(target=serve, daemon=True).start()
s = socket.create_connection(("127.0.0.1", srv.getsockname()[1]))
s.sendall(b"x" * 50)
got = b""
while len(got) < 150:
    got += s.recv(1000)
s.close()
urllib.request.urlopen(f"http://localhost:{http_port}/download?size=300000").read()
try:
    socket.create_connection(("127.0.0.2", closed), timeout=5)
except ConnectionRefusedError:
    pass
# A child process with its own connection, by address.
child = (
    "import socket, sys\\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\\n"
    "s.sendall((4).to_bytes(4, 'big') + (2000).to_bytes(4, 'big') + b'abcd')\\n"
    "n = 0\\n"
    "while n < 2000:\\n"
    "    n += len(s.recv(4096))\\n"
    "s.close()\\n"
)
subprocess.run([sys.executable, "-c", child, str(raw_port)], check=True)
"""


@pytest.mark.requires("chromium")
def test_the_report_draws_the_runs_graph_and_tables(run_netmon, http_backend, raw_backend, tmp_path):
    page = tmp_path / "report.html"
    closed = free_port()
    result = run_netmon(
        [harness.PYTHON, "-c", PROGRAM, str(http_backend.port), str(raw_backend.port), str(closed)],
        netmon_args=["--html", str(page), "-q"],
    )
    harness.assert_ran_ok(result)
    summary = result.summary
    html = page.read_text()
    where = f"\n{result.describe()}"

    # Self-contained: nothing to fetch, and the page may not fetch anything.
    assert "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html), "the page refers to the network"
    assert "<link" not in html and "@import" not in html

    dom = dump_dom(page)
    drawn = script_json(dom, "netmon-drawn")
    nodes, edges = expected_graph(summary)
    assert {n["id"]: n["kind"] for n in drawn["nodes"]} == nodes, f"\n{drawn}{where}"
    got = {(e["source"], e["target"]): e for e in drawn["edges"]}
    assert set(got) == set(edges), f"\n{drawn}{where}"
    for key, want in edges.items():
        e = got[key]
        for field in ("bytes_sent", "bytes_received", "connections", "failed"):
            assert (e[field] or 0) == want[field], f"{key} {field}: {e}\n{want}{where}"

    # The run's shape: two processes, localhost resolved, the refused address failed.
    main = f"p:{summary['pid']}"
    assert sum(1 for k in nodes.values() if k == "process") == 2, where
    assert ("c:127.0.0.1", main) in got and (main, "d:localhost") in got, where
    refused = got[(main, f"e:127.0.0.2:{closed}")]
    assert refused["status"] == "failed" and refused["failed"] == 1, refused
    assert next(n for n in drawn["nodes"] if n["id"] == f"e:127.0.0.2:{closed}")["failed"]
    # Width grows with the bytes: the largest edge is the widest ok edge.
    ok = [e for e in drawn["edges"] if e["status"] == "ok"]
    by_bytes = sorted(ok, key=lambda e: (e["bytes_sent"] or 0) + (e["bytes_received"] or 0))
    widths = [e["width"] for e in by_bytes]
    assert widths == sorted(widths) and widths[-1] > widths[0], by_bytes

    # The tables: one row per DNS name and per flow of the summary.
    dns_rows = re.findall(r"<tr><td>([^<]*)</td>", dom.split('id="dns"', 1)[1].split("</table>", 1)[0])
    assert dns_rows == [d["name"] for d in summary["dns"]], dns_rows
    flows_table = dom.split('id="flows"', 1)[1].split("</table>", 1)[0]
    assert flows_table.count("<tr><td>") == len(summary["flows"]), flows_table
    assert "ECONNREFUSED" in flows_table


def test_the_vendored_library_is_the_one_the_manifest_names():
    manifest = json.loads((ASSETS / "vendor.json").read_text())
    data = (ASSETS / manifest["vendored"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert manifest["integrity"].startswith("sha512-") and manifest["package"] == "cytoscape"
    assert f"{manifest['version']}".count(".") == 2


def test_an_unwritable_report_stops_before_the_command(tmp_path):
    marker = tmp_path / "ran"
    p = harness.run_netmon_raw(["run", "--html", str(tmp_path / "missing" / "r.html"), "--", "touch", str(marker)])
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netmon: cannot write the HTML report"), p.stderr
    assert not marker.exists()
