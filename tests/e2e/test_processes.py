"""Threads, fork, vfork, posix_spawn, exec: every process and thread is accounted for."""

import json
import socket
import struct
import threading
import time

import pytest

from support import harness

P = harness.PYTHON


@pytest.mark.requires("gcc")
def test_many_threads_many_connections(run_netmon, raw_backend, threads_binary):
    threads, per_thread, send, recv = 16, 500, 100, 200
    result = run_netmon([threads_binary, raw_backend.port, threads, per_thread, send, recv], timeout=300)
    harness.assert_ran_ok(result)
    client = json.loads(result.proc.stdout)
    n = threads * per_thread
    assert client == {"connections": n, "failures": 0, "bytes_sent": n * (8 + send), "bytes_received": n * recv}
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_ip="127.0.0.1", dst_port=raw_backend.port)
    got = {k: flow[k] for k in ("connections", "failed", "bytes_sent", "bytes_received")}
    assert got == {"connections": n, "failed": 0, "bytes_sent": n * (8 + send), "bytes_received": n * recv}, (
        f"dropped_events={result.summary.get('dropped_events')}\n{result.describe()}"
    )
    t = result.summary["totals"]
    assert (t["connections"], t["bytes_sent"], t["bytes_received"]) == (n, n * (8 + send), n * recv), result.describe()
    assert result.summary["dropped_events"] == 0, result.describe()


def _raw_exchange(port: int, send: int, recv: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(struct.pack("!II", send, recv) + b"q" * send)
        got = 0
        while data := s.recv(65536):
            got += len(data)
    return got


def test_forking_server_incoming_flow(start_netmon, tmp_path):
    """A server under netmon forks a child per connection; an unmonitored client talks to it."""
    conns, send, recv = 12, 50_000, 80_000
    port_file = tmp_path / "forking.port"
    running = start_netmon([P, str(harness.CLIENTS / "py_forking_server.py"), "--port-file", port_file, "--conns", conns])
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert running.proc.poll() is None, running.wait().describe()
        assert time.monotonic() < deadline, "forking server did not start"
        time.sleep(0.05)
    port = int(port_file.read_text())

    results = []
    errors = []

    def client():
        try:
            results.append(_raw_exchange(port, send, recv))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    workers = [threading.Thread(target=client) for _ in range(conns)]
    for w in workers[:4]:
        w.start()
    for w in workers[:4]:
        w.join()
    for w in workers[4:]:  # the rest concurrently
        w.start()
    for w in workers[4:]:
        w.join()
    result = running.wait(60)
    assert not errors, errors
    assert results == [recv] * conns
    harness.assert_ran_ok(result)

    flow = harness.one_flow(result, direction="incoming", transport="tcp", src_port=port)
    got = {k: flow[k] for k in ("connections", "failed", "bytes_sent", "bytes_received")}
    assert got == {"connections": conns, "failed": 0, "bytes_sent": conns * recv, "bytes_received": conns * (8 + send)}, (
        result.describe()
    )
    assert flow["src_ip"] == "127.0.0.1" and flow["dst_ip"] == "127.0.0.1", result.describe()
    assert flow["dst_port"] is None, "incoming flows carry no peer port\n" + result.describe()
    harness.assert_pids_known(result, flow)


@pytest.mark.requires("curl")
def test_fork_vfork_spawn_exec(run_netmon, raw_backend, http_backend, forwarder, tmp_path):
    fwd = forwarder(http_backend.port)
    out = tmp_path / "pids.json"
    send, recv, download = 1000, 2000, 5000
    result = run_netmon(
        [
            P, str(harness.CLIENTS / "py_fork_exec.py"), "--raw-port", raw_backend.port,
            "--http-url", f"http://127.0.0.1:{fwd.port}", "--send", send, "--recv", recv,
            "--download", download, "--out", out,
        ]
    )
    harness.assert_ran_ok(result)
    pids = json.loads(out.read_text())
    s = result.summary

    for role, exe, parent in [
        ("parent", "python", None),
        ("fork_child", "python", "parent"),
        ("subprocess_curl", "curl", "parent"),
        ("posix_spawn_curl", "curl", "parent"),
    ]:
        proc = harness.process(s, pids[role])
        assert proc is not None, f"{role} pid {pids[role]} missing from processes\n{result.describe()}"
        assert proc["executable"].startswith(exe), f"{role}: {proc}\n{result.describe()}"
        if parent:
            assert proc["ppid"] == pids[parent], f"{role}: {proc}, parent pid {pids[parent]}\n{result.describe()}"

    raw = harness.one_flow(result, direction="outgoing", transport="tcp", dst_ip="127.0.0.1", dst_port=raw_backend.port)
    assert {pids["parent"], pids["fork_child"]} <= set(raw["pids"]), result.describe()
    assert (raw["connections"], raw["bytes_sent"], raw["bytes_received"]) == (2, 2 * (8 + send), 2 * recv), (
        result.describe()
    )

    totals = fwd.wait_idle(2)
    http = harness.assert_flow_matches_forwarder(result, fwd.port, totals)
    assert set(http["pids"]) == {pids["subprocess_curl"], pids["posix_spawn_curl"]}, result.describe()
