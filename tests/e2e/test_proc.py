"""/proc data: flows of a program the interceptor cannot see (a statically linked client),
/proc/net/dev deltas of a known transfer through a veth pair, and the VPC Flow Logs file.

Everything runs in two network namespaces this module creates (NS_A with the monitored
programs, NS_B with a server behind a veth pair, on 198.18.0.0/30, the range RFC 2544 reserves
for test networks), so the kernel counters see only this module's traffic.
"""

from __future__ import annotations

import json
import secrets
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import harness

P = harness.PYTHON
PROGRAMS = harness.E2E / "programs"
ADDR_A, ADDR_B = "198.18.0.1", "198.18.0.2"

# Flow Logs' default (version 2) format.
V2_FIELDS = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol "
    "packets bytes start end action log-status"
).split()

# The most bytes a frame adds to its payload here: Ethernet 14 + IPv4 20 + TCP 60 (options).
MAX_HEADER = 14 + 20 + 60


def has_interp(path: Path) -> bool:
    """Whether an ELF file asks for a dynamic loader (has a PT_INTERP program header)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "expected a 64-bit ELF file"
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3 for i in range(phnum))


@pytest.fixture(scope="module")
def static_client(work_dir) -> Path:
    """programs/static_client.c linked statically: LD_PRELOAD cannot reach it."""
    out = work_dir / "static_client"
    build = subprocess.run(
        ["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(PROGRAMS / "static_client.c")],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"gcc -static failed (libc6-dev provides libc.a):\n{build.stderr}"
    assert not has_interp(out), "static_client was linked dynamically"
    return out


@dataclass
class Namespaces:
    a: str
    b: str
    veth_a: str
    raw_a: int  # raw server on 127.0.0.1 in NS_A
    raw6_a: int  # raw server on ::1 in NS_A
    udp_a: int  # udp-echo on 127.0.0.1 in NS_A
    raw_b: int  # raw server on ADDR_B in NS_B


def sh(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"


def mac(ns: str, dev: str) -> str:
    r = subprocess.run(["ip", "-n", ns, "-j", "link", "show", dev], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)[0]["address"]


@pytest.fixture(scope="module")
def netns(work_dir):
    tag = secrets.token_hex(3)
    a, b = f"netmon-proc-a-{tag}", f"netmon-proc-b-{tag}"
    veth_a, veth_b = f"nmpa{tag}", f"nmpb{tag}"
    servers: list[harness.Background] = []
    created: list[str] = []
    try:
        for ns in (a, b):
            sh("ip", "netns", "add", ns)
            created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", veth_a, "netns", a, "type", "veth", "peer", "name", veth_b, "netns", b)
        for ns, dev, addr in ((a, veth_a, ADDR_A), (b, veth_b, ADDR_B)):
            # No IPv6 on the veth: router solicitations would add packets the test did not send.
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        logs = work_dir / "logs"
        for kind, extra, ns in (
            ("raw", [], a),
            ("raw", ["--host", "::1"], a),
            ("udp-echo", [], a),
            ("raw", ["--host", ADDR_B], b),
        ):
            servers.append(harness.start_server(kind, logs, *extra, netns=ns))
        # Permanent neighbour entries: no ARP packets in the counters.
        for ns, dev, peer_ns, peer_dev, peer_addr in ((a, veth_a, b, veth_b, ADDR_B), (b, veth_b, a, veth_a, ADDR_A)):
            sh("ip", "-n", ns, "neigh", "replace", peer_addr, "lladdr", mac(peer_ns, peer_dev), "dev", dev, "nud", "permanent")
        yield Namespaces(a, b, veth_a, servers[0].port, servers[1].port, servers[2].port, servers[3].port)
    finally:
        for s in servers:
            s.stop()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def proc_flows(result) -> list[dict]:
    return [f for f in result.summary["flows"] if f["source"] == "proc"]


# ------------------------------------------------------------------ a static binary


@pytest.mark.requires("netns", "gcc")
def test_static_binary_connections_are_proc_flows(run_netmon, netns, static_client):
    result = run_netmon(
        [
            static_client, "-w", "500",
            f"tcp:127.0.0.1:{netns.raw_a}:100:2000",
            f"tcp:[::1]:{netns.raw6_a}:10:10",
            f"udp:127.0.0.1:{netns.udp_a}",
        ],
        netns=netns.a,
    )
    harness.assert_ran_ok(result)
    s = result.summary
    assert s["processes"] == [], f"the interceptor cannot enter a static binary\n{result.describe()}"
    flows = proc_flows(result)
    expected = {
        ("tcp", "IPv4", "127.0.0.1", netns.raw_a),
        ("tcp", "IPv6", "::1", netns.raw6_a),
        ("udp", "IPv4", "127.0.0.1", netns.udp_a),
    }
    got = {(f["transport"], f["family"], f["dst_ip"], f["dst_port"]) for f in flows}
    assert got == expected, result.describe()
    assert len(flows) == len(s["flows"]), f"only /proc saw this program\n{result.describe()}"
    for f in flows:
        where = f"\n{json.dumps(f)}\n{result.describe()}"
        assert f["direction"] == "outgoing", where
        assert f["connections"] == 1, where
        assert f["pids"] == [s["pid"]], where
        for key in ("bytes_sent", "bytes_received", "packets_sent", "packets_received", "rtt_us"):
            assert f[key] is None, f"{key} is not known from /proc" + where
        assert sum(f["states"].values()) == 1, where
    assert s["totals"]["bytes_sent"] == 0 and s["totals"]["connections"] == 0, result.describe()
    assert s["kernel"]["sockets"]["tcp"], result.describe()
    assert (s["kernel"]["socket_tables"], s["kernel"]["netlink_fallbacks"]) == ("sock_diag", 0), result.describe()
    assert "bytes unknown" in result.proc.stderr, result.describe()


@pytest.mark.requires("netns")
def test_udp_counters_cover_ipv4_and_ipv6(run_netmon, netns):
    """`/proc/net/snmp` counts IPv4 datagrams, `/proc/net/snmp6` IPv6 ones: both per run."""
    code = (
        "import socket\n"
        "for family, addr, n in ((socket.AF_INET, '127.0.0.1', 3), (socket.AF_INET6, '::1', 5)):\n"
        "    r = socket.socket(family, socket.SOCK_DGRAM); r.bind((addr, 0))\n"
        "    s = socket.socket(family, socket.SOCK_DGRAM)\n"
        "    for _ in range(n):\n"
        "        s.sendto(b'x' * 10, r.getsockname()[:2]); r.recv(100)\n"
    )
    result = run_netmon([P, "-c", code], netns=netns.a)
    harness.assert_ran_ok(result)
    k = result.summary["kernel"]
    got = {v: (k[v]["out_datagrams"], k[v]["in_datagrams"]) for v in ("udp", "udp6")}
    # The namespace is the test's own: no other process sends datagrams in it.
    assert got == {"udp": (3, 3), "udp6": (5, 5)}, result.describe()


@pytest.mark.requires("netns", "gcc")
def test_short_connections_are_caught_between_full_passes(run_netmon, netns, static_client):
    """With full passes only at start and end, the fd scans must catch each connection."""
    targets = [f"tcp:127.0.0.1:{netns.raw_a}:10:10", f"tcp:[::1]:{netns.raw6_a}:10:10"] * 2
    result = run_netmon(
        [static_client, "-w", "300", *targets],
        netns=netns.a,
        netmon_args=["--proc-interval-ms", "600000"],
    )
    harness.assert_ran_ok(result)
    assert result.summary["kernel"]["samples"] == 2, result.describe()
    by_port = {f["dst_port"]: f for f in proc_flows(result)}
    assert set(by_port) == {netns.raw_a, netns.raw6_a}, result.describe()
    assert all(f["connections"] == 2 for f in by_port.values()), result.describe()


@pytest.mark.requires("netns", "gcc")
def test_proc_flow_gets_the_domain_of_a_dns_answer_seen_in_the_run(run_netmon, netns, static_client):
    script = (
        f"{P} {harness.CLIENTS / 'py_dns.py'} --family 4 localhost >/dev/null && "
        f"exec {static_client} -w 300 tcp:127.0.0.1:{netns.raw_a}:10:10"
    )
    result = run_netmon(["sh", "-c", script], netns=netns.a)
    harness.assert_ran_ok(result)
    assert harness.dns_entries(result.summary, "localhost"), result.describe()
    flows = [f for f in proc_flows(result) if f["dst_port"] == netns.raw_a]
    assert len(flows) == 1, result.describe()
    assert flows[0]["dst_domain"] == "localhost", result.describe()


# ------------------------------------------------------------------ /proc/net/dev


@pytest.mark.requires("netns")
def test_net_dev_deltas_match_a_known_transfer_through_veth(run_netmon, netns):
    send, recv = 1 << 20, 256 << 10
    result = run_netmon(
        [P, harness.CLIENTS / "py_dns.py", "--connect", f"{ADDR_B}:{netns.raw_b}", "--send", send, "--recv", recv],
        netns=netns.a,
    )
    harness.assert_ran_ok(result)
    s = result.summary
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_ip=ADDR_B, dst_port=netns.raw_b)
    payload_out, payload_in = send + 8, recv  # the raw protocol's 8-byte header
    assert (flow["bytes_sent"], flow["bytes_received"]) == (payload_out, payload_in), result.describe()
    dev = {i["name"]: i for i in s["kernel"]["interfaces"]}
    v = dev[netns.veth_a]
    where = f"\n{json.dumps(v)}\n{result.describe()}"
    # A loaded machine may make TCP retransmit: each retransmitted segment crosses the veth
    # again (at most an MTU-sized frame plus headers).
    retransmitted = s["kernel"]["tcp"]["retrans_segs"] * (1500 + MAX_HEADER)
    assert payload_out <= v["tx_bytes"] <= payload_out + MAX_HEADER * v["tx_packets"] + retransmitted, where
    assert payload_in <= v["rx_bytes"] <= payload_in + MAX_HEADER * v["rx_packets"], where
    assert v["tx_errors"] == v["rx_errors"] == v["tx_dropped"] == v["rx_dropped"] == 0, where
    # The one connection of the namespace is this program's.
    tcp = s["kernel"]["tcp"]
    assert (tcp["active_opens"], tcp["passive_opens"], tcp["attempt_fails"]) == (1, 0, 0), result.describe()


# ------------------------------------------------------------------ flow log


def read_flow_log(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert lines and lines[0].split(" ") == V2_FIELDS, f"header: {lines[:1]}"
    records = []
    for line in lines[1:]:
        fields = line.split(" ")
        assert len(fields) == len(V2_FIELDS), f"{len(fields)} fields: {line!r}"
        r = dict(zip(V2_FIELDS, fields))
        assert r["version"] == "2" and r["account-id"] == "-" and r["log-status"] == "OK", line
        assert r["protocol"] in ("6", "17"), line
        for key in ("srcport", "dstport", "packets", "bytes"):
            assert r[key] == "-" or r[key].isdigit(), line
        assert r["start"].isdigit() and r["end"].isdigit() and int(r["start"]) <= int(r["end"]), line
        assert r["action"] in ("ACCEPT", "REJECT", "-"), line
        records.append(r)
    return records


def closed_port_in(ns: str) -> int:
    r = subprocess.run(
        ["ip", "netns", "exec", ns, P, "-c",
         "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"],
        capture_output=True, text=True, check=True,
    )
    return int(r.stdout)


@pytest.mark.requires("netns", "gcc")
def test_flow_log_is_v2_and_matches_the_json_totals(run_netmon, netns, static_client, tmp_path):
    log = tmp_path / "flows.log"
    refused = closed_port_in(netns.a)
    script = (
        f"{P} {harness.CLIENTS / 'py_raw_sessions.py'} --port {netns.raw_a} --sessions 3 --pause 1"
        f" --send 1000 --recv 7000 --refused {refused} && "
        f"exec {static_client} -w 300 tcp:127.0.0.1:{netns.raw_a}:10:10"
    )
    result = run_netmon(
        ["sh", "-c", script],
        netns=netns.a,
        netmon_args=["--flow-log", str(log), "--flow-log-interval", "1"],
    )
    harness.assert_ran_ok(result)
    s = result.summary
    records = read_flow_log(log)
    where = f"\nflow log:\n{log.read_text()}\n{result.describe()}"
    port = str(netns.raw_a)

    known = [r for r in records if r["bytes"] != "-"]
    outbound = [r for r in known if r["dstport"] in (port, str(refused))]
    inbound = [r for r in known if r["srcport"] == port]
    assert len(outbound) + len(inbound) == len(known), where
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=netns.raw_a, source="interceptor")
    assert sum(int(r["bytes"]) for r in outbound) == flow["bytes_sent"] == s["totals"]["bytes_sent"], where
    assert sum(int(r["bytes"]) for r in inbound) == flow["bytes_received"] == s["totals"]["bytes_received"], where
    # Three sessions: three outbound and three inbound records to the server.
    assert len([r for r in outbound if r["dstport"] == port]) == 3, where
    assert len(inbound) == 3, where
    assert all(r["interface-id"] == "lo" and r["action"] == "ACCEPT" for r in outbound + inbound
               if r["dstport"] == port or r["srcport"] == port), where
    # Segment counts (TCP_INFO at close) are the flow's packets.
    assert sum(int(r["packets"]) for r in outbound if r["dstport"] == port) == flow["packets_sent"], where
    # The sessions are a second apart: their records fall in different intervals.
    assert len({r["start"] for r in outbound}) >= 3, where

    rejects = [r for r in records if r["action"] == "REJECT"]
    assert [(r["dstport"], r["bytes"]) for r in rejects] == [(str(refused), "0")], where
    assert s["totals"]["failed_connections"] == 1, where

    # The static client's connection: from /proc, bytes and packets unknown.
    proc = [r for r in records if r["bytes"] == "-"]
    assert proc and all(r["packets"] == "-" and r["protocol"] == "6" for r in proc), where
    assert {r["dstport"] for r in proc} | {r["srcport"] for r in proc} >= {port}, where
    assert any(f["source"] == "proc" and f["dst_port"] == netns.raw_a for f in s["flows"]), where


@pytest.mark.requires("root")
def test_flow_log_path_that_cannot_be_created_stops_before_the_command(tmp_path):
    marker = tmp_path / "ran"
    r = harness.run_netmon_raw(
        ["run", "--flow-log", str(tmp_path / "missing" / "flows.log"), "--", "touch", str(marker)]
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot create flow log" in lines[0], r.stderr
    assert not marker.exists()


@pytest.mark.requires("root")
def test_bad_intervals_are_usage_errors():
    for args in (["--flow-log-interval", "0"], ["--proc-interval-ms", "5"], ["--flow-log-interval", "x"]):
        r = harness.run_netmon_raw(["run", *args, "--", "true"])
        assert r.returncode == 2, (args, r.stderr)
        assert "error:" in r.stderr, (args, r.stderr)


# ------------------------------------------------------------------ TCP quality from TCP_INFO


@pytest.mark.requires("netns")
def test_tcp_info_is_kept_for_connections_closed_after_the_peer(run_netmon, netns):
    """The client reads to EOF (the server closed first), then closes: by then the socket is in
    TCP_CLOSE, yet its TCP_INFO (RTT, segment counts) is still the connection's."""
    result = run_netmon(
        [P, harness.CLIENTS / "py_raw_sessions.py", "--port", netns.raw_a, "--sessions", 2, "--pause", 0],
        netns=netns.a,
    )
    harness.assert_ran_ok(result)
    flow = harness.one_flow(result, direction="outgoing", transport="tcp", dst_port=netns.raw_a)
    where = f"\n{json.dumps(flow)}\n{result.describe()}"
    assert flow["connections"] == 2, where
    # At least SYN, the request and the FIN each way per connection.
    assert flow["packets_sent"] >= 2 * 3 and flow["packets_received"] >= 2 * 3, where
    assert flow["rtt_us"] is not None and flow["rtt_us"] > 0, where
    assert flow["rtt_var_us"] is not None and flow["retransmits"] == 0, where


# ------------------------------------------------------------------ kernel metrics over OTLP


def otlp_sums(path: Path) -> dict[tuple, int]:
    """Sum of every exported data point (delta temporality) by (metric, sorted attributes)."""
    sums: dict[tuple, int] = {}
    for line in path.read_text().splitlines():
        for rm in json.loads(line).get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    for dp in (m.get("sum") or {}).get("dataPoints", []):
                        attrs = tuple(sorted((a["key"], next(iter(a["value"].values()))) for a in dp.get("attributes", [])))
                        key = (m["name"], attrs)
                        sums[key] = sums.get(key, 0) + int(dp.get("asInt", 0))
    return sums


@pytest.mark.requires("netns")
def test_kernel_metrics_are_exported_with_convention_names(run_netmon, netns, tmp_path):
    out = tmp_path / "otlp.jsonl"
    result = run_netmon(
        [P, harness.CLIENTS / "py_dns.py", "--connect", f"{ADDR_B}:{netns.raw_b}", "--send", 50000, "--recv", 9000],
        netns=netns.a,
        netmon_args=["--exporter", "console,otlp-json", "--otlp-json", str(out)],
    )
    harness.assert_ran_ok(result)
    sums = otlp_sums(out)
    where = f"\n{json.dumps({str(k): v for k, v in sums.items()}, indent=1)}\n{result.describe()}"
    dev = {i["name"]: i for i in result.summary["kernel"]["interfaces"]}[netns.veth_a]
    def io(direction: str) -> int:
        key = ("system.network.io", (("network.interface.name", netns.veth_a), ("network.io.direction", direction)))
        return sums.get(key, 0)

    assert io("transmit") == dev["tx_bytes"] and io("receive") == dev["rx_bytes"], where
    pk = sums.get(("system.network.packet.count", (("network.io.direction", "transmit"), ("system.device", netns.veth_a))), 0)
    assert pk == dev["tx_packets"], where
    assert sums.get(("netmon.tcp.active_opens", ()), 0) == 1, where
