"""Self-checks of the test harness, without netmon.

If one of these fails, the servers, forwarder or clients are broken, not netmon: the
netmon tests that use the same pieces would fail for the wrong reason.
"""

import os
import subprocess

import pytest

from support import clients, harness

C = harness.CLIENTS
P = harness.PYTHON
MIB = 1024 * 1024


def run(argv, env=None, timeout=120):
    full = dict(os.environ)
    full.update(env or {})
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=full, timeout=timeout)
    assert cp.returncode == 0, f"{argv} exited {cp.returncode}\nstdout:{cp.stdout}\nstderr:{cp.stderr[-3000:]}"
    return cp


@pytest.mark.parametrize("send,recv", [(0, 0), (1, 1), (100_000, 3 * MIB)])
def test_forwarder_counts_raw_exactly(raw_backend, forwarder, send, recv):
    fwd = forwarder(raw_backend.port)
    run([P, C / "py_asyncio_raw.py", "--port", fwd.port, "--send", send, "--recv", recv, "--conns", 3])
    totals = fwd.wait_idle(3)
    assert totals.connections == 3
    assert totals.client_to_server == 3 * (8 + send)
    assert totals.server_to_client == 3 * recv
    assert all(not r["errors"] for r in totals.records), totals.records


@pytest.mark.requires("node")
def test_forwarder_counts_node_net_exactly(raw_backend, forwarder):
    fwd = forwarder(raw_backend.port)
    run(["node", C / "node_net.js", "127.0.0.1", fwd.port, 12345, 54321])
    totals = fwd.wait_idle(1)
    assert (totals.connections, totals.client_to_server, totals.server_to_client) == (1, 8 + 12345, 54321)


@pytest.mark.requires("curl", "openssl")
def test_https_backend_and_forwarder_see_payload_plus_tls_overhead(https_backend, forwarder, certs, tmp_path):
    cert, _ = certs
    fwd = forwarder(https_backend.port)
    run([P, C / "py_urllib.py", "--url", f"https://127.0.0.1:{fwd.port}", "--upload", MIB, "--download", MIB, "--cafile", cert])
    totals = fwd.wait_idle(2)
    # TLS adds handshakes and record headers: more than the payload, but not by much.
    assert MIB < totals.client_to_server < MIB + 64 * 1024, totals
    assert MIB < totals.server_to_client < MIB + 64 * 1024, totals


def test_http_backend_rejects_unknown_path(http_backend):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{http_backend.port}/nope", timeout=10)
    assert e.value.code == 404


def test_full_backlog_listener_times_out():
    """The ETIMEDOUT recipe works on this kernel: a backlog-0 listener with a full queue drops SYNs."""
    import socket

    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            cp = subprocess.run(
                [P, C / "py_errors.py", "timeout", "--port", str(port)], capture_output=True, text=True, timeout=30
            )
            assert cp.returncode == 0, cp.stdout + cp.stderr
        finally:
            filler.close()


@pytest.mark.parametrize("client", clients.params(clients.HTTP_CLIENTS))
def test_http_client_works_without_netmon(client, request, forwarder, certs, tmp_path):
    """Each client in the matrix moves its payload; the forwarder sees payload + modest overhead."""
    backend = request.getfixturevalue("https_backend" if client.scheme == "https" else "http_backend")
    cert, _ = certs
    fwd = forwarder(backend.port)
    url = f"{client.scheme}://127.0.0.1:{fwd.port}"
    run(client.argv(url, clients.UPLOAD, clients.DOWNLOAD, cert, tmp_path), env=client.env(cert))
    totals = fwd.wait_idle(1)
    assert clients.UPLOAD < totals.client_to_server < clients.UPLOAD + client.max_overhead, totals
    assert clients.DOWNLOAD < totals.server_to_client < clients.DOWNLOAD + client.max_overhead, totals
    assert all(not r["errors"] for r in totals.records), totals.records


@pytest.mark.requires("openssl")
def test_forwarder_counts_what_a_tls_client_really_read(https_backend, forwarder, certs):
    """The HTTPS backend sends nothing after a keep-alive client closes without close_notify.

    (OpenSSL 3 would otherwise write a fatal alert after the client's close: bytes the
    forwarder counts but no client ever reads, which would make exact checks fail.)
    """
    import json
    import time

    cert, _ = certs
    fwd = forwarder(https_backend.port)
    cp = run([P, C / "py_tls_wire.py", "--port", fwd.port, "--cafile", cert])
    wire = json.loads(cp.stdout)
    totals = fwd.wait_idle(1)
    time.sleep(0.2)  # anything the server would still send arrives by now
    totals = fwd.wait_idle(1)
    assert (totals.client_to_server, totals.server_to_client) == (wire["bytes_sent"], wire["bytes_received"]), (
        totals,
        wire,
    )
