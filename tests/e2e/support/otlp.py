"""Real OTLP receivers for the export tests: rotel (its debug dump, parsed) and VictoriaMetrics
(PromQL). Both listen on 127.0.0.1 only; scripts/install-test-deps.sh installs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("NETMON_TEST_CACHE", "/var/cache/netmon-test"))


def rotel_agent() -> Path | None:
    try:
        import rotel  # noqa: PLC0415
    except ImportError:
        return None
    p = Path(rotel.__file__).parent / "rotel-agent"
    return p if p.is_file() else None


def victoria_metrics() -> Path | None:
    p = Path(os.environ.get("NETMON_VICTORIA_METRICS") or CACHE / "victoria-metrics/usr/bin/victoria-metrics")
    return p if p.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# --------------------------------------------------------------------------- rotel

_VALUE = re.compile(r"^(Str|Int|Double|Bool|Slice|Map|Bytes)\((.*)\)$", re.S)


def _value(text: str):
    m = _VALUE.match(text.strip())
    if not m:
        return text.strip()
    kind, raw = m.groups()
    if kind == "Int":
        return int(raw)
    if kind == "Double":
        return float(raw)
    if kind == "Bool":
        return raw == "true"
    return raw


@dataclass
class Span:
    trace_id: str
    parent_id: str
    span_id: str
    name: str = ""
    kind: str = ""
    start: int = 0
    end: int = 0
    status: str = ""
    attributes: dict = field(default_factory=dict)
    resource: dict = field(default_factory=dict)


@dataclass
class Point:
    metric: str
    data_type: str
    temporality: str
    attributes: dict = field(default_factory=dict)
    value: float | None = None
    count: int | None = None
    resource: dict = field(default_factory=dict)


def parse_dump(text: str) -> tuple[list[Span], list[Point]]:
    """Spans and metric data points from rotel's `--debug-log-verbosity detailed` output."""
    spans: list[Span] = []
    points: list[Point] = []
    resource: dict = {}
    target: dict | None = None  # where `-> k: v` lines go
    span: Span | None = None
    metric = {"name": "", "type": "", "temporality": ""}
    point: Point | None = None
    in_descriptor = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("ResourceSpans #") or s.startswith("ResourceMetrics #"):
            resource = {}
            target = None
            span = point = None
        elif s == "Resource attributes:":
            target = resource
        elif s.startswith("Span #"):
            span = Span("", "", "", resource=dict(resource))
            spans.append(span)
            target = None
        elif span is not None and ":" in s and not s.startswith("->") and not s.startswith("Attributes"):
            k, _, v = s.partition(":")
            k, v = k.strip(), v.strip()
            if k == "Trace ID":
                span.trace_id = v
            elif k == "Parent ID":
                span.parent_id = v
            elif k == "ID":
                span.span_id = v
            elif k == "Name":
                span.name = v
            elif k == "Kind":
                span.kind = v
            elif k == "Start time":
                span.start = int(v)
            elif k == "End time":
                span.end = int(v)
            elif k == "Status code":
                span.status = v
        if s == "Attributes:" and span is not None:
            target = span.attributes
        elif s.startswith("Metric #"):
            span = None
            point = None
            in_descriptor = False
        elif s == "Descriptor:":
            in_descriptor = True
            target = None
        elif s.startswith("NumberDataPoints #") or s.startswith("HistogramDataPoints #"):
            in_descriptor = False
            point = Point(metric["name"], metric["type"], metric["temporality"], resource=dict(resource))
            points.append(point)
            target = None
        elif s == "Data point attributes:" and point is not None:
            target = point.attributes
        elif s.startswith("->"):
            k, _, v = s[2:].strip().partition(": ")
            if in_descriptor:
                if k == "Name":
                    metric["name"] = v
                elif k == "DataType":
                    metric["type"] = v
                elif k == "AggregationTemporality":
                    metric["temporality"] = v
            elif target is not None:
                target[k] = _value(v)
        elif point is not None and s.startswith("Value:"):
            point.value = float(s.split(":", 1)[1])
        elif point is not None and s.startswith("Count:"):
            point.count = int(s.split(":", 1)[1])
    return spans, points


class Rotel:
    """rotel-agent with gRPC and HTTP receivers on 127.0.0.1, dumping what it receives."""

    def __init__(self, log_dir: Path, grpc_port: int | None = None, http_port: int | None = None):
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> "Rotel":
        agent = rotel_agent()
        if agent is None:
            raise RuntimeError("rotel-agent is missing; scripts/install-test-deps.sh installs it")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"rotel.{self.grpc_port}.{len(self.logs)}.log"
        self.logs.append(log)
        pid_file = Path(tempfile.mkdtemp(prefix="rotel-")) / "rotel.pid"
        self._out = open(log, "w")
        self.proc = subprocess.Popen(
            [
                str(agent), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--exporter", "blackhole",
                "--debug-log", "traces", "--debug-log", "metrics",
                "--debug-log-verbosity", "detailed",
                "--pid-file", str(pid_file),
            ],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        wait_port(self.grpc_port)
        wait_port(self.http_port)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc:
            self._out.close()
            self.proc = None

    def text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def received(self) -> tuple[list[Span], list[Point]]:
        spans: list[Span] = []
        points: list[Point] = []
        for p in self.logs:
            s, m = parse_dump(p.read_text(errors="replace"))
            spans += s
            points += m
        return spans, points

    def wait_for(self, predicate, timeout: float = 20.0):
        """Poll the dump until predicate(spans, points) is truthy; return (spans, points)."""
        deadline = time.monotonic() + timeout
        spans, points = self.received()
        while time.monotonic() < deadline:
            spans, points = self.received()
            if predicate(spans, points):
                return spans, points
            time.sleep(0.1)
        raise AssertionError(
            f"rotel did not receive the expected data in {timeout}s; "
            f"{len(spans)} spans, {len(points)} points\n{self.text()[-6000:]}"
        )


# --------------------------------------------------------------------------- VictoriaMetrics


class VictoriaMetrics:
    """`flags` are extra command-line flags, e.g. `-opentelemetry.usePrometheusNaming`."""

    def __init__(self, log_dir: Path, *flags: str):
        self.port = free_port()
        self.log_dir = log_dir
        self.flags = list(flags)
        self.data = Path(tempfile.mkdtemp(prefix="vm-data-"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "VictoriaMetrics":
        vm = victoria_metrics()
        if vm is None:
            raise RuntimeError("victoria-metrics is missing; scripts/install-test-deps.sh installs it")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log_dir / f"victoria-metrics.{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [
                str(vm), f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.data}",
                "-search.latencyOffset=0s", "-loggerLevel=WARN", *self.flags,
            ],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        wait_port(self.port)
        return self

    @property
    def otlp_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/opentelemetry/v1/metrics"

    def query(self, promql: str) -> list[dict]:
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/internal/force_flush", timeout=10).read()
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/query?{q}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            self._out.close()
        shutil.rmtree(self.data, ignore_errors=True)
