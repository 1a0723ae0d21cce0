"""Fixtures for the netmon end-to-end tests.

Everything here runs real programs against real local servers on 127.0.0.1, or inside a
network namespace the DNS fixture creates. Nothing is skipped for a missing tool: the
test command (scripts/test.sh) installs every tool, so a missing one is a failure.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from lambda_fixtures import local_lambda  # noqa: F401 - the local Lambda fixture
from support import harness
from support.netns import DnsNetnsFixture

# Tools a test needs, by marker name: @pytest.mark.requires("node", "netns").
TOOL_CHECKS = {
    "root": lambda: os.geteuid() == 0,
    "netns": lambda: os.geteuid() == 0 and harness.which("ip") is not None,
    "dnsmasq": lambda: harness.which("dnsmasq") is not None,
    "node": lambda: harness.which("node") is not None,
    "java": lambda: harness.which("java") is not None,
    "curl": lambda: harness.which("curl") is not None,
    "gcc": lambda: harness.which("gcc") is not None,
    "openssl": lambda: harness.which("openssl") is not None,
    "chromium": lambda: harness.which("chromium") is not None,
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "requires(*tools): the test needs these tools/privileges "
        f"({', '.join(TOOL_CHECKS)}); a missing one FAILS the test (run scripts/install-test-deps.sh)",
    )


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        for tool in mark.args:
            check = TOOL_CHECKS.get(tool)
            if check is None:
                pytest.fail(f"unknown requirement {tool!r} in @pytest.mark.requires", pytrace=False)
            if not check():
                pytest.fail(
                    f"required tool/privilege {tool!r} is missing; scripts/install-test-deps.sh installs it",
                    pytrace=False,
                )


# --------------------------------------------------------------------------- basics


@pytest.fixture(scope="session")
def work_dir():
    """Session scratch dir for logs, certs and summaries."""
    with tempfile.TemporaryDirectory(prefix="netmon-e2e-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def netmon_bin() -> Path:
    path = harness.netmon_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"netmon binary not found at {path}: build it (cargo build) or set NETMON_BIN", pytrace=False)
    lib = path.parent / "libnetmon.so"
    if not lib.is_file():
        pytest.fail(f"libnetmon.so not found next to {path}", pytrace=False)
    return path


@pytest.fixture
def run_netmon(netmon_bin, tmp_path):
    """run_netmon(cmd, env=None, netns=None, timeout=120) -> NetmonResult(proc, summary, argv)."""

    def _run(cmd, env=None, netns=None, timeout=120.0, **kw):
        return harness.run_netmon([str(c) for c in cmd], json_dir=tmp_path, env=env, netns=netns, timeout=timeout, **kw)

    return _run


@pytest.fixture
def start_netmon(netmon_bin, tmp_path):
    """start_netmon(cmd, ...) -> RunningNetmon (call .wait()); killed at teardown if still running."""
    started = []

    def _start(cmd, env=None, netns=None, timeout=120.0, **kw):
        running = harness.start_netmon(
            [str(c) for c in cmd], json_dir=tmp_path, env=env, netns=netns, timeout=timeout, **kw
        )
        started.append(running)
        return running

    yield _start
    for running in started:
        running.kill()


# --------------------------------------------------------------------------- backends


@pytest.fixture(scope="session")
def certs(work_dir):
    """(cert.pem, key.pem): self-signed for localhost and 127.0.0.1, made per session."""
    if harness.which("openssl") is None:
        pytest.fail("openssl is missing; scripts/install-test-deps.sh installs it", pytrace=False)
    return harness.make_cert(work_dir / "certs")


@pytest.fixture(scope="session")
def http_backend(work_dir):
    server = harness.start_server("http", work_dir / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def https_backend(work_dir, certs):
    cert, key = certs
    server = harness.start_server("http", work_dir / "logs", "--cert", str(cert), "--key", str(key))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def raw_backend(work_dir):
    server = harness.start_server("raw", work_dir / "logs")
    yield server
    server.stop()


@pytest.fixture
def forwarder(work_dir):
    """forwarder(backend_port) -> a fresh byte-counting Forwarder; stopped after the test."""
    started = []

    def _make(target_port: int) -> harness.Forwarder:
        fwd = harness.Forwarder(target_port, work_dir / "logs")
        started.append(fwd)
        return fwd

    yield _make
    for fwd in started:
        fwd.stop()


@pytest.fixture(scope="session")
def dns_netns(work_dir):
    """A network namespace whose resolver is dnsmasq (see support/netns.py)."""
    for tool, check in (("netns", TOOL_CHECKS["netns"]), ("dnsmasq", TOOL_CHECKS["dnsmasq"])):
        if not check():
            pytest.fail(f"{tool} is missing; scripts/install-test-deps.sh installs it", pytrace=False)
    fixture = DnsNetnsFixture(work_dir / "logs")
    try:
        yield fixture.setup()
    finally:
        fixture.teardown()


@pytest.fixture(scope="session")
def threads_binary(work_dir):
    """clients/threads.c compiled with gcc for this session."""
    out = work_dir / "threads"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-pthread", "-o", str(out), str(harness.CLIENTS / "threads.c")],
        check=True,
        capture_output=True,
    )
    return out
