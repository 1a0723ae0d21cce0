"""CPython's own network test suites, run plainly and under netmon at the same time: every test
must end the same way (passed, skipped, failed) with and without the interceptor.

These suites exercise far more of the socket API than netmon's own tests: timeouts, signals
interrupting every blocking call, makefile, sendmsg/recvmsg with ancillary data, sendfile,
non-blocking and selectors, IPv6, Unix sockets, socketpair, HTTP clients and servers.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

from support import harness

SUITES = [
    "test_socket",
    "test_httplib",
    "test_urllib2_localnet",
    "test_asyncio.test_sock_lowlevel",
    "test_poll",
    "test_epoll",
]
# ThreadedVSOCKSocketStreamTest hangs on this kind of VM even without netmon (a vsock device
# that never answers).
IGNORE = ["*VSOCK*"]


def outcomes(junit: str) -> dict[str, str]:
    """test id -> passed / skipped / failure / error, from regrtest's JUnit XML."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                status = child.tag
        result[f"{case.get('classname')}.{case.get('name')}"] = status
    return result


def test_cpython_network_suites_end_the_same_with_and_without_netmon(start_netmon, tmp_path):
    try:
        subprocess.run([harness.PYTHON, "-c", "import test.test_socket"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.fail(f"{harness.PYTHON} has no test package (CPython's test suite)", pytrace=False)
    args = ["--timeout", "120", *[a for pattern in IGNORE for a in ("-i", pattern)], *SUITES]
    plain_dir, netmon_dir = tmp_path / "plain", tmp_path / "netmon"
    plain_dir.mkdir()
    netmon_dir.mkdir()
    # Both at once: the suites mostly wait (timeouts, signals), so this halves the wall time.
    plain = subprocess.Popen(
        [harness.PYTHON, "-m", "test", "--junit-xml", str(plain_dir / "junit.xml"), *args],
        cwd=plain_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = start_netmon(
        [harness.PYTHON, "-m", "test", "--junit-xml", netmon_dir / "junit.xml", *args],
        cwd=netmon_dir,
        timeout=600,
    )
    plain_out, _ = plain.communicate(timeout=600)
    result = running.wait()
    expected = outcomes(str(plain_dir / "junit.xml"))
    got = outcomes(str(netmon_dir / "junit.xml"))
    assert len(expected) > 500, plain_out[-3000:]
    differ = {t: (expected.get(t), got.get(t)) for t in expected.keys() | got.keys() if expected.get(t) != got.get(t)}
    assert not differ, f"outcomes differ (plain, netmon): {differ}\n{result.describe()}"
    assert result.proc.returncode == plain.returncode, result.describe()
    # netmon really watched: the suites' loopback traffic is in the summary.
    flows = [f for f in result.summary["flows"] if f["source"] == "interceptor"]
    assert len(flows) > 10, result.describe()
