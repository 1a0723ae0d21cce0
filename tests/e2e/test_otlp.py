"""OpenTelemetry export to real receivers on loopback: rotel (gRPC and HTTP/protobuf, read back
from its debug dump), VictoriaMetrics (OTLP/HTTP ingestion, PromQL), and the otlp-json file.

Byte counts on metrics are checked against the byte-counting forwarder, like the summary's.
"""

import json
import os
import time

import pytest

from support import harness
from support.netns import API_NAME, NX_NAME
from support.otlp import Rotel, VictoriaMetrics, free_port

P = harness.PYTHON
SERVICE = os.path.basename(P)  # service.name defaults to the command's executable name


@pytest.fixture
def rotel(work_dir):
    r = Rotel(work_dir / "logs").start()
    yield r
    r.kill()


def otlp_env(endpoint: str, protocol: str = "grpc", **extra) -> dict:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    env.update(extra)
    return env


def fetch(fwd_port: int, up: int, down: int) -> list[str]:
    return [P, str(harness.CLIENTS / "py_urllib.py"), "--url", f"http://127.0.0.1:{fwd_port}",
            "--upload", str(up), "--download", str(down)]


def metric_sum(points, name: str, **attrs) -> float:
    return sum(
        p.value or 0
        for p in points
        if p.metric == name and all(p.attributes.get(k) == v for k, v in attrs.items())
    )


def check_spans_and_metrics(result, rotel: Rotel, fwd, totals) -> None:
    def done(spans, points):
        return any(s.name == "process" for s in spans) and metric_sum(
            points, "netflow.bytes_read", dst_port=fwd.port) >= totals.server_to_client

    spans, points = rotel.wait_for(done)
    where = f"\n{result.describe()}\n--- rotel:\n{rotel.text()[-5000:]}"
    connects = [s for s in spans if s.name == "connect" and s.attributes.get("network.peer.port") == fwd.port]
    assert len(connects) == totals.connections, where
    roots = {s.span_id: s for s in spans if s.name == "process"}
    main = [s for s in roots.values() if s.attributes.get("process.pid") == result.summary["pid"]]
    assert len(main) == 1, where
    for c in connects:
        assert c.kind == "SPAN_KIND_CLIENT", where
        assert c.parent_id == main[0].span_id and c.trace_id == main[0].trace_id, where
        assert c.attributes["network.peer.address"] == "127.0.0.1", where
        assert c.attributes["network.transport"] == "tcp", where
        assert c.attributes["network.type"] == "ipv4", where
        assert c.attributes["server.port"] == fwd.port, where
        assert c.attributes["peer.service"] == f"127.0.0.1:{fwd.port}", where
        assert c.status == "STATUS_CODE_UNSET", where
        assert main[0].start <= c.start <= c.end <= main[0].end, where
        assert c.resource["service.name"] == SERVICE, where
    # Byte counts equal the forwarder's, split over as many delta exports as it took.
    assert metric_sum(points, "netflow.bytes_written", dst_port=fwd.port) == totals.client_to_server, where
    assert metric_sum(points, "netflow.bytes_read", dst_port=fwd.port) == totals.server_to_client, where
    assert metric_sum(points, "netflow.tcp_established", dst_port=fwd.port) == totals.connections, where
    flow_point = next(p for p in points if p.metric == "netflow.bytes_read" and p.attributes.get("dst_port") == fwd.port)
    assert flow_point.temporality == "AGGREGATION_TEMPORALITY_DELTA", where
    tags = flow_point.attributes
    assert (tags["dst_ip"], tags["dst_ip_type"], tags["src_ip_type"]) == ("127.0.0.1", "loopback", "loopback"), where
    assert (tags["transport"], tags["family"], tags["direction"]) == ("tcp", "IPv4", "outgoing"), where
    assert tags["process_name"] == SERVICE and isinstance(tags["pid"], int), where
    assert "src_port" not in tags, where
    # netmon's own OTLP traffic is never the program's.
    for port in (rotel.grpc_port, rotel.http_port):
        assert not any(p.attributes.get("dst_port") == port for p in points), where
        assert not harness.flows(result.summary, dst_port=port), where


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_and_metrics_reach_rotel(protocol, rotel, run_netmon, http_backend, forwarder):
    fwd = forwarder(http_backend.port)
    port = rotel.grpc_port if protocol == "grpc" else rotel.http_port
    result = run_netmon(
        fetch(fwd.port, 50_000, 200_000),
        env=otlp_env(f"http://127.0.0.1:{port}", protocol),
        netmon_args=["--exporter", "otlp"],
    )
    harness.assert_ran_ok(result)
    # Only otlp: no console summary.
    assert "netmon: " + SERVICE not in result.proc.stderr, result.describe()
    totals = fwd.wait_idle(1)
    harness.assert_flow_matches_forwarder(result, fwd.port, totals)
    check_spans_and_metrics(result, rotel, fwd, totals)
    report = result.summary["export"]
    assert report[0]["exporter"] == "otlp" and report[0]["spans_dropped"] == 0, result.describe()


def otlp_json_lines(path):
    reqs = [json.loads(line) for line in path.read_text().splitlines()]
    spans = [
        s for r in reqs for rs in r.get("resourceSpans", []) for ss in rs["scopeSpans"] for s in ss["spans"]
    ]
    metrics = [
        m for r in reqs for rm in r.get("resourceMetrics", []) for sm in rm["scopeMetrics"] for m in sm["metrics"]
    ]
    return reqs, spans, metrics


def attrs(obj) -> dict:
    out = {}
    for kv in obj.get("attributes", []):
        v = kv["value"]
        if "stringValue" in v:
            out[kv["key"]] = v["stringValue"]
        elif "intValue" in v:
            out[kv["key"]] = int(v["intValue"])
        elif "arrayValue" in v:
            out[kv["key"]] = [x.get("stringValue") for x in v["arrayValue"].get("values", [])]
        else:
            out[kv["key"]] = next(iter(v.values()))
    return out


@pytest.mark.requires("root", "netns", "dnsmasq")
def test_otlp_json_dns_and_failed_connections(run_netmon, dns_netns, tmp_path):
    """Spans for lookups (answers, NXDOMAIN) and attempts (peer.service from DNS, ECONNREFUSED),
    written as OTLP JSON inside a network namespace whose resolver is dnsmasq."""
    out = tmp_path / "otlp.jsonl"
    closed = free_port()
    code = (
        "import socket\n"
        f"s = socket.create_connection(({API_NAME!r}, {dns_netns.raw_port})); "
        "s.sendall((10).to_bytes(4, 'big') + (20).to_bytes(4, 'big') + b'x' * 10)\n"
        "got = 0\n"
        "while got < 20:\n"
        "    got += len(s.recv(100))\n"
        "s.close()\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {closed}))\n"
        "except ConnectionRefusedError:\n"
        "    pass\n"
        "try:\n"
        f"    socket.getaddrinfo({NX_NAME!r}, 80)\n"
        "except socket.gaierror:\n"
        "    pass\n"
    )
    result = run_netmon([P, "-c", code], netns=dns_netns.name,
                        netmon_args=["--exporter", "otlp-json,console", "--otlp-json", str(out)])
    harness.assert_ran_ok(result)
    where = f"\n{result.describe()}\n{out.read_text()[:6000]}"
    reqs, spans, metrics = otlp_json_lines(out)
    lookups = [s for s in spans if s["name"] == "dns.lookup"]
    ok = [s for s in lookups if attrs(s)["dns.question.name"] == API_NAME]
    assert ok and attrs(ok[0])["dns.answers"] == ["127.0.0.1"] and "error.type" not in attrs(ok[0]), where
    nx = [s for s in lookups if attrs(s)["dns.question.name"] == NX_NAME]
    assert nx and attrs(nx[0])["error.type"] == "EAI_NONAME" and nx[0]["status"]["code"] == 2, where
    connects = [s for s in spans if s["name"] == "connect"]
    named = [s for s in connects if attrs(s).get("network.peer.port") == dns_netns.raw_port]
    assert len(named) == 1, where
    a = attrs(named[0])
    assert (a["server.address"], a["peer.service"], a["server.port"]) == (API_NAME, API_NAME, dns_netns.raw_port), where
    refused = [s for s in connects if attrs(s).get("network.peer.port") == closed]
    assert len(refused) == 1 and attrs(refused[0])["error.type"] == "ECONNREFUSED", where
    assert refused[0]["status"]["code"] == 2 and refused[0]["kind"] == 3, where
    # Everything hangs off the process root span, in one trace.
    root = [s for s in spans if s["name"] == "process" and attrs(s)["process.pid"] == result.summary["pid"]]
    assert len(root) == 1 and not root[0].get("parentSpanId"), where
    for s in lookups + connects:
        assert s["traceId"] == root[0]["traceId"] and s["parentSpanId"] == root[0]["spanId"], where
        assert int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"]), where

    def points(name):
        return [p for m in metrics if m["name"] == name for p in (m.get("sum") or m.get("gauge") or m.get("histogram"))["dataPoints"]]

    dns_counts = {(attrs(p)["dst_domain"], attrs(p)["rcode"]): int(p["asInt"]) for p in points("dnsflow.count")}
    assert dns_counts.get((API_NAME, 0), 0) >= 1 and dns_counts.get((NX_NAME, 3), 0) >= 1, where
    assert points("dnsflow.latency") and points("dnsflow.latency_max"), where
    sent = sum(int(p["asInt"]) for p in points("netflow.bytes_written") if attrs(p).get("dst_domain") == API_NAME)
    assert sent == 18, where
    failed = [p for p in points("netflow.tcp_failed") if attrs(p).get("dst_port") == closed]
    assert failed and attrs(failed[0])["error_type"] == "ECONNREFUSED", where


def test_victoria_metrics_gets_cumulative_metrics(work_dir, rotel, run_netmon, http_backend, forwarder):
    vm = VictoriaMetrics(work_dir / "logs").start()
    try:
        fwd = forwarder(http_backend.port)
        env = otlp_env(
            f"http://127.0.0.1:{rotel.http_port}", "http/protobuf",
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=vm.otlp_metrics_url,
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="cumulative",
        )
        result = run_netmon(fetch(fwd.port, 30_000, 70_000), env=env, netmon_args=["--exporter", "otlp,console"])
        harness.assert_ran_ok(result)
        totals = fwd.wait_idle(1)
        harness.assert_flow_matches_forwarder(result, fwd.port, totals)
        where = f"\n{result.describe()}"
        deadline = time.monotonic() + 20
        while True:
            got = vm.query(f'sum(max_over_time({{__name__=~"netflow[._]bytes_read",dst_port="{fwd.port}"}}[5m]))')
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(got) == 1, f"{got}{where}"
        assert float(got[0]["value"][1]) == totals.server_to_client, f"{got}{where}"
        series = vm.query(f'{{__name__=~"netflow[._]bytes_written",dst_port="{fwd.port}"}}[5m]')
        assert series, where
        for s in series:
            labels = s["metric"]
            assert labels["dst_ip"] == "127.0.0.1" and labels["direction"] == "outgoing", f"{series}{where}"
            assert labels["process_name"] == SERVICE and labels["transport"] == "tcp", f"{series}{where}"
        sent = vm.query(f'sum(max_over_time({{__name__=~"netflow[._]bytes_written",dst_port="{fwd.port}"}}[5m]))')
        assert float(sent[0]["value"][1]) == totals.client_to_server, f"{series}{sent}{where}"
        assert result.summary["export"][0]["metric_points_dropped"] == 0, where
    finally:
        vm.stop()


def test_receiver_killed_and_restarted(work_dir, start_netmon, raw_backend):
    """The program runs undisturbed while the receiver is down; what was queued arrives when it
    comes back, or its loss is counted in the summary — never silently."""
    rotel = Rotel(work_dir / "logs").start()
    rounds = 10
    code = (
        "import socket, time\n"
        f"for i in range({rounds}):\n"
        f"    s = socket.create_connection(('127.0.0.1', {raw_backend.port}))\n"
        "    s.sendall((5).to_bytes(4, 'big') + (7).to_bytes(4, 'big') + b'x' * 5)\n"
        "    got = 0\n"
        "    while got < 7:\n"
        "        got += len(s.recv(100))\n"
        "    s.close()\n"
        "    time.sleep(0.4)\n"
        "print('done')\n"
    )
    try:
        started = time.monotonic()
        running = start_netmon(
            [P, "-c", code],
            env=otlp_env(f"http://127.0.0.1:{rotel.grpc_port}", "grpc", OTEL_EXPORTER_OTLP_TIMEOUT="1000"),
            netmon_args=["--exporter", "otlp,console", "--flush-timeout-ms", "8000"],
        )
        rotel.wait_for(lambda s, p: any(x.name == "connect" for x in s))
        rotel.kill()
        time.sleep(1.5)
        rotel.start()
        result = running.wait()
        elapsed = time.monotonic() - started
        harness.assert_ran_ok(result)
        assert result.proc.stdout.strip() == "done", result.describe()
        flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=raw_backend.port)
        assert (flow["connections"], flow["bytes_sent"], flow["bytes_received"]) == (rounds, rounds * 13, rounds * 7)
        assert elapsed < 30, result.describe()
        report = result.summary["export"][0]
        assert report["failed_requests"] >= 1 or "failed" in result.proc.stderr, result.describe()
        spans, _ = rotel.wait_for(lambda s, p: any(x.name == "process" for x in s))
        got = {s.span_id for s in spans if s.name == "connect" and s.attributes.get("network.peer.port") == raw_backend.port}
        # Delivered after the restart, or counted as dropped: nothing goes missing silently.
        assert len(got) + report["spans_dropped"] >= rounds, f"{len(got)} delivered\n{result.describe()}\n{rotel.text()[-3000:]}"
        assert len(got) == rounds, f"queued spans were lost: {len(got)}\n{result.describe()}"
    finally:
        rotel.kill()


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://127.0.0.1:1"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"}, "TEMPORALITY"),
    ],
)
def test_invalid_otlp_settings_exit_2_before_the_command_runs(env, needle, tmp_path):
    marker = tmp_path / "ran"
    full_env = dict(os.environ, **env)
    import subprocess

    p = subprocess.run(
        [str(harness.netmon_bin()), "run", "--exporter", "otlp", "--", "touch", str(marker)],
        env=full_env, capture_output=True, text=True, timeout=30,
    )
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("netmon: "), p.stderr
    assert not marker.exists()
