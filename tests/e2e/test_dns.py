"""DNS: lookups through libc and raw UDP, answers, failures, and name -> connection correlation.

Runs inside a private network namespace whose resolver is dnsmasq (support/netns.py).
"""

import json

import pytest

from support import harness
from support.netns import API_NAME, NX_NAME, SERVFAIL_NAME, V6_NAME

pytestmark = pytest.mark.requires("root", "netns", "dnsmasq")

P = harness.PYTHON
PY_DNS = str(harness.CLIENTS / "py_dns.py")


def client_output(result) -> dict:
    try:
        return json.loads(result.proc.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"client printed no JSON ({e})\n{result.describe()}") from e


def one_dns(result, name, **match) -> dict:
    found = harness.dns_entries(result.summary, name, **match)
    assert len(found) == 1, f"expected one dns entry for {name} {match}, found {len(found)}\n{result.describe()}"
    return found[0]


def test_getaddrinfo_answer_and_dst_domain(run_netmon, dns_netns):
    send, recv = 3000, 4000
    result = run_netmon(
        [P, PY_DNS, API_NAME, "--connect", f"{API_NAME}:{dns_netns.raw_port}", "--send", send, "--recv", recv],
        netns=dns_netns.name,
    )
    harness.assert_ran_ok(result)
    assert client_output(result)[API_NAME] == {"addresses": ["127.0.0.1"]}

    entry = one_dns(result, API_NAME, source="getaddrinfo")
    assert entry["answers"] == ["127.0.0.1"], result.describe()
    assert entry["failures"] == 0 and entry["error"] is None, result.describe()
    # once by the script, once inside socket.create_connection
    assert entry["count"] == 2, result.describe()
    assert entry["latency_ms_max"] >= entry["latency_ms_avg"] >= 0, result.describe()
    assert result.summary["totals"]["dns_lookups"] >= 2, result.describe()

    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=dns_netns.raw_port)
    assert flow["dst_domain"] == API_NAME, result.describe()
    assert flow["dst_ip"] == "127.0.0.1", result.describe()
    assert (flow["connections"], flow["bytes_sent"], flow["bytes_received"]) == (1, 8 + send, recv), result.describe()


def test_getaddrinfo_ipv6_answer(run_netmon, dns_netns):
    result = run_netmon([P, PY_DNS, "--family", "6", V6_NAME], netns=dns_netns.name)
    harness.assert_ran_ok(result)
    assert client_output(result)[V6_NAME] == {"addresses": ["::1"]}
    entry = one_dns(result, V6_NAME, source="getaddrinfo")
    assert entry["answers"] == ["::1"], result.describe()
    assert entry["error"] is None, result.describe()


def test_ipv6_connection_to_resolved_name(run_netmon, dns_netns):
    send, recv = 1500, 2500
    result = run_netmon(
        [P, PY_DNS, "--connect", f"{V6_NAME}:{dns_netns.raw6_port}", "--send", send, "--recv", recv],
        netns=dns_netns.name,
    )
    harness.assert_ran_ok(result)
    entry = one_dns(result, V6_NAME, source="getaddrinfo")
    assert entry["answers"] == ["::1"], result.describe()
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=dns_netns.raw6_port)
    assert flow["family"] == "IPv6" and flow["dst_ip"] == "::1", result.describe()
    assert flow["dst_domain"] == V6_NAME, result.describe()
    assert (flow["connections"], flow["bytes_sent"], flow["bytes_received"]) == (1, 8 + send, recv), result.describe()


def test_gethostbyname_is_seen(run_netmon, dns_netns):
    result = run_netmon([P, PY_DNS, "--gethostbyname", API_NAME], netns=dns_netns.name)
    harness.assert_ran_ok(result)
    assert client_output(result)[API_NAME] == {"addresses": ["127.0.0.1"]}
    entry = one_dns(result, API_NAME, source="gethostbyname")
    assert entry["answers"] == ["127.0.0.1"], result.describe()
    assert entry["error"] is None and entry["failures"] == 0, result.describe()


def test_nxdomain(run_netmon, dns_netns):
    result = run_netmon([P, PY_DNS, NX_NAME, NX_NAME], netns=dns_netns.name)
    harness.assert_ran_ok(result)
    assert client_output(result)[NX_NAME] == {"error": "EAI_NONAME"}
    entry = one_dns(result, NX_NAME, source="getaddrinfo")
    assert entry["count"] == 2 and entry["failures"] == 2, result.describe()
    assert entry["error"] in ("NXDOMAIN", "EAI_NONAME"), result.describe()
    assert entry["answers"] == [], result.describe()
    assert result.summary["flows"] == [] or all(f["transport"] == "udp" for f in result.summary["flows"]), (
        "a failed lookup opens no TCP connection\n" + result.describe()
    )


def test_servfail(run_netmon, dns_netns):
    result = run_netmon([P, PY_DNS, SERVFAIL_NAME], netns=dns_netns.name)
    harness.assert_ran_ok(result)
    assert client_output(result)[SERVFAIL_NAME] == {"error": "EAI_AGAIN"}
    entry = one_dns(result, SERVFAIL_NAME, source="getaddrinfo")
    assert entry["failures"] == 1, result.describe()
    assert entry["error"] in ("SERVFAIL", "EAI_AGAIN"), result.describe()
    assert entry["answers"] == [], result.describe()


@pytest.mark.requires("node")
def test_node_resolve4_raw_udp(run_netmon, dns_netns):
    """node's dns.resolve4 uses c-ares: raw UDP to port 53, parsed by netmon (source "udp")."""
    result = run_netmon(
        ["node", str(harness.CLIENTS / "node_dns.js"), "127.0.0.1", API_NAME, NX_NAME, SERVFAIL_NAME],
        netns=dns_netns.name,
    )
    harness.assert_ran_ok(result)
    out = client_output(result)
    assert out == {
        API_NAME: {"addresses": ["127.0.0.1"]},
        NX_NAME: {"error": "ENOTFOUND"},
        SERVFAIL_NAME: {"error": "ESERVFAIL"},
    }, out

    ok = one_dns(result, API_NAME, source="udp")
    assert ok["answers"] == ["127.0.0.1"] and ok["rcode"] == 0 and ok["error"] is None, result.describe()
    assert ok["count"] == 1 and ok["failures"] == 0, result.describe()

    nx = one_dns(result, NX_NAME, source="udp")
    assert nx["rcode"] == 3 and nx["error"] == "NXDOMAIN" and nx["failures"] == 1, result.describe()
    assert nx["answers"] == [], result.describe()

    sf = one_dns(result, SERVFAIL_NAME, source="udp")
    assert sf["rcode"] == 2 and sf["error"] == "SERVFAIL" and sf["failures"] == 1, result.describe()

    udp = harness.one_flow(result, direction="outgoing", transport="udp", dst_ip="127.0.0.1", dst_port=53)
    assert udp["bytes_sent"] > 0 and udp["bytes_received"] > 0, result.describe()
