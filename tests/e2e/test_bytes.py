"""Byte accounting: netmon's flow to the forwarder equals what the forwarder counted.

The forwarder (a separate, unmonitored process) counts raw socket bytes per connection,
so for HTTPS the expected numbers are the encrypted bytes on the wire.
"""

import pytest

from support import clients, harness

P = harness.PYTHON


@pytest.mark.parametrize("client", clients.params(clients.HTTP_CLIENTS))
def test_http_client_bytes_exact(client, request, run_netmon, forwarder, certs, tmp_path):
    backend = request.getfixturevalue("https_backend" if client.scheme == "https" else "http_backend")
    cert, _ = certs
    fwd = forwarder(backend.port)
    url = f"{client.scheme}://127.0.0.1:{fwd.port}"
    result = run_netmon(client.argv(url, clients.UPLOAD, clients.DOWNLOAD, cert, tmp_path), env=client.env(cert))
    harness.assert_ran_ok(result)
    totals = fwd.wait_idle(1)
    harness.assert_flow_matches_forwarder(result, fwd.port, totals)


@pytest.mark.parametrize("client", clients.params(clients.RAW_CLIENTS))
def test_raw_tcp_client_bytes_exact(client, run_netmon, raw_backend, forwarder):
    send, recv = 1_000_000, 2_500_000
    fwd = forwarder(raw_backend.port)
    result = run_netmon(client.argv(fwd.port, send, recv))
    harness.assert_ran_ok(result)
    totals = fwd.wait_idle(clients.RAW_CONNS[client.name])
    conns = clients.RAW_CONNS[client.name]
    # The protocol makes the wire bytes known in advance: check the forwarder too.
    assert (totals.connections, totals.client_to_server, totals.server_to_client) == (
        conns, conns * (8 + send), conns * recv
    ), totals
    harness.assert_flow_matches_forwarder(result, fwd.port, totals)


def test_totals_sum_the_flows(run_netmon, raw_backend, http_backend, forwarder):
    """totals.* are the sums over flows; one process talking to two servers."""
    fwd = forwarder(http_backend.port)
    cmd = [
        harness.PYTHON, "-c",
        "import subprocess, sys;"
        f"subprocess.run([sys.executable, {str(harness.CLIENTS / 'py_asyncio_raw.py')!r}, '--port', '{raw_backend.port}',"
        " '--send', '5000', '--recv', '7000'], check=True);"
        f"subprocess.run([sys.executable, {str(harness.CLIENTS / 'py_urllib.py')!r}, '--url', 'http://127.0.0.1:{fwd.port}',"
        " '--upload', '10000', '--download', '20000'], check=True)",
    ]
    result = run_netmon(cmd)
    harness.assert_ran_ok(result)
    totals = fwd.wait_idle(2)
    harness.assert_flow_matches_forwarder(result, fwd.port, totals)
    raw = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=raw_backend.port)
    assert (raw["bytes_sent"], raw["bytes_received"], raw["connections"]) == (8 + 5000, 7000, 1), result.describe()
    s = result.summary
    assert s["totals"]["bytes_sent"] == sum(f["bytes_sent"] for f in s["flows"]), result.describe()
    assert s["totals"]["bytes_received"] == sum(f["bytes_received"] for f in s["flows"]), result.describe()
    assert s["totals"]["connections"] == sum(f["connections"] for f in s["flows"]), result.describe()
    assert s["totals"]["failed_connections"] == 0, result.describe()
    assert s["dropped_events"] == 0, result.describe()


BYTE_PATHS = [
    "send-recv", "sendall-recvinto", "sendmsg-recvmsg", "write-read", "writev-readv",
    "sendfile", "dup", "dup2", "nonblocking",
]


@pytest.mark.parametrize("method", BYTE_PATHS)
def test_each_byte_path_counted_exactly(method, run_netmon, raw_backend, forwarder):
    """send/recv, sendmsg/recvmsg, read/write, readv/writev, sendfile, dup'd fds, non-blocking connect."""
    send, recv = 300_000, 500_000
    fwd = forwarder(raw_backend.port)
    result = run_netmon(
        [P, str(harness.CLIENTS / "py_bytepaths.py"), "--port", fwd.port, "--method", method,
         "--send", send, "--recv", recv]
    )
    harness.assert_ran_ok(result)
    totals = fwd.wait_idle(1)
    assert (totals.client_to_server, totals.server_to_client) == (8 + send, recv), totals
    harness.assert_flow_matches_forwarder(result, fwd.port, totals)


@pytest.fixture(scope="module")
def udp_echo(work_dir):
    server = harness.start_server("udp-echo", work_dir / "logs")
    yield server
    server.stop()


def test_udp_datagrams(run_netmon, udp_echo):
    count, size = 10, 1000
    result = run_netmon([P, str(harness.CLIENTS / "py_udp.py"), "--port", udp_echo.port, "--count", count, "--size", size])
    harness.assert_ran_ok(result)
    flow = harness.one_flow(result, direction="outgoing", transport="udp", dst_ip="127.0.0.1", dst_port=udp_echo.port)
    assert (flow["bytes_sent"], flow["bytes_received"]) == (2 * count * size, 2 * count * size), result.describe()
    assert flow["family"] == "IPv4" and flow["failed"] == 0, result.describe()
    harness.assert_pids_known(result, flow)
