"""OpenTelemetry export to an OTLP receiver that misbehaves (support/bad_otlp.py): error statuses
every time or for a while, `Retry-After` and gRPC `RetryInfo`, partial success, answers later than
the request timeout or never.

Whatever the receiver does, the monitored program runs as it would (same output and exit status,
not slowed down), netmon exits within its flush timeout, and its summary accounts for every span
and data point: exported + dropped + rejected is exactly what was produced. The program's
connections are deterministic, so the spans produced are known in advance; the metrics are one
collection at exit (a metric interval longer than the run), whose data points the receiver counts.
Retries follow the OTLP specification ("Failures"): HTTP 429, 502, 503, 504 and the gRPC codes of
its table are retried with a backoff that honours `Retry-After`/`RetryInfo`; anything else is
never sent twice.
"""

from __future__ import annotations

import time

import pytest

from support import bad_otlp, harness
from support.bad_otlp import Answer

P = harness.PYTHON
CONNECTIONS = 10
PAUSE = 0.05  # between connections: spans leave in several batches while the program runs
SPANS = CONNECTIONS + 1  # a connect span each, and the process's root span
FLUSH_MS = 2000
# The program's own run time, export or not: its pauses plus generous room for a busy machine.
PROGRAM_BOUND = CONNECTIONS * PAUSE + 2.0


def program(port: int) -> list[str]:
    code = (
        "import socket, time\n"
        "t0 = time.monotonic()\n"
        f"for i in range({CONNECTIONS}):\n"
        "    s = socket.socket()\n"
        f"    s.connect(('127.0.0.1', {port}))\n"
        "    s.sendall((5).to_bytes(4, 'big') + (7).to_bytes(4, 'big') + b'x' * 5)\n"
        "    got = 0\n"
        "    while got < 7:\n"
        "        got += len(s.recv(100))\n"
        "    s.close()\n"
        f"    time.sleep({PAUSE})\n"
        "print('done')\n"
        "print(f'elapsed {time.monotonic() - t0:.3f}')\n"
    )
    return [P, "-c", code]


def run(run_netmon, receiver, backend, protocol="http/protobuf", timeout_ms=500, flush_ms=FLUSH_MS):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(timeout_ms),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # One metrics collection, at exit: its data points are all the receiver ever sees.
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    }
    started = time.monotonic()
    result = run_netmon(
        program(backend.port),
        env=env,
        netmon_args=["--exporter", "otlp", "--flush-timeout-ms", str(flush_ms)],
        timeout=60,
    )
    wall = time.monotonic() - started
    where = f"\n{result.describe()}\n{receiver.describe()}"
    # The program: same output, same exit status, same pace.
    harness.assert_ran_ok(result)
    lines = result.proc.stdout.splitlines()
    assert lines[0] == "done" and lines[1].startswith("elapsed "), where
    elapsed = float(lines[1].split()[1])
    assert elapsed < PROGRAM_BOUND, f"the program took {elapsed:.2f}s{where}"
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=backend.port)
    assert (flow["connections"], flow["bytes_sent"], flow["bytes_received"]) == (
        CONNECTIONS, CONNECTIONS * 13, CONNECTIONS * 7), where
    assert result.summary["dns"] == [], where  # no lookups: the spans are the connects and the root
    # netmon: exits within the flush timeout (plus the half second an abandoned request gets).
    assert wall < elapsed + flush_ms / 1000 + 2.5, f"netmon took {wall:.2f}s{where}"
    return result, where


def accounting(result, receiver, where):
    """Checks exported + dropped + rejected == produced for both signals, and that what the
    receiver accepted is what netmon counts as exported. Returns the report."""
    report = result.summary["export"][0]
    requests = receiver.snapshot()
    assert report["spans_exported"] + report["spans_dropped"] + report["spans_rejected"] == SPANS, where
    accepted_spans = [s for r in requests if r.signal == "traces" and r.accepted for s in r.spans]
    assert len({s.span_id for s in accepted_spans}) == len(accepted_spans), f"a span was accepted twice{where}"
    assert len(accepted_spans) == report["spans_exported"] + report["spans_rejected"], where
    assert sum(1 for s in accepted_spans if s.name == "connect") <= CONNECTIONS, where
    metrics = [r for r in requests if r.signal == "metrics"]
    assert metrics, f"the metrics collection never reached the receiver{where}"
    assert len({r.digest for r in metrics}) == 1, f"more than one metrics collection{where}"
    produced = metrics[0].point_count
    assert produced > 0 and metrics[0].points.get("netflow.bytes_written") == 1, where
    lost = report["metric_points_dropped"] + report["metric_points_rejected"]
    assert report["metric_points_exported"] + lost == produced, where
    accepted_points = sum(r.point_count for r in metrics if r.accepted)
    assert accepted_points == report["metric_points_exported"] + report["metric_points_rejected"], where
    return report


def bodies_sent_once(receiver) -> bool:
    digests = [r.digest for r in receiver.snapshot()]
    return len(digests) == len(set(digests))


@pytest.fixture
def http_receiver():
    started = []

    def _start(script):
        r = bad_otlp.BadOtlpHttp(script).start()
        started.append(r)
        return r

    yield _start
    for r in started:
        r.stop()


@pytest.fixture
def grpc_receiver():
    started = []

    def _start(script):
        r = bad_otlp.BadOtlpGrpc(script).start()
        started.append(r)
        return r

    yield _start
    for r in started:
        r.stop()


# --------------------------------------------------------------------------- OTLP/HTTP


@pytest.mark.parametrize("status", [400, 500])
def test_http_refusals_are_dropped_and_never_retried(status, run_netmon, http_receiver, raw_backend):
    """400 and 500 must not be retried (only 429, 502, 503, 504 are): each request is sent
    once, its spans or points dropped and counted at once, and netmon does not wait for its
    flush timeout."""
    receiver = http_receiver(bad_otlp.always(status))
    result, where = run(run_netmon, receiver, raw_backend)
    report = accounting(result, receiver, where)
    assert bodies_sent_once(receiver), f"a refused request was retried{where}"
    assert report["spans_exported"] == report["metric_points_exported"] == 0, where
    assert report["spans_dropped"] == SPANS, where
    assert report["failed_requests"] == len(receiver.snapshot()), where
    assert f"status code: {status}" in result.proc.stderr, where


@pytest.mark.parametrize("status", [502, 503, 504])
def test_http_unavailable_is_retried_with_backoff_then_dropped_at_exit(status, run_netmon, http_receiver, raw_backend):
    receiver = http_receiver(bad_otlp.always(status))
    result, where = run(run_netmon, receiver, raw_backend)
    report = accounting(result, receiver, where)
    assert not bodies_sent_once(receiver), f"nothing was retried{where}"
    assert report["spans_exported"] == report["metric_points_exported"] == 0, where
    assert report["spans_dropped"] == SPANS, where
    assert report["failed_requests"] >= 2, where
    # Backoff, also during the exit-time delivery: a handful of requests, never a tight loop.
    assert len(receiver.snapshot()) <= 30, where
    for signal in ("traces", "metrics"):
        times = [r.received for r in receiver.snapshot() if r.signal == signal]
        assert all(b - a >= 0.09 for a, b in zip(times, times[1:])), f"{signal} retried without backoff{where}"


def test_http_429_retry_after_is_honoured(run_netmon, http_receiver, raw_backend):
    receiver = http_receiver(bad_otlp.always(429, headers={"Retry-After": "1"}))
    result, where = run(run_netmon, receiver, raw_backend)
    report = accounting(result, receiver, where)
    assert report["spans_dropped"] == SPANS and report["spans_exported"] == 0, where
    traces = [r.received for r in receiver.snapshot() if r.signal == "traces"]
    assert len(traces) >= 2, f"429 was not retried{where}"
    for signal in ("traces", "metrics"):
        times = [r.received for r in receiver.snapshot() if r.signal == signal]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= 0.95 for g in gaps), f"{signal} retried before Retry-After: {gaps}{where}"


def test_http_errors_for_a_while_then_everything_arrives(run_netmon, http_receiver, raw_backend):
    receiver = http_receiver(bad_otlp.first_failing(3, 503))
    result, where = run(run_netmon, receiver, raw_backend)
    report = accounting(result, receiver, where)
    assert report["spans_exported"] == SPANS and report["spans_dropped"] == 0, where
    assert report["metric_points_dropped"] == 0, where
    assert 1 <= report["failed_requests"] <= 3, where
    assert "works again" in result.proc.stderr, where


@pytest.mark.parametrize("claimed", [1, 10**12])
def test_http_partial_success_is_counted_not_retried(claimed, run_netmon, http_receiver, raw_backend):
    """Every request accepted with some items rejected; a receiver claiming more rejections
    than the request carried counts as rejecting all of it, no more."""

    def script(req):
        return Answer(200, body=bad_otlp.partial_success(req.signal, claimed, "too old"))

    receiver = http_receiver(script)
    result, where = run(run_netmon, receiver, raw_backend)
    report = accounting(result, receiver, where)
    assert bodies_sent_once(receiver), f"a partial success was retried{where}"
    assert report["failed_requests"] == 0 and report["spans_dropped"] == 0, where
    requests = receiver.snapshot()
    traces = [r for r in requests if r.signal == "traces"]
    metrics = [r for r in requests if r.signal == "metrics"]
    assert report["spans_rejected"] == sum(min(claimed, len(r.spans)) for r in traces), where
    assert report["metric_points_rejected"] == min(claimed, metrics[0].point_count), where
    assert "rejected" in result.proc.stderr, where


@pytest.mark.parametrize("answer", ["late", "never"])
def test_http_slow_receiver(answer, run_netmon, http_receiver, raw_backend):
    """The receiver takes the request and answers after the request timeout (300 ms), or never:
    every request times out and is retried; at the flush timeout netmon gives up, counts the
    loss and exits."""
    late = Answer(200, delay=1.0) if answer == "late" else Answer(200, hang=True)
    receiver = http_receiver(lambda req: late)
    result, where = run(run_netmon, receiver, raw_backend, timeout_ms=300, flush_ms=1500)
    report = accounting(result, receiver, where)
    assert report["spans_exported"] == report["metric_points_exported"] == 0, where
    assert report["spans_dropped"] == SPANS, where
    assert report["failed_requests"] >= 1, where


# --------------------------------------------------------------------------- OTLP/gRPC


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED"])
def test_grpc_refusals_are_dropped_and_never_retried(code, run_netmon, grpc_receiver, raw_backend):
    """Not retryable, RESOURCE_EXHAUSTED included when it carries no RetryInfo."""
    receiver = grpc_receiver(bad_otlp.always(code))
    result, where = run(run_netmon, receiver, raw_backend, protocol="grpc")
    report = accounting(result, receiver, where)
    assert bodies_sent_once(receiver), f"{code} was retried{where}"
    assert report["spans_dropped"] == SPANS and report["spans_exported"] == 0, where
    assert report["failed_requests"] == len(receiver.snapshot()), where


def test_grpc_unavailable_is_retried_then_dropped_at_exit(run_netmon, grpc_receiver, raw_backend):
    receiver = grpc_receiver(bad_otlp.always("UNAVAILABLE"))
    result, where = run(run_netmon, receiver, raw_backend, protocol="grpc")
    report = accounting(result, receiver, where)
    assert not bodies_sent_once(receiver), f"UNAVAILABLE was not retried{where}"
    assert report["spans_dropped"] == SPANS and report["spans_exported"] == 0, where
    assert len(receiver.snapshot()) <= 30, f"retried without backoff{where}"


def test_grpc_retry_info_is_honoured(run_netmon, grpc_receiver, raw_backend):
    """RESOURCE_EXHAUSTED with RetryInfo (0.6 s) is retried, never sooner than asked."""
    receiver = grpc_receiver(bad_otlp.always("RESOURCE_EXHAUSTED", retry_delay=0.6))
    result, where = run(run_netmon, receiver, raw_backend, protocol="grpc")
    report = accounting(result, receiver, where)
    assert report["spans_dropped"] == SPANS and report["spans_exported"] == 0, where
    for signal in ("traces", "metrics"):
        times = [r.received for r in receiver.snapshot() if r.signal == signal]
        assert len(times) >= 2, f"{signal} not retried{where}"
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= 0.55 for g in gaps), f"{signal} retried before RetryInfo: {gaps}{where}"


def test_grpc_errors_for_a_while_then_everything_arrives(run_netmon, grpc_receiver, raw_backend):
    receiver = grpc_receiver(bad_otlp.first_failing(2, "UNAVAILABLE", ok="OK"))
    result, where = run(run_netmon, receiver, raw_backend, protocol="grpc")
    report = accounting(result, receiver, where)
    assert report["spans_exported"] == SPANS and report["spans_dropped"] == 0, where
    assert report["metric_points_dropped"] == 0, where
    assert 1 <= report["failed_requests"] <= 2, where
