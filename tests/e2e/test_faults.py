"""Faults: whatever happens to netmon or its shared memory, the monitored program finishes with
the same output and exit status, and every loss is counted.

programs/workload.c makes deterministic traffic (its output depends only on its arguments) and
waits at a rendezvous so each fault is injected while the program is busy.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from support import harness

PROGRAMS = Path(__file__).resolve().parent / "programs"
R1, R2 = 50, 150
STEADY_OUT = f"rounds {R1 + R2} sent {(R1 + R2) * 1000} received {(R1 + R2) * 500} exit 0\n"


@pytest.fixture(scope="session")
def workload(work_dir):
    out = work_dir / "workload"
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-pthread", "-o", str(out), str(PROGRAMS / "workload.c")],
        check=True,
        capture_output=True,
    )
    return out


class Steady:
    """`workload steady` under `netmon run`, stopped at its rendezvous."""

    def __init__(self, start_netmon, workload: Path, tmp_path: Path, netmon_args=None, env=None):
        self.sync = tmp_path / "sync"
        self.running = start_netmon(
            [workload, "steady", R1, R2, self.sync], netmon_args=netmon_args or [], env=env, timeout=90
        )
        pid_file = self.sync.with_suffix(".pid")
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().endswith("\n")):
            assert self.running.proc.poll() is None, self.running.wait().describe()
            assert time.monotonic() < deadline, "the workload never reached its rendezvous"
            time.sleep(0.01)
        self.pid = int(pid_file.read_text())

    def shm_path(self) -> str:
        """NETMON_SHM as the program got it."""
        env = Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0")
        (value,) = [e.split(b"=", 1)[1] for e in env if e.startswith(b"NETMON_SHM=")]
        return value.decode()

    def go(self) -> None:
        self.sync.with_suffix(".go").touch()


def assert_program_unaffected(result, expected_exit=0):
    assert result.proc.returncode == expected_exit, result.describe()
    assert result.proc.stdout == STEADY_OUT, result.describe()
    assert "SIGBUS" not in result.proc.stderr and "Bus error" not in result.proc.stderr, result.describe()


@pytest.mark.requires("gcc")
def test_truncating_the_shared_memory_cannot_crash_the_program(start_netmon, workload, tmp_path):
    """A same-user process truncating the region would make every access of the program past the
    new end raise SIGBUS if the region were a plain file. It is a memfd sealed against shrinking:
    the truncation fails, and the program and netmon go on."""
    steady = Steady(start_netmon, workload, tmp_path)
    path = steady.shm_path()
    refused = []
    fd = os.open(path, os.O_RDWR)
    try:
        for size in (4096, 0):
            try:
                os.ftruncate(fd, size)
            except PermissionError:
                refused.append(size)
    finally:
        os.close(fd)
    steady.go()
    result = steady.running.wait()
    assert_program_unaffected(result)
    assert refused == [4096, 0], "the region could be truncated"
    flow = harness.one_flow(result, direction="outgoing", transport="tcp")
    assert (flow["connections"], flow["bytes_sent"], flow["bytes_received"]) == (R1 + R2, (R1 + R2) * 1000, (R1 + R2) * 500)
