"""Helpers for the netmon end-to-end tests: processes, servers, the forwarder, netmon itself."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
E2E = SUPPORT.parent
CLIENTS = E2E / "clients"
REPO = E2E.parent.parent

# The real interpreter, not a version-manager shim (a shim would add its own bash
# processes to netmon's process list).
PYTHON = os.path.realpath(sys.executable)


def netmon_bin() -> Path:
    return Path(os.environ.get("NETMON_BIN") or REPO / "target" / "debug" / "netmon")


def which(tool: str) -> str | None:
    """shutil.which, also looking in the sbin dirs a non-login PATH may lack."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(tool, path=path)


def netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


# --------------------------------------------------------------------------- processes


@dataclass
class Background:
    """A long-running helper process (server, forwarder) that prints its port first."""

    argv: list[str]
    name: str
    log_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def start(self, timeout: float = 15.0) -> "Background":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}.{secrets.token_hex(3)}.log"
        port_file = self.log_path.with_suffix(".port")
        argv = self.argv + ["--port-file", str(port_file)]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.exists():
                self.port = int(port_file.read_text())
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {argv}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # The process leads its own session; signal the whole group (e.g. `ip netns exec`
            # wrappers and their child) — only processes this object started.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()


def start_server(kind: str, log_dir: Path, *extra: str, netns: str | None = None) -> Background:
    argv = netns_prefix(netns) + [PYTHON, str(SUPPORT / "servers.py"), kind, *extra]
    return Background(argv, f"server-{kind}", log_dir).start()


# --------------------------------------------------------------------------- forwarder


@dataclass
class ForwarderTotals:
    connections: int
    client_to_server: int
    server_to_client: int
    records: list[dict]


class Forwarder:
    """A byte-counting forwarder process in front of 127.0.0.1:target_port."""

    def __init__(self, target_port: int, log_dir: Path) -> None:
        self.stats_path = log_dir / f"forwarder.{secrets.token_hex(4)}.json"
        argv = [
            PYTHON,
            str(SUPPORT / "forwarder.py"),
            "--target",
            f"127.0.0.1:{target_port}",
            "--stats",
            str(self.stats_path),
        ]
        self.bg = Background(argv, "forwarder", log_dir).start()
        self.port = self.bg.port

    def read(self) -> dict:
        return json.loads(self.stats_path.read_text())

    def wait_idle(self, min_connections: int = 1, timeout: float = 20.0) -> ForwarderTotals:
        """Wait until at least min_connections were accepted and all of them finished."""
        deadline = time.monotonic() + timeout
        stats = self.read()
        while time.monotonic() < deadline:
            stats = self.read()
            if stats["accepted"] >= min_connections and stats["open"] == 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"forwarder not idle after {timeout}s: {stats}\n{self.bg.log()}")
        conns = stats["connections"]
        return ForwarderTotals(
            connections=len(conns),
            client_to_server=sum(c["client_to_server"] for c in conns),
            server_to_client=sum(c["server_to_client"] for c in conns),
            records=conns,
        )

    def totals(self, settle: float = 0.15, timeout: float = 10.0) -> tuple[int, int]:
        """(client->server, server->client) over all connections, open ones included, once
        the counts stopped moving for `settle` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            s = self.read()
            now = (s["total_client_to_server"], s["total_server_to_client"])
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= settle:
                return now
            time.sleep(0.02)
        raise AssertionError(f"forwarder counts kept moving for {timeout}s")

    def stop(self) -> None:
        self.bg.stop()


# --------------------------------------------------------------------------- netmon


@dataclass
class NetmonResult:
    proc: subprocess.CompletedProcess
    summary: dict | None
    argv: list[str]

    def describe(self) -> str:
        text = json.dumps(self.summary, indent=1) if self.summary is not None else "<no JSON summary>"
        if len(text) > 12000:
            text = text[:12000] + "\n... (cut)"
        return (
            f"argv: {self.argv}\nexit: {self.proc.returncode}\n"
            f"stdout:\n{_tail(self.proc.stdout)}\nstderr:\n{_tail(self.proc.stderr)}\njson:\n{text}"
        )


def _tail(text: str | None, limit: int = 4000) -> str:
    text = text or ""
    return text if len(text) <= limit else "...\n" + text[-limit:]


class RunningNetmon:
    """A `netmon run --json FILE -- CMD...` started in the background."""

    def __init__(self, argv: list[str], json_path: Path, env: dict, cwd, timeout: float) -> None:
        self.argv = argv
        self.json_path = json_path
        self.timeout = timeout
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def wait(self, timeout: float | None = None) -> NetmonResult:
        try:
            out, err = self.proc.communicate(timeout=timeout if timeout is not None else self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"netmon run did not finish in time: {self.argv}\nstdout:\n{_tail(out)}\nstderr:\n{_tail(err)}"
            )
        cp = subprocess.CompletedProcess(self.argv, self.proc.returncode, out, err)
        summary = None
        if self.json_path.exists():
            text = self.json_path.read_text()
            try:
                summary = json.loads(text)
            except json.JSONDecodeError as e:
                raise AssertionError(f"netmon wrote invalid JSON ({e}):\n{text[:4000]}") from e
        return NetmonResult(cp, summary, self.argv)

    def kill(self) -> None:
        """Kill netmon and whatever it started (its own process group) if still running."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_netmon(
    cmd: list[str],
    *,
    json_dir: Path,
    env: dict | None = None,
    netns: str | None = None,
    timeout: float = 120.0,
    netmon_args: list[str] | None = None,
    cwd: str | Path | None = None,
) -> RunningNetmon:
    json_dir.mkdir(parents=True, exist_ok=True)
    json_path = json_dir / f"netmon.{secrets.token_hex(4)}.json"
    argv = netns_prefix(netns) + [str(netmon_bin()), "run", "--json", str(json_path), *(netmon_args or []), "--", *cmd]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return RunningNetmon(argv, json_path, full_env, cwd, timeout)


def run_netmon(cmd: list[str], **kw) -> NetmonResult:
    """Run `netmon run --json FILE -- CMD...` to completion; returns process + parsed summary."""
    running = start_netmon(cmd, **kw)
    try:
        return running.wait()
    finally:
        running.kill()


def run_netmon_raw(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run the netmon binary with exactly these arguments (for CLI error tests)."""
    return subprocess.run(
        [str(netmon_bin()), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


# --------------------------------------------------------------------------- summary queries


def flows(summary: dict, **match) -> list[dict]:
    """Flows whose fields equal every given key=value."""
    return [f for f in summary.get("flows", []) if all(f.get(k) == v for k, v in match.items())]


def one_flow(result: NetmonResult, **match) -> dict:
    assert result.summary is not None, result.describe()
    found = flows(result.summary, **match)
    assert len(found) == 1, f"expected exactly one flow matching {match}, found {len(found)}\n{result.describe()}"
    return found[0]


def dns_entries(summary: dict, name: str, **match) -> list[dict]:
    return [
        d
        for d in summary.get("dns", [])
        if d.get("name", "").rstrip(".").lower() == name.lower() and all(d.get(k) == v for k, v in match.items())
    ]


def process(summary: dict, pid: int) -> dict | None:
    for p in summary.get("processes", []):
        if p.get("pid") == pid:
            return p
    return None


# --------------------------------------------------------------------------- Lambda layer


def lambda_layer(netmon: Path, work: Path) -> tuple[Path, Path]:
    """`netmon layer`, and the zip unzipped into an /opt-like folder with its file modes (as
    Lambda unpacks layers). Returns (opt folder, zip)."""
    import zipfile  # noqa: PLC0415

    zpath = work / "netmon-layer.zip"
    subprocess.run([str(netmon), "layer", "--out", str(zpath)], check=True, capture_output=True)
    opt = work / "opt"
    with zipfile.ZipFile(zpath) as z:
        for info in z.infolist():
            target = opt / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            target.chmod((info.external_attr >> 16) & 0o777)
    return opt, zpath


# --------------------------------------------------------------------------- certificates


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 made with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


# --------------------------------------------------------------------------- assertions


def assert_ran_ok(result: NetmonResult, expected_exit: int = 0) -> None:
    assert result.proc.returncode == expected_exit, f"exit {result.proc.returncode}, expected {expected_exit}\n{result.describe()}"
    assert result.summary is not None, f"netmon wrote no --json summary\n{result.describe()}"


def assert_pids_known(result: NetmonResult, flow: dict) -> None:
    """Every pid a flow names is in the processes list."""
    known = {p.get("pid") for p in result.summary.get("processes", [])}
    assert flow.get("pids"), f"flow has no pids: {flow}\n{result.describe()}"
    missing = [pid for pid in flow["pids"] if pid not in known]
    assert not missing, f"flow pids {missing} are not in processes\n{result.describe()}"


def assert_flow_matches_forwarder(result: NetmonResult, fwd_port: int, totals: ForwarderTotals) -> dict:
    """The outgoing flow to the forwarder carries exactly the bytes the forwarder counted."""
    flow = one_flow(result, direction="outgoing", transport="tcp", dst_ip="127.0.0.1", dst_port=fwd_port)
    where = f"\nforwarder saw {totals}\nflow: {json.dumps(flow)}\n{result.describe()}"
    assert flow["family"] == "IPv4", where
    assert flow["bytes_sent"] == totals.client_to_server, (
        f"bytes_sent {flow['bytes_sent']} != forwarder client->server {totals.client_to_server} "
        f"(diff {flow['bytes_sent'] - totals.client_to_server:+d})" + where
    )
    assert flow["bytes_received"] == totals.server_to_client, (
        f"bytes_received {flow['bytes_received']} != forwarder server->client {totals.server_to_client} "
        f"(diff {flow['bytes_received'] - totals.server_to_client:+d})" + where
    )
    assert flow["connections"] == totals.connections, where
    assert flow["failed"] == 0, where
    assert_pids_known(result, flow)
    return flow
