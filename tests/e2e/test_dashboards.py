"""The Grafana dashboards (dashboards/*.json) against a real Prometheus-compatible backend.

Real programs run under netmon — `netmon run` of a Python program (HTTP downloads through
`localhost`, refused connections, a lookup of a name that does not exist through dnsmasq in a
network namespace) and a Python function in the local Lambda with the netmon layer (several
invocations) — exporting OTLP/HTTP to VictoriaMetrics started with Prometheus naming. Then every
query of every metrics panel, and every variable, runs through VictoriaMetrics' PromQL API with
the variables filled in the way Grafana does, and must return data carrying the labels the panel
reads: legend labels, table columns, node graph fields. The node graph's edges must be the
run's destinations, as its --json summary lists them.

The static checks (uids, variables, every name against the schema) are Rust tests
(collector/src/telemetry/dashboards.rs). Tempo and Jaeger panels cannot run here.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import harness
from support.lambda_local import LambdaConfig, LocalLambda
from support.netns import NX_NAME
from support.otlp import Rotel, VictoriaMetrics, free_port

DASHBOARDS = harness.E2E.parent.parent / "dashboards"
FUNCTIONS = harness.E2E / "lambda" / "functions"
SERVICE = os.path.basename(harness.PYTHON)  # service.name of `netmon run -- python3 ...`
FUNCTION = "netmon-dashboards-fn"  # service.name of the Lambda function
WINDOW = "5m"  # $__rate_interval: every sample of the runs is inside it
RANGE = "10m"  # $__range


def load_dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def metric_targets() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, refId) of every PromQL query."""
    return [
        (uid, p["title"], t["refId"])
        for uid, d in load_dashboards().items()
        for p in panels(d)
        for t in p.get("targets", [])
        if "expr" in t
    ]


def panel(uid: str, title: str) -> dict:
    return next(p for p in panels(load_dashboards()[uid]) if p["title"] == title)


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def fill(text: str, values: dict[str, str]) -> str:
    """Grafana's interpolation: `$v`, `${v}`, `${v:regex}`, `[[v]]` (multi-value variables
    become a regex alternation, as Grafana formats them for Prometheus); `$1` stays."""

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, m.group(0))

    return VARIABLE.sub(sub, text)


class Backend:
    def __init__(self, vm: VictoriaMetrics):
        self.vm = vm

    def get(self, path: str, **params) -> dict:
        urllib.request.urlopen(f"http://127.0.0.1:{self.vm.port}/internal/force_flush", timeout=10).read()
        url = f"http://127.0.0.1:{self.vm.port}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{path} {params}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def query_range(self, expr: str) -> list[dict]:
        now = time.time()
        return self.get("/api/v1/query_range", query=expr, start=now - 600, end=now, step="15s")["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        return self.get(f"/api/v1/label/{label}/values", **{"match[]": match})


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, netmon_bin, http_backend, dns_netns):
    """VictoriaMetrics holding what netmon exported for a `netmon run` and a local Lambda."""
    tmp = tmp_path_factory.mktemp("dashboards")
    # The layer (extension + interceptor + wrapper) is built while the first run goes on.
    builder = ThreadPoolExecutor(max_workers=1)
    layer = builder.submit(harness.lambda_layer, netmon_bin, tmp)
    vm = VictoriaMetrics(tmp / "logs", "-opentelemetry.usePrometheusNaming").start()
    rotel = Rotel(tmp / "logs").start()  # traces go here; only the metrics are queried
    lam = None
    try:
        otel = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": vm.otlp_metrics_url,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{rotel.http_port}/v1/traces",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "cumulative",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
        closed = free_port()
        # A name that does not exist, looked up through dnsmasq in the namespace: NXDOMAIN.
        look = f"import socket\ntry:\n    socket.getaddrinfo({NX_NAME!r}, 80)\nexcept socket.gaierror:\n    pass\n"
        code = (
            "import socket, subprocess, sys, time, urllib.request\n"
            f"look = {look!r}\n"
            f"subprocess.run(['ip', 'netns', 'exec', {dns_netns.name!r}, sys.executable, '-c', look], check=True)\n"
            "end = time.monotonic() + 1.5\n"
            "while time.monotonic() < end:\n"
            f"    urllib.request.urlopen('http://localhost:{http_backend.port}/download?size=20000').read()\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.2', {closed}), timeout=5)\n"
            "    except ConnectionRefusedError:\n"
            "        pass\n"
            "    time.sleep(0.1)\n"
        )
        run = harness.run_netmon([harness.PYTHON, "-c", code], json_dir=tmp, env=otel,
                                 netmon_args=["--exporter", "otlp,console"])
        harness.assert_ran_ok(run)

        opt = layer.result(timeout=300)[0]
        lam = LocalLambda(LambdaConfig(
            function_dir=FUNCTIONS / "netmon_python", handler="app.handler", opt_dir=opt,
            exec_wrapper=str(opt / "netmon-wrapper"), function_name=FUNCTION, work_dir=tmp,
            env={
                "NETMON_SHM_DIR": str(tmp / "shm"),
                "NETMON_LIB": str(opt / "lib" / "libnetmon.so"),
                "NETMON_EXPORTERS": "otlp",
                "NETMON_FLUSH": "end",  # export at the end of each invocation
                **otel,
            },
        )).start()
        for download in (2_000, 300_000, 40_000, 1_500_000):
            r = lam.invoke({"port": http_backend.port, "download": download, "upload": 500, "resolve": "localhost"})
            assert r.ok, r.describe()
        assert lam.shutdown().exited
        backend = Backend(vm)
        deadline = time.monotonic() + 20
        while not (backend.query(f'faas_net_io_bytes_count{{service_name="{FUNCTION}"}}')
                   and backend.query(f'netflow_tcp_failed_total{{service_name="{SERVICE}"}}')):
            assert time.monotonic() < deadline, "the metrics did not reach VictoriaMetrics"
            time.sleep(0.2)
        backend.run = run
        backend.closed_port = closed
        yield backend
    finally:
        builder.shutdown(wait=True)
        if lam is not None:
            lam.close()
        rotel.kill()
        vm.stop()


def regex_value(v: str) -> str:
    """A value as Grafana writes it into a PromQL regex: regex-escaped, then its backslashes
    escaped for the string literal."""
    return re.escape(v).replace("\\", "\\\\")


VALUES = {
    "service": f"({regex_value(SERVICE)}|{regex_value(FUNCTION)})",
    "destination": ".*",  # "All"
    "__rate_interval": WINDOW,
    "__interval": "15s",
    "__range": RANGE,
}


def legend_labels(legend: str) -> list[str]:
    return re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or "")


def renamed_columns(p: dict) -> list[str]:
    """Labels a table panel shows as columns (organize's renameByName keys)."""
    out = []
    for t in p.get("transformations", []):
        if t["id"] == "organize":
            out += [k for k in t["options"].get("renameByName", {}) if k != "Time" and not k.startswith("Value")]
    return out


@pytest.mark.requires("root", "netns", "dnsmasq")
@pytest.mark.parametrize("uid, title, ref", metric_targets())
def test_every_panel_query_returns_data_with_the_labels_it_shows(loaded, uid, title, ref):
    p = panel(uid, title)
    t = next(t for t in p["targets"] if t["refId"] == ref)
    expr = fill(t["expr"], VALUES)
    series = loaded.query(expr) if t.get("instant") else loaded.query_range(expr)
    where = f"\n{uid} / {title} / {ref}: {expr}\n{json.dumps(series)[:3000]}"
    assert series, "no data" + where
    if not t.get("instant"):
        assert all(s["values"] for s in series), where
    need = legend_labels(t.get("legendFormat", ""))
    if t.get("format") == "heatmap":
        need.append("le")
    if p["type"] == "nodeGraph":
        need += ["id", "source", "target"]
    for s in series:
        missing = [label for label in need if not s["metric"].get(label)]
        assert not missing, f"a series lacks {missing}" + where
    for column in renamed_columns(p):
        others = [fill(x["expr"], VALUES) for x in p["targets"] if x["refId"] != ref]
        everything = series + [s for e in others for s in loaded.query(e)]
        assert any(column in s["metric"] for s in everything), f"no series has the column {column}" + where


@pytest.mark.requires("root", "netns", "dnsmasq")
def test_variables_list_the_runs_services_and_destinations(loaded):
    for uid, d in load_dashboards().items():
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            q = v["query"]["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
            assert m, q
            values = loaded.label_values(m.group(2), fill(m.group(1), VALUES))
            expected = {"service": {SERVICE, FUNCTION}, "destination": {"localhost"}}[v["name"]]
            assert expected <= set(values), f"{uid} variable {v['name']}: {values}"


@pytest.mark.requires("root", "netns", "dnsmasq")
def test_topology_edges_are_the_runs_destinations(loaded):
    """The node graph's edges after Grafana's merge: one per destination of the --json
    summary (DNS name, else ip:port), with bytes and connections, failures on the refused one."""
    p = panel("netmon-topology", "Network topology")
    edges: dict[tuple[str, str], dict[str, float]] = {}
    for t in p["targets"]:
        for s in loaded.query(fill(t["expr"], VALUES)):
            key = (s["metric"]["source"], s["metric"]["target"])
            assert s["metric"]["id"] == f"{key[0]} -> {key[1]}", s
            edges.setdefault(key, {})[t["refId"]] = float(s["value"][1])
    summary = loaded.run.summary
    expected = set()
    for f in summary["flows"]:
        if f["direction"] == "outgoing" and f["source"] == "interceptor":
            expected.add(f["dst_domain"] or f"{f['dst_ip']}:{f['dst_port']}")
    mine = {target for (source, target) in edges if source == SERVICE}
    where = f"\nedges: {edges}\nsummary flows: {json.dumps(summary['flows'])[:3000]}"
    assert mine == expected, where
    local = edges[(SERVICE, "localhost")]
    assert local.get("bytes", 0) > 0 and local.get("connections", 0) > 0 and not local.get("failed"), where
    refused = edges[(SERVICE, f"127.0.0.2:{loaded.closed_port}")]
    assert refused.get("failed", 0) > 0 and not refused.get("bytes"), where
    function = edges[(FUNCTION, "localhost")]
    assert function.get("bytes", 0) > 0, where


@pytest.mark.requires("root", "netns", "dnsmasq")
def test_every_stored_name_is_in_the_documented_naming_table(loaded):
    """dashboards/README.md's table (checked against the schema by `cargo test`) names every
    series VictoriaMetrics stored, so the documented translation is the backend's."""
    documented = set(re.findall(r"^\| `[\w.]+` \| `(\w+)` \|", (DASHBOARDS / "README.md").read_text(), re.M))
    stored = loaded.get("/api/v1/label/__name__/values")
    assert len(stored) >= 20, stored
    for name in stored:
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in documented else name
        assert base in documented, f"{name} is stored but not in dashboards/README.md"
    # Resource attributes are labels, as the dashboards expect.
    labels = set(loaded.get("/api/v1/labels"))
    assert {"service_name", "dst_domain", "network_io_direction", "le"} <= labels, labels
