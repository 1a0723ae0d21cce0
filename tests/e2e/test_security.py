"""What SECURITY.md promises, checked: privileged programs are left alone, other users' processes
cannot attach to a region, and no payload, query string or credential is ever recorded.

Needs root: the tests switch to the `nobody` user with setpriv, and make a setuid-root program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import harness

PROGRAMS = Path(__file__).resolve().parent / "programs"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ROUNDS = 10
WORKLOAD_OUT = f"rounds {ROUNDS} sent {ROUNDS * 1000} received {ROUNDS * 500} exit 0\n"


@pytest.fixture
def shared_dir():
    """A directory every user can enter, holding copies of netmon and libnetmon.so (the build
    directory may be private to root)."""
    d = Path(tempfile.mkdtemp(prefix="netmon-security-"))
    try:
        d.chmod(0o755)
        for f in (harness.netmon_bin(), harness.netmon_bin().parent / "libnetmon.so"):
            shutil.copy(f, d / f.name)
        out = d / "out"
        out.mkdir()
        out.chmod(0o777)
        yield d
    finally:
        shutil.rmtree(d)


def compile_workload(d: Path, name: str, *extra: str) -> Path:
    exe = d / name
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-pthread", "-o", str(exe), str(PROGRAMS / "workload.c"), *extra],
        check=True,
        capture_output=True,
    )
    return exe


def run(prefix: list[str], d: Path, cmd: list[str]) -> tuple[subprocess.CompletedProcess, dict]:
    out = d / "out" / "summary.json"
    out.unlink(missing_ok=True)
    argv = [*prefix, str(d / "netmon"), "run", "-q", "--json", str(out), "--", *map(str, cmd)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.exists(), f"{argv}\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def interceptor_flows(summary: dict) -> list[dict]:
    return [f for f in summary["flows"] if f["source"] == "interceptor"]


@pytest.mark.requires("root", "gcc")
def test_a_setuid_program_is_left_alone(shared_dir):
    """A setuid-root program started under netmon by an unprivileged user runs unchanged and
    unmonitored: nothing of it reaches the summary."""
    exe = compile_workload(shared_dir, "setuid-workload")
    os.chown(exe, 0, 0)
    exe.chmod(0o4755)
    proc, summary = run(NOBODY, shared_dir, [exe, "flood", 1, ROUNDS])
    assert (proc.returncode, proc.stdout) == (0, WORKLOAD_OUT), proc.stderr
    assert summary["processes"] == [] and summary["flows"] == [], summary
    # The same program without the setuid bit is monitored (the test really ran netmon).
    exe.chmod(0o755)
    proc, summary = run(NOBODY, shared_dir, [exe, "flood", 1, ROUNDS])
    assert (proc.returncode, proc.stdout) == (0, WORKLOAD_OUT), proc.stderr
    assert len(interceptor_flows(summary)) == 2, summary


@pytest.mark.requires("root", "gcc")
def test_the_interceptor_itself_stays_inert_in_secure_execution(shared_dir):
    """The dynamic loader already ignores LD_PRELOAD paths in a setuid program; a library a
    privileged program links against is loaded all the same. Linked in (DT_NEEDED) and run with
    a real uid that differs from the effective one (what makes the kernel set AT_SECURE, as for
    setuid programs), the interceptor must record nothing — although here it could open the
    region: same effective user, /proc readable."""
    exe = compile_workload(
        shared_dir, "linked-workload", f"-L{shared_dir}", "-Wl,--no-as-needed", "-lnetmon", f"-Wl,-rpath,{shared_dir}"
    )
    # Control: an ordinary run of the linked program is monitored through the linked library.
    proc, summary = run([], shared_dir, [exe, "flood", 1, ROUNDS])
    assert (proc.returncode, proc.stdout) == (0, WORKLOAD_OUT), proc.stderr
    assert len(interceptor_flows(summary)) == 2 and summary["processes"], summary
    # Real uid nobody, effective uid root: AT_SECURE.
    proc, summary = run(["setpriv", "--ruid=65534"], shared_dir, [exe, "flood", 1, ROUNDS])
    assert (proc.returncode, proc.stdout) == (0, WORKLOAD_OUT), proc.stderr
    assert summary["processes"] == [] and interceptor_flows(summary) == [], summary


@pytest.mark.requires("root", "gcc")
def test_another_users_process_cannot_attach_to_the_region(shared_dir):
    """netmon run as root; the program drops to nobody before it starts. The region is root's
    (mode 0600, reached through root's /proc/<pid>/fd): the kernel refuses nobody, and the
    program runs unmonitored."""
    exe = compile_workload(shared_dir, "workload")
    proc, summary = run([], shared_dir, [*NOBODY, exe, "flood", 1, ROUNDS])
    assert (proc.returncode, proc.stdout) == (0, WORKLOAD_OUT), proc.stderr
    assert all(p["executable"] != "workload" for p in summary["processes"]), summary
    assert interceptor_flows(summary) == [], summary


@pytest.mark.requires("curl")
def test_no_payload_query_string_or_credential_is_recorded(run_netmon, http_backend, tmp_path):
    """curl with credentials in the URL, a secret query string, a secret header and body:
    none of it appears in what netmon records of the traffic — the JSON summary, the text
    summary, the OTLP JSON export, the flow log."""
    secrets_ = ["s3cr3t-user", "s3cr3t-pass", "s3cr3t-query", "s3cr3t-header", "s3cr3t-body"]
    url = f"http://{secrets_[0]}:{secrets_[1]}@127.0.0.1:{http_backend.port}/upload?token={secrets_[2]}"
    otlp = tmp_path / "otlp.jsonl"
    flow_log = tmp_path / "flows.log"
    result = run_netmon(
        ["curl", "-s", "-o", "/dev/null", "-H", f"X-Api-Key: {secrets_[3]}", "--data", secrets_[4], url],
        netmon_args=["--exporter", "console,otlp-json", "--otlp-json", str(otlp), "--flow-log", str(flow_log)],
    )
    harness.assert_ran_ok(result)
    flow = harness.one_flow(result, direction="outgoing", dst_port=http_backend.port)
    assert flow["bytes_sent"] > len(secrets_[4]), result.describe()
    # The command line is the user's own and is kept as typed (SECURITY.md says so): it holds
    # every secret here. Everything else comes from the traffic and must hold none.
    assert result.summary.pop("command")[-1] == url
    outputs = {
        "json": json.dumps(result.summary),
        "stderr": result.proc.stderr,
        "otlp-json": otlp.read_text(),
        "flow-log": flow_log.read_text(),
    }
    for name, text in outputs.items():
        assert text, name
        for s in secrets_:
            assert s not in text, f"{s} found in {name}"
