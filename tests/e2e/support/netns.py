"""A private network namespace with dnsmasq as its resolver, for the DNS tests.

Inside the namespace (only `lo`, 127.0.0.1 and ::1):
- dnsmasq on 127.0.0.1:53, named by /etc/netns/<NS>/resolv.conf;
  api.test.internal -> 127.0.0.1, v6.test.internal -> ::1,
  any other name under test.internal -> NXDOMAIN (--local),
  names under fail.internal are forwarded to a server that always answers SERVFAIL;
- raw-protocol TCP servers on 127.0.0.1 and on ::1 (for connections to a resolved name;
  IPv6 tests use this namespace's ::1 so no test traffic leaves 127.0.0.1 outside it).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import harness

API_NAME = "api.test.internal"
V6_NAME = "v6.test.internal"
NX_NAME = "missing.test.internal"
SERVFAIL_NAME = "broken.fail.internal"
SERVFAIL_PORT = 5353


@dataclass
class DnsNetns:
    name: str
    raw_port: int  # raw-protocol server on 127.0.0.1 inside the namespace
    raw6_port: int  # the same on ::1
    log_dir: Path

    def run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, timeout=timeout
        )


class DnsNetnsFixture:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.name = f"netmon-test-{secrets.token_hex(4)}"
        self.etc_dir = Path("/etc/netns") / self.name
        self.procs: list[harness.Background] = []
        self.created = False

    def setup(self) -> DnsNetns:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, text=True)
        self.created = True
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True, text=True)
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        (self.etc_dir / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")

        servfail = harness.start_server("dns-servfail", self.log_dir, "--port", str(SERVFAIL_PORT), netns=self.name)
        self.procs.append(servfail)

        dnsmasq = harness.which("dnsmasq")
        if dnsmasq is None:
            raise RuntimeError("dnsmasq is not installed: run scripts/install-test-deps.sh")
        log_path = self.log_dir / f"dnsmasq.{self.name}.log"
        argv = [
            "ip", "netns", "exec", self.name, dnsmasq,
            "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
            "--user=root", "--group=root", "--pid-file=",
            "--log-queries", "--log-facility=-",
            # host-record (not --address) so the other address type is NODATA, not NXDOMAIN
            f"--host-record={API_NAME},127.0.0.1",
            f"--host-record={V6_NAME},::1",
            "--local=/test.internal/",
            f"--server=/fail.internal/127.0.0.1#{SERVFAIL_PORT}",
        ]
        self.dnsmasq_log = open(log_path, "w")
        self.dnsmasq = subprocess.Popen(
            argv, stdout=self.dnsmasq_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.dnsmasq_log_path = log_path

        raw = harness.start_server("raw", self.log_dir, netns=self.name)
        self.procs.append(raw)
        raw6 = harness.start_server("raw", self.log_dir, "--host", "::1", netns=self.name)
        self.procs.append(raw6)
        ns = DnsNetns(self.name, raw.port, raw6.port, self.log_dir)

        # Ready when the resolver answers (unmonitored probe).
        deadline = time.monotonic() + 15
        last = None
        while time.monotonic() < deadline:
            if self.dnsmasq.poll() is not None:
                break
            last = ns.run([harness.PYTHON, str(harness.CLIENTS / "py_dns.py"), "--family", "4", API_NAME])
            if last.returncode == 0 and json.loads(last.stdout)[API_NAME].get("addresses") == ["127.0.0.1"]:
                return ns
            time.sleep(0.1)
        log = log_path.read_text() if log_path.exists() else ""
        raise RuntimeError(f"dnsmasq in {self.name} did not answer: {last}\n{log}")

    def teardown(self) -> None:
        if getattr(self, "dnsmasq", None) is not None:
            if self.dnsmasq.poll() is None:
                self.dnsmasq.terminate()
                try:
                    self.dnsmasq.wait(5)
                except subprocess.TimeoutExpired:
                    self.dnsmasq.kill()
                    self.dnsmasq.wait(5)
            self.dnsmasq_log.close()
        for p in self.procs:
            p.stop()
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        shutil.rmtree(self.etc_dir, ignore_errors=True)
