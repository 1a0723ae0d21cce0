"""`netmon run` as a command: exit status passthrough, usage errors, the JSON summary's shape."""

import pytest

from support import harness

P = harness.PYTHON


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_status_is_the_programs(run_netmon, code):
    result = run_netmon([P, "-c", f"import sys; sys.exit({code})"])
    harness.assert_ran_ok(result, expected_exit=code)
    assert result.summary["exit_code"] == code, result.describe()


def test_summary_shape(run_netmon):
    cmd = [P, "-c", "print('hello')"]
    result = run_netmon(cmd)
    harness.assert_ran_ok(result)
    s = result.summary
    assert result.proc.stdout.strip() == "hello", "the program's stdout must pass through untouched"
    assert s["command"] == cmd, result.describe()
    assert s["exit_code"] == 0
    assert isinstance(s["duration_ms"], (int, float)) and s["duration_ms"] >= 0
    for key in ("processes", "dns", "flows"):
        assert isinstance(s[key], list), key
    for key in ("bytes_sent", "bytes_received", "connections", "failed_connections", "dns_lookups"):
        assert isinstance(s["totals"][key], int), key
    assert isinstance(s["dropped_events"], int)
    assert s["flows"] == [], "a program that does no networking has no flows"
    assert s["totals"]["connections"] == 0 and s["totals"]["bytes_sent"] == 0
    procs = s["processes"]
    assert any(p["executable"].startswith("python") for p in procs), result.describe()
    for p in procs:
        assert isinstance(p["pid"], int) and isinstance(p["ppid"], int), p


def test_human_summary_on_stderr(run_netmon, raw_backend):
    result = run_netmon(
        [P, str(harness.CLIENTS / "py_asyncio_raw.py"), "--port", raw_backend.port, "--send", 10, "--recv", 10]
    )
    harness.assert_ran_ok(result)
    assert str(raw_backend.port) in result.proc.stderr, "the human summary names the destination\n" + result.describe()


@pytest.mark.parametrize("args", [["run"], ["run", "--"]], ids=["run", "run--"])
def test_no_command_is_a_usage_error(netmon_bin, args):
    cp = harness.run_netmon_raw(args)
    assert cp.returncode == 2, f"exit {cp.returncode}\nstdout:{cp.stdout}\nstderr:{cp.stderr}"
    assert cp.stderr.strip(), "a usage error says what is wrong on stderr"


@pytest.mark.parametrize(
    "cmd", ["/nonexistent/netmon-test-no-such-program", "netmon-test-no-such-program-in-path"], ids=["path", "PATH"]
)
def test_command_that_cannot_start_exits_127(run_netmon, cmd):
    result = run_netmon([cmd, "arg"])
    assert result.proc.returncode == 127, result.describe()
    assert "netmon-test-no-such-program" in result.proc.stderr, "the error names the command\n" + result.describe()


def test_help(netmon_bin):
    cp = harness.run_netmon_raw(["run", "--help"])
    assert cp.returncode == 0, cp.stderr
    assert "--json" in cp.stdout
