"""Failed connections: ECONNREFUSED and ETIMEDOUT, counted per destination."""

import socket

from support import harness

P = harness.PYTHON


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused(run_netmon):
    port = closed_port()
    result = run_netmon([P, str(harness.CLIENTS / "py_errors.py"), "refused", "--port", port, "--attempts", 3])
    harness.assert_ran_ok(result)
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_ip="127.0.0.1", dst_port=port)
    assert flow["failed"] == 3, result.describe()
    assert flow["errors"].get("ECONNREFUSED") == 3, result.describe()
    assert flow["bytes_sent"] == 0 and flow["bytes_received"] == 0, result.describe()
    assert result.summary["totals"]["failed_connections"] == 3, result.describe()
    harness.assert_pids_known(result, flow)


def test_connect_timeout(run_netmon):
    """SYNs to a backlog-0 listener with a full accept queue are dropped: the client times out."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue
        try:
            result = run_netmon(
                [P, str(harness.CLIENTS / "py_errors.py"), "timeout", "--port", port, "--attempts", 2, "--timeout", 1]
            )
        finally:
            filler.close()
    harness.assert_ran_ok(result)
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_ip="127.0.0.1", dst_port=port)
    assert flow["failed"] == 2, result.describe()
    assert flow["errors"].get("ETIMEDOUT") == 2, result.describe()
    assert result.summary["totals"]["failed_connections"] == 2, result.describe()


def test_failed_and_good_flows_stay_apart(run_netmon, raw_backend):
    """A refused port and a working one in one run: each keeps its own counts."""
    port = closed_port()
    cmd = [
        P, "-c",
        "import subprocess, sys;"
        f"subprocess.run([sys.executable, {str(harness.CLIENTS / 'py_errors.py')!r}, 'refused', '--port', '{port}'], check=True);"
        f"subprocess.run([sys.executable, {str(harness.CLIENTS / 'py_asyncio_raw.py')!r}, '--port', '{raw_backend.port}',"
        " '--send', '10', '--recv', '20'], check=True)",
    ]
    result = run_netmon(cmd)
    harness.assert_ran_ok(result)
    bad = harness.one_flow(result, direction="outgoing", dst_port=port)
    good = harness.one_flow(result, direction="outgoing", dst_port=raw_backend.port)
    assert (bad["failed"], bad["errors"].get("ECONNREFUSED")) == (1, 1), result.describe()
    assert (good["failed"], good["connections"], good["bytes_sent"], good["bytes_received"]) == (0, 1, 18, 20), (
        result.describe()
    )
