"""netmon in (local) AWS Lambda: the layer, the extension, exact per-invocation bytes, traces.

The environment is the local Lambda of support/lambda_local.py (Runtime, Extensions and
Telemetry APIs; processes frozen between invocations), the runtime clients are the real
awslambdaric and aws-lambda-ric, and the layer is the one `netmon layer` builds, unzipped into
the environment's /opt. The ground truth for bytes is the byte-counting forwarder.
"""

from __future__ import annotations

import json
import os
import signal
import re
import time
from pathlib import Path

import pytest

from support import harness
from support.lambda_local import FUNCTIONS_DIR

NETMON_FUNCTIONS = Path(__file__).resolve().parent / "lambda" / "functions"
LINE = re.compile(r"^netmon (requestId=(?P<id>\S+)|phase=init) (?P<rest>.*)$")


@pytest.fixture(scope="session")
def layer_opt(netmon_bin, work_dir) -> Path:
    """The layer `netmon layer` builds, unzipped into an /opt-like folder; built once per
    session, read-only to the environments that use it."""
    return harness.lambda_layer(netmon_bin, work_dir)[0]


def netmon_env(opt: Path, tmp_path: Path, **extra: str) -> dict:
    return {
        "NETMON_SHM_DIR": str(tmp_path / "shm"),
        # The wrapper's default is /opt/lib/libnetmon.so; here /opt is a temporary folder.
        "NETMON_LIB": str(opt / "lib" / "libnetmon.so"),
        **extra,
    }


def report_lines(lam, timeout: float = 10.0, want: int = 1) -> dict:
    """The extension's report lines so far: {"init": fields, request_id: fields}."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for line in lam.logs(source="extension:netmon"):
            m = LINE.match(line.text.strip())
            if not m:
                continue
            fields = dict(kv.split("=", 1) for kv in m.group("rest").split())
            found[m.group("id") or "init"] = fields
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def xray(i: int, sampled: bool = True) -> tuple[str, str, str]:
    """An X-Ray header, and the W3C trace id and parent span id it stands for."""
    t, r, p = f"{0x5f000000 + i:08x}", f"{i:024x}", f"{0xabc0 + i:016x}"
    return f"Root=1-{t}-{r};Parent={p};Sampled={int(sampled)}", t + r, p


@pytest.mark.requires("root")
@pytest.mark.parametrize("runtime", ["python", "node"])
def test_bytes_per_invocation_are_exact_and_spans_join_the_invocation_trace(
    runtime, local_lambda, layer_opt, tmp_path, http_backend, forwarder
):
    fwd = forwarder(http_backend.port)
    spans_file = tmp_path / "spans.jsonl"
    env = netmon_env(
        layer_opt,
        tmp_path,
        INIT_PORT=str(fwd.port),
        INIT_DOWNLOAD="4321",
        NETMON_EXPORTERS="otlp-json",
        NETMON_OTLP_JSON=str(spans_file),
    )
    lam = local_lambda(
        NETMON_FUNCTIONS / f"netmon_{runtime}",
        "app.handler",
        runtime=runtime,
        opt_dir=layer_opt,
        env=env,
        exec_wrapper=layer_opt / "netmon-wrapper",
    )
    init_totals = fwd.totals()
    assert init_totals[1] > 4321, lam.describe()
    plan = [
        # (download, upload, keep the connection after this invocation)
        (100_000, 5_000, True),
        (3 << 20, 0, True),
        (0, 200_000, False),
        (1_234, 1, True),
        (0, 0, True),
    ]
    before = init_totals
    expected = {}
    traces = {}
    for i, (down, up, keep) in enumerate(plan):
        header, trace_id, parent = xray(i)
        r = lam.invoke(
            {"port": fwd.port, "download": down, "upload": up, "keepalive": keep, "resolve": "localhost"},
            trace=header,
        )
        assert r.ok, r.describe()
        assert r.json()["downloaded"] == down
        now = fwd.totals()
        expected[r.request_id] = (now[0] - before[0], now[1] - before[1])
        traces[r.request_id] = (trace_id, parent)
        before = now

    lines = report_lines(lam, want=len(plan) + 1)
    assert "init" in lines, lines
    init = lines["init"]
    assert (int(init["tx_bytes"]), int(init["rx_bytes"])) == init_totals, lines
    assert init["dns"] == "1" and init["connections"] == "1"
    for rid, (tx, rx) in expected.items():
        got = lines.get(rid)
        assert got is not None, f"no report line for {rid}: {lines}"
        assert (int(got["tx_bytes"]), int(got["rx_bytes"])) == (tx, rx), (rid, got)
        assert got["dns"] == "1", got
        assert got["failed"] == "0"
        assert got["top"] == f"localhost:{fwd.port}" or (tx, rx) == (0, 0), got
    # Invocation 3 closed its connection; invocation 4 opened a new one.
    ids = list(expected)
    assert lines[ids[3]]["connections"] == "1"
    assert lines[ids[1]]["connections"] == "0"

    sd = lam.shutdown()
    assert sd.exited, sd
    spans = otlp_spans(spans_file)
    for rid, (trace_id, parent) in traces.items():
        mine = [s for s in spans if s["traceId"] == trace_id]
        names = sorted(s["name"] for s in mine)
        # Each invocation resolved localhost; the ones that opened a connection have it too.
        assert "dns.lookup" in names, (rid, names)
        for s in mine:
            assert s["parentSpanId"] == parent, s
    last = ids[-1]
    assert any(s["traceId"] == traces[last][0] for s in spans), "the last invocation's spans were lost"


def otlp_spans(path: Path) -> list[dict]:
    spans = []
    for line in path.read_text().splitlines():
        req = json.loads(line)
        for rs in req.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                spans.extend(ss.get("spans", []))
    return spans


def otlp_metric_sum(path: Path, name: str) -> int:
    """Sum of every data point of metric `name` in an OTLP JSON file (delta sums)."""
    total = 0
    for line in path.read_text().splitlines():
        req = json.loads(line)
        for rm in req.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if m.get("name") != name:
                        continue
                    for dp in m.get("sum", {}).get("dataPoints", []):
                        total += int(dp.get("asInt", dp.get("asDouble", 0)))
    return total


@pytest.mark.requires("root")
def test_unsampled_invocations_export_metrics_but_no_spans(
    local_lambda, layer_opt, tmp_path, http_backend, forwarder
):
    fwd = forwarder(http_backend.port)
    out = tmp_path / "otlp.jsonl"
    env = netmon_env(layer_opt, tmp_path, NETMON_EXPORTERS="otlp-json", NETMON_OTLP_JSON=str(out))
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt, env=env,
        exec_wrapper=layer_opt / "netmon-wrapper",
    )
    unsampled, u_trace, _ = xray(1, sampled=False)
    sampled, s_trace, _ = xray(2, sampled=True)
    for header in (unsampled, sampled):
        r = lam.invoke(
            {"port": fwd.port, "download": 5000, "upload": 700, "resolve": "localhost", "keepalive": False},
            trace=header,
        )
        assert r.ok, r.describe()
    sent, _ = fwd.totals()
    lam.shutdown()
    spans = otlp_spans(out)
    assert not [s for s in spans if s["traceId"] == u_trace], "spans of an unsampled invocation"
    assert [s for s in spans if s["traceId"] == s_trace], "no spans for the sampled invocation"
    assert otlp_metric_sum(out, "netflow.bytes_written") == sent


@pytest.mark.requires("root")
@pytest.mark.parametrize("telemetry", ["normal", "refuse"])
def test_without_the_interceptor_invocations_still_end_and_are_reported(
    telemetry, local_lambda, layer_opt, tmp_path
):
    """No exec wrapper: the runtime runs without libnetmon.so. The Telemetry API's
    platform.runtimeDone (or, when it is refused, nothing at all) must not hold invocations."""
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path), telemetry=telemetry,
    )
    results = [lam.invoke({}) for _ in range(3)]
    for r in results:
        assert r.ok, r.describe()
        # Waiting for the deadline (3 s by default) would show here.
        assert r.post_runtime_extensions_duration_ms < 1000, r.describe()
    lines = report_lines(lam, want=4)
    for r in results:
        fields = lines.get(r.request_id)
        assert fields is not None, lines
        # Socket-level numbers are unknown without the interceptor; the interface counters
        # of /proc/net/dev are still there.
        assert fields.pop("socket_level") == "unavailable", fields
        assert set(fields) == {"dev_rx_bytes", "dev_tx_bytes"}, fields
    lam.shutdown()


@pytest.mark.requires("root")
def test_timeout_and_crash_leave_the_function_result_unchanged_and_are_reported(
    local_lambda, layer_opt, tmp_path, http_backend, forwarder
):
    fwd = forwarder(http_backend.port)
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path), exec_wrapper=layer_opt / "netmon-wrapper",
        timeout_s=1.0,
    )
    slow = lam.invoke({"port": fwd.port, "download": 2000, "sleep_ms": 3000})
    assert not slow.ok and "Task timed out" in slow.describe()
    lines = report_lines(lam, want=2)
    assert int(lines[slow.request_id]["rx_bytes"]) > 2000, lines
    crash = lam.invoke({"port": fwd.port, "download": 3000, "crash": 3})
    assert not crash.ok and "Runtime.ExitError" in crash.describe()
    fine = lam.invoke({"port": fwd.port, "download": 100})
    assert fine.ok and fine.json()["downloaded"] == 100, fine.describe()
    lam.shutdown()


@pytest.mark.requires("root")
def test_a_killed_extension_does_not_affect_the_function(
    local_lambda, layer_opt, tmp_path, http_backend, forwarder
):
    fwd = forwarder(http_backend.port)
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path), exec_wrapper=layer_opt / "netmon-wrapper",
    )
    assert lam.invoke({"port": fwd.port, "download": 10}).ok
    ext = [p for p in lam.pids() if Path(f"/proc/{p}/exe").resolve().name == "netmon"]
    assert ext, lam.describe()
    for p in ext:
        os.kill(p, signal.SIGKILL)
    r = lam.invoke({"port": fwd.port, "download": 1000})
    assert r.json()["downloaded"] == 1000, r.describe()
    lam.close()


@pytest.mark.requires("root")
def test_a_bad_netmon_setting_is_one_clear_log_line_and_the_function_runs(
    local_lambda, layer_opt, tmp_path
):
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path, NETMON_RINGS="lots"),
        exec_wrapper=layer_opt / "netmon-wrapper",
    )
    r = lam.invoke({})
    assert r.ok, r.describe()
    errors = [ln.text for ln in lam.logs(source="extension:netmon") if "NETMON_RINGS" in ln.text]
    assert errors == ['netmon: configuration error: NETMON_RINGS="lots" must be a number in 1..=4096; using 128'], errors
    lam.shutdown()


@pytest.mark.requires("root")
def test_netmon_on_error_fail_reports_the_bad_setting_through_init_error(
    local_lambda, layer_opt, tmp_path
):
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path, NETMON_EMF="maybe", NETMON_ON_ERROR="fail"),
        exec_wrapper=layer_opt / "netmon-wrapper",
    )
    assert not lam.init_result.ok
    assert "Extension.ConfigInvalid" in lam.init_result.error["errorMessage"], lam.describe()
    errors = [ln.text for ln in lam.logs(source="extension:netmon") if "NETMON_EMF" in ln.text]
    assert errors == ['netmon: configuration error: NETMON_EMF="maybe" is not a boolean (use 1 or 0); using 0']
    lam.close()


@pytest.mark.requires("root")
def test_emf_lines_carry_the_same_numbers(local_lambda, layer_opt, tmp_path, http_backend, forwarder):
    fwd = forwarder(http_backend.port)
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path, NETMON_EMF="1", AWS_LAMBDA_FUNCTION_NAME="emf-fn"),
        exec_wrapper=layer_opt / "netmon-wrapper",
    )
    r = lam.invoke({"port": fwd.port, "download": 777})
    assert r.ok
    lines = report_lines(lam, want=2)
    emf = None
    deadline = time.monotonic() + 5
    while emf is None and time.monotonic() < deadline:
        for ln in lam.logs(source="extension:netmon"):
            if ln.text.startswith("{") and r.request_id in ln.text:
                emf = json.loads(ln.text)
        time.sleep(0.05)
    assert emf is not None
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "netmon"
    assert emf["RxBytes"] == int(lines[r.request_id]["rx_bytes"])
    assert emf["TxBytes"] == int(lines[r.request_id]["tx_bytes"])
    lam.shutdown()


@pytest.mark.requires("root")
def test_runtime_api_with_a_path_prefix(local_lambda, layer_opt, tmp_path, http_backend, forwarder):
    """AWS_LAMBDA_RUNTIME_API=host:port/prefix: the extension and the interceptor both cope."""
    fwd = forwarder(http_backend.port)
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path), exec_wrapper=layer_opt / "netmon-wrapper",
        runtime_api_prefix="/prefix",
    )
    before = fwd.totals()
    r = lam.invoke({"port": fwd.port, "download": 2048})
    assert r.ok, r.describe()
    after = fwd.totals()
    got = report_lines(lam, want=2)[r.request_id]
    assert (int(got["tx_bytes"]), int(got["rx_bytes"])) == (after[0] - before[0], after[1] - before[1])
    assert r.post_runtime_extensions_duration_ms < 1000, r.describe()
    lam.shutdown()


@pytest.mark.requires("root")
def test_the_published_link_can_be_deleted_but_the_memory_not_truncated(
    local_lambda, layer_opt, tmp_path, http_backend, forwarder
):
    """The extension publishes a symlink to its sealed memfd for the runtime. Deleting it, or
    trying to truncate the memory behind it, changes nothing for the running function: bytes
    per invocation stay exact."""
    from support.faults import full_tmpfs  # noqa: PLC0415

    fwd = forwarder(http_backend.port)
    lam = local_lambda(
        NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
        env=netmon_env(layer_opt, tmp_path), exec_wrapper=layer_opt / "netmon-wrapper",
    )
    link = tmp_path / "shm" / "lambda.shm"
    assert os.readlink(link).startswith("/proc/"), os.readlink(link)
    assert (link.parent.stat().st_mode & 0o777) == 0o700
    fd = os.open(link, os.O_RDWR)
    try:
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    link.unlink()
    for download, upload in [(20_000, 300), (7, 4_000)]:
        before = fwd.totals()
        r = lam.invoke({"port": fwd.port, "download": download, "upload": upload})
        assert r.ok and r.json()["downloaded"] == download, r.describe()
        after = fwd.totals()
        got = report_lines(lam, want=2).get(r.request_id)
        assert got is not None, lam.describe()
        assert (int(got["tx_bytes"]), int(got["rx_bytes"])) == (after[0] - before[0], after[1] - before[1]), got
    lam.shutdown()

    # A full /tmp: the extension cannot publish the link, says so once, and the function runs
    # unmonitored at the socket level (interface counters are still reported).
    with full_tmpfs(tmp_path / "full") as full:
        env = netmon_env(layer_opt, tmp_path, NETMON_SHM_DIR=str(full / "netmon"))
        lam = local_lambda(
            NETMON_FUNCTIONS / "netmon_python", "app.handler", opt_dir=layer_opt,
            env=env, exec_wrapper=layer_opt / "netmon-wrapper",
        )
        r = lam.invoke({"port": fwd.port, "download": 1000})
        assert r.ok and r.json()["downloaded"] == 1000, r.describe()
        got = report_lines(lam, want=2).get(r.request_id)
        assert got is not None and got.get("socket_level") == "unavailable", got
        errors = [line.text for line in lam.logs(source="extension:netmon") if "continuing without socket-level data" in line.text]
        assert len(errors) == 1 and "No space left on device" in errors[0], errors
        lam.shutdown()
