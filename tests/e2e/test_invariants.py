"""The interceptor's invariants (DESIGN §3), each checked by a real program.

programs/invariants.c drives the calls; these tests compare what it observes with and
without libnetmon.so, and check netmon's accounting against what the peer really received.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support import harness

PROGRAMS = Path(__file__).resolve().parent / "programs"


@pytest.fixture(scope="session")
def invariants(work_dir):
    out = work_dir / "invariants"
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-pthread", "-o", str(out), str(PROGRAMS / "invariants.c")],
        check=True,
        capture_output=True,
    )
    return out


def tcp_flows(summary, direction):
    return [f for f in summary["flows"] if f["direction"] == direction and f["transport"] == "tcp"]


@pytest.mark.requires("gcc")
def test_return_values_and_errno_are_untouched(invariants, run_netmon):
    plain = subprocess.run([invariants, "transcript"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    result = run_netmon([invariants, "transcript"])
    assert result.proc.returncode == 0, result.describe()
    assert result.proc.stdout == plain.stdout
    # The transcript really went through the hooks: its connection attempts were recorded.
    refused = harness.flows(result.summary, dst_port=1, transport="tcp")
    assert refused and refused[0]["errors"].get("ECONNREFUSED") == 1, result.describe()
    assert len(plain.stdout.splitlines()) > 50


@pytest.mark.requires("gcc")
def test_hooks_never_allocate(invariants, run_netmon):
    result = run_netmon([invariants, "noalloc"])
    assert result.proc.stdout.strip() == "allocations 0", result.describe()
    out = tcp_flows(result.summary, "outgoing")
    assert sum(f["connections"] for f in out) == 101
    assert sum(f["bytes_sent"] for f in out) == 800
    assert sum(f["bytes_received"] for f in out) == 400


@pytest.mark.requires("gcc")
def test_signal_handler_writing_to_a_socket_is_counted(invariants, run_netmon):
    n = 300_000
    result = run_netmon([invariants, "signal", str(n)])
    assert result.proc.stdout.strip() == f"recv -1 errno EINTR peer_got {n}", result.describe()
    (out,) = tcp_flows(result.summary, "outgoing")
    assert out["bytes_sent"] == n
    (inc,) = tcp_flows(result.summary, "incoming")
    assert inc["bytes_received"] == n


@pytest.mark.requires("gcc")
def test_fork_child_has_its_own_accounting(invariants, run_netmon):
    result = run_netmon([invariants, "fork", "70000", "30000"])
    words = result.proc.stdout.split()
    child = int(words[1])
    assert words[3] == "100000", result.describe()
    (out,) = tcp_flows(result.summary, "outgoing")
    assert out["bytes_sent"] == 100_000
    assert out["connections"] == 1, "the child's inherited socket is not a new connection"
    assert child in out["pids"] and len(out["pids"]) == 2, result.describe()
    assert harness.process(result.summary, child) is not None


@pytest.mark.requires("gcc")
def test_vfork_child_cannot_corrupt_the_parent(invariants, run_netmon):
    result = run_netmon([invariants, "vfork", "123457"])
    assert result.proc.stdout.strip() == "peer_got 123457", result.describe()
    (out,) = tcp_flows(result.summary, "outgoing")
    assert out["bytes_sent"] == 123_457, result.describe()
    (inc,) = tcp_flows(result.summary, "incoming")
    assert inc["bytes_received"] == 123_457


@pytest.mark.requires("gcc")
def test_fd_number_reuse_across_threads_keeps_totals_exact(invariants, run_netmon):
    rounds = 300
    result = run_netmon([invariants, "reuse", str(rounds)])
    assert result.proc.stdout.strip() == f"peer_got {rounds * 20}", result.describe()
    (out,) = tcp_flows(result.summary, "outgoing")
    assert out["connections"] == 2 * rounds
    assert out["bytes_sent"] == rounds * 20
    assert result.summary["dropped_events"] == 0


@pytest.mark.requires("gcc")
def test_netmon_disable_makes_the_interceptor_inert(invariants, run_netmon):
    result = run_netmon([invariants, "fork", "10", "10"], env={**os.environ, "NETMON_DISABLE": "1"})
    assert result.proc.returncode == 0
    # /proc may still see the connection (source "proc"); the interceptor must record nothing.
    recorded = [f for f in result.summary["flows"] if f["source"] == "interceptor"]
    assert recorded == [] and result.summary["processes"] == [], result.describe()


@pytest.mark.requires("curl")
def test_interceptor_is_inert_inside_netmon(run_netmon, netmon_bin, tmp_path, http_backend):
    """netmon under netmon: the inner netmon is preloaded but records nothing of its own; the
    program it runs reports to the inner netmon, not the outer one."""
    inner_json = tmp_path / "inner.json"
    url = f"http://127.0.0.1:{http_backend.port}/download?size=1000"
    result = run_netmon([netmon_bin, "run", "-q", "--json", inner_json, "--", "curl", "-s", "-o", "/dev/null", url])
    assert result.proc.returncode == 0, result.describe()
    recorded = [f for f in result.summary["flows"] if f["source"] == "interceptor"]
    assert result.summary["processes"] == [] and recorded == [], result.describe()
    import json

    inner = json.loads(inner_json.read_text())
    flow = harness.flows(inner, dst_port=http_backend.port)
    assert flow and flow[0]["bytes_received"] > 1000


def test_preloaded_program_without_a_collector_behaves_identically(invariants, tmp_path):
    """LD_PRELOAD with no region (no NETMON_SHM), and with a region path that does not exist."""
    lib = harness.netmon_bin().parent / "libnetmon.so"
    plain = subprocess.run([invariants, "transcript"], capture_output=True, text=True, timeout=60)
    for extra in ({}, {"NETMON_SHM": str(tmp_path / "missing.shm")}):
        env = {**os.environ, "LD_PRELOAD": str(lib), **extra}
        pre = subprocess.run([invariants, "transcript"], capture_output=True, text=True, timeout=60, env=env)
        assert pre.returncode == 0 and pre.stdout == plain.stdout
