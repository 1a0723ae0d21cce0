"""A faithful local AWS Lambda execution environment, for tests (not part of the product).

It runs a function the way Lambda does, with the real runtime clients (Python `awslambdaric`,
Node.js `aws-lambda-ric`) and real external extensions from an `/opt`-like folder, and speaks
the Runtime, Extensions and Telemetry APIs (`lambda_apis.py`) on 127.0.0.1. The lifecycle
follows "Lambda execution environment lifecycle" in the AWS Lambda Developer Guide:

    UNINITIALIZED --start()/invoke()--> INIT --ok--> IDLE (frozen) <--> INVOKE
          ^                              |                               |
          +---- reset (kill all) <-------+-- init error / timeout -------+-- timeout / crash
    IDLE --shutdown()--> SHUTDOWN --> SHUT_DOWN

- Init: the extensions in `<opt>/extensions/*` start first, all at once, each in its own process
  group with the function's environment (minus the runtime-only variables AWS lists); when every
  one has registered, the runtime starts — through `AWS_LAMBDA_EXEC_WRAPPER` when set, which gets
  the runtime command as its arguments. Init ends when the runtime and every extension have
  called `next` (10 s limit). An init failure is reported by the next invoke, which re-runs init
  first (Lambda's "suppressed init").
- Invoke: thaw, INVOKE to the extensions registered for it, the event to the runtime; the invoke
  completes when the runtime has answered and called `next`, and every such extension has called
  `next` again. Then every process is frozen with SIGSTOP (`lambda_procs.ProcessTree`), so a
  background thread does not run between invocations — exactly as in AWS.
- Timeout (the deadline passes) or a crash (the runtime exits) ends the invoke with an error and
  resets the environment: runtime killed, SHUTDOWN (reason "timeout" / "failure") to the
  extensions, everything killed; the next invoke initialises a fresh environment.
- Shutdown: thaw, SIGTERM to the runtime (300 ms, then SIGKILL), SHUTDOWN {shutdownReason:
  "spindown", deadlineMs: start + 2000} to the extensions registered for it, wait for them to
  exit until the deadline, then SIGKILL everything left.

Each invoke returns an `InvokeResult` with the response or error, the request id and trace
header, the runtime duration, Lambda's PostRuntimeExtensionsDuration (the runtime's `next` →
the last extension's `next`), the platform.report metrics, and that invocation's log lines.
"""

from __future__ import annotations

import enum
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from support import harness
from support.lambda_apis import (
    TELEMETRY_MODES,
    Extension,
    ExtensionsAPI,
    Invocation,
    RuntimeAPI,
    TelemetryAPI,
    iso_time,
)
from support.lambda_http import ApiServer, Request, Response, error_response
from support.lambda_procs import Launched, LogLine, LogSink, ProcessTree, launch

LAMBDA_DIR = harness.E2E / "lambda"
FUNCTIONS_DIR = LAMBDA_DIR / "functions"
RECORDER_EXTENSION = LAMBDA_DIR / "extensions" / "recorder.py"

# Where scripts/install-test-deps.sh installs aws-lambda-ric (a native build, kept out of the repo).
NODE_MODULES = Path(os.environ.get("NETMON_TEST_CACHE") or "/var/cache/netmon-test") / "node" / "node_modules"

ACCOUNT_ID = "123456789012"

# "Extensions can access the function's environment variables, except for the following
# variables that are specific to the runtime process" (Extensions API guide).
RUNTIME_ONLY_VARIABLES = frozenset(
    {
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_XRAY_CONTEXT_MISSING",
        "AWS_XRAY_DAEMON_ADDRESS",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
        "_AWS_XRAY_DAEMON_ADDRESS",
        "_AWS_XRAY_DAEMON_PORT",
        "_HANDLER",
    }
)

SHUTDOWN_LIMIT_S = 2.0  # with external extensions: 2,000 ms for the whole Shutdown phase
RUNTIME_SHUTDOWN_GRACE_S = 0.3  # of which the runtime gets 300 ms (500 ms with an internal extension)


class Phase(enum.Enum):
    UNINITIALIZED = "uninitialized"  # no processes; the next invoke initialises
    INIT = "init"
    IDLE = "idle"  # initialised and frozen
    INVOKE = "invoke"
    SHUTDOWN = "shutdown"
    SHUT_DOWN = "shut down"  # terminal


def make_trace_header(sampled: bool = True) -> str:
    """A fresh X-Ray header: Root=1-<epoch hex>-<96-bit random>;Parent=<64-bit>;Sampled=0|1."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled={1 if sampled else 0}"


# --------------------------------------------------------------------------- configuration


@dataclass
class LambdaConfig:
    function_dir: Path  # LAMBDA_TASK_ROOT (/var/task)
    handler: str  # "module.function" (python, node); anything for "provided"
    runtime: str = "python"  # python | node | provided (runs <function_dir>/bootstrap)
    opt_dir: Path | None = None  # /opt: extensions/*, lib/ (on LD_LIBRARY_PATH), bin/ (on PATH)
    env: dict[str, str] = field(default_factory=dict)  # the function's configured variables
    exec_wrapper: str | None = None  # AWS_LAMBDA_EXEC_WRAPPER
    telemetry: str = "normal"  # normal | silent | refuse | absent (see TelemetryAPI)
    function_name: str = "netmon-test-function"
    function_version: str = "$LATEST"
    memory_mb: int = 128  # reported only; not enforced
    timeout_s: float = 30.0  # the function timeout; invoke(timeout_s=...) overrides it
    init_timeout_s: float = 10.0
    region: str = "us-east-1"
    runtime_api_prefix: str = ""  # AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT/<prefix>
    work_dir: Path | None = None  # where the environment's scratch dir goes

    def __post_init__(self) -> None:
        if self.runtime not in ("python", "node", "provided"):
            raise ValueError(f"runtime must be python, node or provided, not {self.runtime!r}")
        if self.telemetry not in TELEMETRY_MODES:
            raise ValueError(f"telemetry must be one of {TELEMETRY_MODES}, not {self.telemetry!r}")
        self.function_dir = Path(self.function_dir).resolve()
        if self.opt_dir is not None:
            self.opt_dir = Path(self.opt_dir).resolve()


@dataclass
class RuntimeSpec:
    argv: list[str]
    execution_env: str | None  # AWS_EXECUTION_ENV
    version: str  # platform.initStart runtimeVersion
    lang_bin: str  # the runtime's /var/lang/bin


_node_major_cache: list[int] = []


def _node_major(node: str) -> int:
    if not _node_major_cache:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
        _node_major_cache.append(int(out.strip().lstrip("v").split(".")[0]))
    return _node_major_cache[0]


def runtime_spec(cfg: LambdaConfig, opt_dir: Path) -> RuntimeSpec:
    if cfg.runtime == "python":
        v = f"{sys.version_info.major}.{sys.version_info.minor}"
        python = harness.PYTHON
        return RuntimeSpec(
            [python, "-m", "awslambdaric", cfg.handler],
            f"AWS_Lambda_python{v}",
            f"python:{v}.local",
            os.path.dirname(python),
        )
    if cfg.runtime == "node":
        node = shutil.which("node") or "node"
        ric = NODE_MODULES / "aws-lambda-ric" / "index.mjs"
        if not ric.is_file():
            raise RuntimeError(f"aws-lambda-ric is not installed at {ric.parent}; run scripts/install-test-deps.sh")
        major = _node_major(node)
        # aws-lambda-ric reads _HANDLER; older versions took the handler as argv[2].
        return RuntimeSpec(
            [node, str(ric), cfg.handler], f"AWS_Lambda_nodejs{major}.x", f"nodejs:{major}.local", os.path.dirname(node)
        )
    for candidate in (cfg.function_dir / "bootstrap", opt_dir / "bootstrap"):
        if candidate.exists():
            return RuntimeSpec([str(candidate)], None, "provided:local", "/usr/local/bin")
    raise RuntimeError(f"runtime 'provided' needs {cfg.function_dir}/bootstrap or {opt_dir}/bootstrap")


# --------------------------------------------------------------------------- results


@dataclass
class InitResult:
    ok: bool
    phase: str  # "init", or "invoke" for a re-initialisation triggered by an invoke
    duration_ms: float
    error_type: str | None = None
    error: dict | None = None


@dataclass
class InvokeResult:
    request_id: str
    trace: str
    status: str  # as platform.report says: success | error | timeout
    payload: bytes | None  # the runtime's response body
    error: dict | None  # the error document (runtime's /error body, or the platform's)
    error_type: str | None
    runtime_duration_ms: float | None  # invoke start → the runtime's response (runtimeDone durationMs)
    runtime_done_ms: float | None  # invoke start → the runtime's next after responding
    post_runtime_extensions_duration_ms: float | None  # runtime's next → last extension's next
    duration_ms: float  # platform.report durationMs (runtime + extensions)
    billed_duration_ms: int
    init_duration_ms: float | None
    max_memory_used_mb: int
    extension_next_ms: dict[str, float]  # per INVOKE extension: its next, ms after the runtime's next
    crashed_extensions: list[str]
    reset: bool  # the environment was torn down after this invoke (re-initialised on the next)
    logs: list[LogLine]

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def json(self):
        if self.payload is None:
            raise AssertionError(f"invoke {self.request_id} has no response payload\n{self.describe()}")
        return json.loads(self.payload)

    def log_text(self) -> str:
        return "\n".join(ln.text for ln in self.logs)

    def describe(self) -> str:
        payload = self.payload[:2000].decode("utf-8", "replace") if self.payload is not None else None
        lines = "\n".join(str(ln) for ln in self.logs[-80:])
        return (
            f"invoke {self.request_id}: status={self.status} error_type={self.error_type} error={self.error}\n"
            f"payload={payload}\nruntime={self.runtime_duration_ms} ms post-runtime-ext="
            f"{self.post_runtime_extensions_duration_ms} ms duration={self.duration_ms} ms "
            f"crashed={self.crashed_extensions} reset={self.reset}\nlogs:\n{lines}"
        )


@dataclass
class ShutdownResult:
    reason: str
    deadline_ms: int  # epoch ms given to the extensions
    duration_ms: float
    exited: dict[str, int]  # extension -> exit code, for those that exited by themselves in time
    killed: list[str]  # extensions (and "runtime") still running at the deadline: SIGKILLed
    logs: list[LogLine]


class _InitFailure(Exception):
    def __init__(self, error_type: str, message: str, status: str = "error", body: dict | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.body = body or {"errorType": error_type, "errorMessage": message}


# --------------------------------------------------------------------------- the environment


class LocalLambda:
    """One execution environment. Not thread-safe: drive it from one test thread."""

    def __init__(self, cfg: LambdaConfig) -> None:
        self.cfg = cfg
        self.dir = Path(tempfile.mkdtemp(prefix="lambda-", dir=cfg.work_dir))
        self.runtime_dir = self.dir / "var-runtime"  # LAMBDA_RUNTIME_DIR (/var/runtime)
        self.runtime_dir.mkdir()
        self.opt_dir = cfg.opt_dir or self.dir / "opt"
        (self.opt_dir / "extensions").mkdir(parents=True, exist_ok=True)
        self.arn = f"arn:aws:lambda:{cfg.region}:{ACCOUNT_ID}:function:{cfg.function_name}"
        self.phase = Phase.UNINITIALIZED
        self.cond = threading.Condition()
        # Every process of the environment carries this variable, so that an orphaned daemon
        # can still be found, frozen and killed (Lambda has a cgroup for that).
        self.sandbox_marker = ("_LOCAL_LAMBDA_SANDBOX", uuid.uuid4().hex)
        self.tree = ProcessTree(self.sandbox_marker)
        self.sink = LogSink(self.dir / "cloudwatch.log", on_line=self._forward_log_line)
        closing = lambda: self.phase is Phase.SHUT_DOWN  # noqa: E731
        self.extensions_api = ExtensionsAPI(
            self.cond,
            metadata={
                "functionName": cfg.function_name,
                "functionVersion": cfg.function_version,
                "handler": cfg.handler,
            },
            account_id=ACCOUNT_ID,
            closing=closing,
            on_register=self._on_extension_registered,
        )
        self.runtime_api = RuntimeAPI(
            self.cond, closing=closing, on_first_next=self._on_runtime_ready, on_response=self._on_runtime_response
        )
        self.telemetry_api = TelemetryAPI(
            cfg.telemetry, extensions=self.extensions_api, on_subscribe=self._on_telemetry_subscribed
        )
        self.server = ApiServer(self._route, cfg.runtime_api_prefix)
        self.runtime_proc: Launched | None = None
        self.extension_procs: dict[str, Launched] = {}
        self.spec = runtime_spec(cfg, self.opt_dir)
        self.init_result: InitResult | None = None
        self.shutdown_result: ShutdownResult | None = None
        self._init_duration_pending: float | None = None
        self._log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[{cfg.function_version}]{uuid.uuid4().hex}"

    # ----------------------------------------------------------------- public API

    @property
    def runtime_api_address(self) -> str:
        return self.server.address

    def start(self) -> LocalLambda:
        """Start the API endpoint and initialise (extensions, then runtime); see `init_result`."""
        self.server.start()
        self.init_result = self._init("init", log_phase="init")
        return self

    def invoke(
        self,
        payload=None,
        *,
        trace: str | None = None,
        sampled: bool = True,
        timeout_s: float | None = None,
        request_id: str | None = None,
        client_context: str | None = None,
        cognito_identity: str | None = None,
    ) -> InvokeResult:
        """One synchronous invoke. `payload`: bytes, str, or anything JSON-serialisable.

        `trace` is the whole X-Amzn-Trace-Id value; without it a random one is made, with
        `Sampled=1` or `Sampled=0` as `sampled` says.
        """
        if self.phase in (Phase.SHUTDOWN, Phase.SHUT_DOWN):
            raise RuntimeError("the environment was shut down")
        if isinstance(payload, bytes):
            body = payload
        elif isinstance(payload, str):
            body = payload.encode()
        else:
            body = json.dumps({} if payload is None else payload).encode()
        rid = request_id or str(uuid.uuid4())
        header = trace or make_trace_header(sampled)
        timeout = self.cfg.timeout_s if timeout_s is None else timeout_s
        if self.phase is Phase.UNINITIALIZED:
            init = self._init("invoke", log_phase=rid)
            if not init.ok:
                return self._failed_init_result(rid, header, init)
        init_ms, self._init_duration_pending = self._init_duration_pending, None
        now, epoch = time.monotonic(), time.time()
        inv = Invocation(
            request_id=rid,
            payload=body,
            trace=header,
            invoked_function_arn=self.arn,
            deadline_ms=int((epoch + timeout) * 1000),
            deadline_mono=now + timeout,
            started_mono=now,
            started_epoch=epoch,
            client_context=client_context,
            cognito_identity=cognito_identity,
        )
        self.phase = Phase.INVOKE
        self.sink.set_phase(rid)
        self._thaw()
        self.telemetry_api.emit(
            "platform.start", {"requestId": rid, "version": self.cfg.function_version, "tracing": self._tracing(header)}
        )
        self._platform_log(f"START RequestId: {rid} Version: {self.cfg.function_version}")
        with self.cond:
            exts = self.extensions_api.subscribed("INVOKE")
            baseline = {e.name: e.next_calls for e in exts}
        event = {
            "eventType": "INVOKE",
            "deadlineMs": inv.deadline_ms,
            "requestId": rid,
            "invokedFunctionArn": self.arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": header},
        }
        for ext in exts:
            self.extensions_api.queue_event(ext, dict(event))
        self.runtime_api.deliver(inv)
        outcome, crashed = self._wait_invoke(inv, exts, baseline, timeout)
        return self._finish_invoke(inv, exts, baseline, outcome, crashed, init_ms, timeout)

    def shutdown(self) -> ShutdownResult:
        """Lambda's Shutdown phase (reason "spindown"); the environment cannot be used afterwards."""
        if self.shutdown_result is not None:
            return self.shutdown_result
        if self.phase is Phase.UNINITIALIZED:
            self.shutdown_result = ShutdownResult("spindown", 0, 0.0, {}, [], [])
        else:
            self.phase = Phase.SHUTDOWN
            self.sink.set_phase("shutdown")
            self.shutdown_result = self._shutdown_sequence("spindown")
        self.phase = Phase.SHUT_DOWN
        return self.shutdown_result

    def close(self) -> None:
        """Shut down if still up, kill whatever is left, stop the endpoint (fixture teardown)."""
        try:
            if self.server.running and self.shutdown_result is None:
                self.shutdown()
        finally:
            self.phase = Phase.SHUT_DOWN
            self.tree.thaw()
            self.tree.kill_all()
            self.telemetry_api.close()
            if self.server.running:
                self.server.close()
            self.sink.close()

    def logs(self, request_id: str | None = None, source: str | None = None) -> list[LogLine]:
        """Log lines, optionally of one phase ("init", a request id, "shutdown") and/or one source
        ("runtime", "platform", "extension" or "extension:<name>")."""
        return self.sink.lines(phase=request_id, source=source)

    def log_text(self, request_id: str | None = None, source: str | None = None) -> str:
        return "\n".join(ln.text for ln in self.logs(request_id, source))

    def pids(self) -> list[int]:
        """Every process of the environment right now."""
        return sorted(self.tree.members())

    def process_states(self) -> dict[int, str]:
        return {pid: st.state for pid, st in self.tree.members().items()}

    def describe(self) -> str:
        lines = "\n".join(str(ln) for ln in self.sink.lines()[-120:])
        return (
            f"local lambda {self.cfg.function_name} ({self.cfg.runtime}, handler {self.cfg.handler}) "
            f"phase={self.phase.value} api={self.runtime_api_address} dir={self.dir}\n"
            f"init: {self.init_result}\nlogs (last 120 lines):\n{lines}"
        )

    # ----------------------------------------------------------------- routing

    def _route(self, req: Request) -> Response | None:
        path = req.path
        if path.startswith("/2018-06-01/"):
            return self.runtime_api.handle(req, path[len("/2018-06-01") :])
        if path.startswith("/2020-01-01/"):
            return self.extensions_api.handle(req, path[len("/2020-01-01") :])
        if path.rstrip("/") == "/2022-07-01/telemetry":
            return self.telemetry_api.handle(req)
        return error_response(404, "NotFound", f"the local Lambda has no API at {path}")

    # ----------------------------------------------------------------- environment variables

    def _environments(self) -> tuple[dict[str, str], dict[str, str]]:
        """(runtime env, extension env) as Lambda sets them, with local paths for /var/task etc."""
        cfg, spec = self.cfg, self.spec
        task, opt, rdir = str(cfg.function_dir), str(self.opt_dir), str(self.runtime_dir)
        lang = os.path.dirname(spec.lang_bin)
        env = {
            "PATH": f"{spec.lang_bin}:/usr/local/bin:/usr/bin/:/bin:{opt}/bin",
            "LD_LIBRARY_PATH": f"{lang}/lib:/lib64:/usr/lib64:{rdir}:{rdir}/lib:{task}:{task}/lib:{opt}/lib",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_REGION": cfg.region,
            "AWS_DEFAULT_REGION": cfg.region,
            "AWS_LAMBDA_FUNCTION_NAME": cfg.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": cfg.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_RUNTIME_API": self.server.address,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self._log_stream,
            # Lambda's daemon is at 169.254.79.129:2000; nothing local may be sent off the box.
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "_AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1",
            "_AWS_XRAY_DAEMON_PORT": "2000",
            "LAMBDA_TASK_ROOT": task,
            "LAMBDA_RUNTIME_DIR": rdir,
            "_HANDLER": cfg.handler,
            self.sandbox_marker[0]: self.sandbox_marker[1],
        }
        if spec.execution_env:
            env["AWS_EXECUTION_ENV"] = spec.execution_env
        if cfg.runtime == "python":
            env["PYTHONPATH"] = rdir
        if cfg.runtime == "node":
            major = spec.execution_env.removeprefix("AWS_Lambda_nodejs").removesuffix(".x")
            env["NODE_PATH"] = (
                f"{opt}/nodejs/node{major}/node_modules:{opt}/nodejs/node_modules:{rdir}/node_modules:{rdir}:{task}"
            )
        env.update(cfg.env)
        if cfg.exec_wrapper:
            env["AWS_LAMBDA_EXEC_WRAPPER"] = str(cfg.exec_wrapper)
        extension_env = {k: v for k, v in env.items() if k not in RUNTIME_ONLY_VARIABLES}
        return env, extension_env

    # ----------------------------------------------------------------- init

    def _extension_files(self) -> list[Path]:
        folder = self.opt_dir / "extensions"
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def _init(self, phase: str, log_phase: str) -> InitResult:
        """Lambda's Init phase: Extension init, Runtime init, Function init."""
        t0 = time.monotonic()
        self.phase = Phase.INIT
        self.sink.set_phase(log_phase)
        files = self._extension_files()
        with self.cond:
            self.extensions_api.reset({p.name for p in files})
            self.runtime_api.reset()
        self.telemetry_api.init_started()
        self.telemetry_api.emit(
            "platform.initStart",
            {
                "initializationType": "on-demand",
                "phase": phase,
                "runtimeVersion": self.spec.version,
                "runtimeVersionArn": f"arn:aws:lambda:{self.cfg.region}::runtime:local",
                "functionName": self.cfg.function_name,
                "functionVersion": self.cfg.function_version,
            },
        )
        self._platform_log(
            f"INIT_START Runtime Version: {self.spec.version}\t"
            f"Runtime Version ARN: arn:aws:lambda:{self.cfg.region}::runtime:local"
        )
        runtime_env, extension_env = self._environments()
        deadline = t0 + self.cfg.init_timeout_s
        try:
            # Extension init: all at once, then wait for every one to register.
            for path in files:
                try:
                    self.extension_procs[path.name] = self._launch(
                        path.name, [str(path)], extension_env, f"extension:{path.name}"
                    )
                except OSError as e:
                    raise _InitFailure(
                        "Extension.LaunchError", f"extension {path.name} could not start: {e}", "failure"
                    ) from None
            self._wait_init(
                lambda: all(n in self.extensions_api.by_name for n in self.extension_procs),
                deadline,
                "every extension to register",
            )
            # Runtime init + function init, through the exec wrapper when there is one.
            argv = list(self.spec.argv)
            wrapper = runtime_env.get("AWS_LAMBDA_EXEC_WRAPPER")
            if wrapper:
                argv = [wrapper, *argv]
            try:
                self.runtime_proc = self._launch("runtime", argv, runtime_env, "runtime")
            except OSError as e:
                raise _InitFailure(
                    "Runtime.InvalidEntrypoint", f"could not start {shlex.join(argv)}: {e}", "failure"
                ) from None
            self._wait_init(
                lambda: (
                    self.runtime_api.initialized and all(e.next_calls >= 1 for e in self.extensions_api.registered())
                ),
                deadline,
                "the runtime and every extension to call next",
            )
        except _InitFailure as failure:
            return self._init_failed(t0, phase, failure)
        duration_ms = (time.monotonic() - t0) * 1000
        record = {"initializationType": "on-demand", "phase": phase, "status": "success"}
        self.telemetry_api.emit("platform.initRuntimeDone", record)
        self.telemetry_api.emit("platform.initReport", {**record, "metrics": {"durationMs": round(duration_ms, 3)}})
        self._init_duration_pending = duration_ms
        self._freeze()
        self.telemetry_api.init_finished()
        return InitResult(True, phase, duration_ms)

    def _wait_init(self, done, deadline: float, what: str) -> None:
        with self.cond:
            while True:
                problem = self._init_problem()
                if problem is not None:
                    raise problem
                if done():
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _InitFailure(
                        "Sandbox.Timedout",
                        f"init did not complete within {self.cfg.init_timeout_s:g} s: waited for {what}",
                        "timeout",
                    )
                self.cond.wait(min(remaining, 0.1))

    def _init_problem(self) -> _InitFailure | None:
        """What makes init fail, checked under cond: reported errors first, then exits."""
        if self.runtime_api.init_error is not None:
            error_type, body = self.runtime_api.init_error
            return _InitFailure(
                error_type, f"runtime reported init error {error_type}", "error", _error_doc(body, error_type)
            )
        for ext in self.extensions_api.registered():
            if ext.init_error is not None:
                return _InitFailure(
                    "Extension.InitError", f"extension {ext.name} reported init error {ext.init_error[0]}", "error"
                )
            if ext.exit_error is not None:
                return _InitFailure(
                    "Extension.ExitError", f"extension {ext.name} reported exit error {ext.exit_error[0]}", "error"
                )
        for name, proc in self.extension_procs.items():
            if not proc.alive():
                return _InitFailure("Extension.Crash", f"extension {name} exited: {proc.exit_description()}", "failure")
        if self.runtime_proc is not None and not self.runtime_proc.alive():
            return _InitFailure(
                "Runtime.ExitError", f"Runtime exited with error: {self.runtime_proc.exit_description()}", "failure"
            )
        return None

    def _init_failed(self, t0: float, phase: str, failure: _InitFailure) -> InitResult:
        duration_ms = (time.monotonic() - t0) * 1000
        record = {
            "initializationType": "on-demand",
            "phase": phase,
            "status": failure.status,
            "errorType": failure.error_type,
        }
        self.telemetry_api.emit("platform.initRuntimeDone", record)
        self.telemetry_api.emit("platform.initReport", {**record, "metrics": {"durationMs": round(duration_ms, 3)}})
        self._platform_log(
            f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: {phase}\tStatus: {failure.status}\t"
            f"Error Type: {failure.error_type}"
        )
        self._platform_log(f"{failure}")
        self._shutdown_sequence("failure")
        self.phase = Phase.UNINITIALIZED
        return InitResult(False, phase, duration_ms, failure.error_type, failure.body)

    # ----------------------------------------------------------------- invoke

    def _wait_invoke(
        self, inv: Invocation, exts: list[Extension], baseline: dict[str, int], timeout: float
    ) -> tuple[str, list[str]]:
        """Wait for completion: "success", "timeout" or "runtime_exit"; plus crashed extensions."""
        crashed: list[str] = []
        with self.cond:
            while True:
                for ext in exts:
                    proc = self.extension_procs.get(ext.name)
                    gone = ext.failed or (proc is not None and not proc.alive())
                    if gone and ext.name not in crashed:
                        crashed.append(ext.name)
                runtime_done = inv.responded and inv.runtime_next_mono is not None
                waiting = [e for e in exts if e.name not in crashed and e.next_calls <= baseline[e.name]]
                if runtime_done and not waiting:
                    # An extension registered for SHUTDOWN only may have died meanwhile too.
                    crashed += [n for n, p in self.extension_procs.items() if not p.alive() and n not in crashed]
                    return "success", crashed
                if self.runtime_proc is None or not self.runtime_proc.alive():
                    return "runtime_exit", crashed
                remaining = inv.deadline_mono - time.monotonic()
                if remaining <= 0:
                    return "timeout", crashed
                self.cond.wait(min(remaining, 0.05))

    def _finish_invoke(
        self,
        inv: Invocation,
        exts: list[Extension],
        baseline: dict[str, int],
        outcome: str,
        crashed: list[str],
        init_ms: float | None,
        timeout: float,
    ) -> InvokeResult:
        rid = inv.request_id
        now = time.monotonic()
        status, error, error_type = "success", None, None
        if inv.error_body is not None:
            status, error_type = "error", inv.error_type
            error = _error_doc(inv.error_body, inv.error_type)
        if outcome == "timeout":
            status, error_type = "timeout", "Sandbox.Timedout"
            message = f"{iso_time()} {rid} Task timed out after {timeout:.2f} seconds"
            error = {"errorMessage": message}
            self._platform_log(message)
            if not inv.responded:
                self._emit_runtime_done(inv, "timeout", "Sandbox.Timedout")
        elif outcome == "runtime_exit":
            status, error_type = "error", "Runtime.ExitError"
            message = f"RequestId: {rid} Error: Runtime exited with error: {self.runtime_proc.exit_description()}"
            error = {"errorType": "Runtime.ExitError", "errorMessage": message}
            self._platform_log(f"{message}\nRuntime.ExitError")
            if not inv.responded:
                self._emit_runtime_done(inv, "error", "Runtime.ExitError")
        elif crashed:
            status, error_type = "error", "Extension.Crash"
            if error is None:
                error = {
                    "errorType": "Extension.Crash",
                    "errorMessage": f"RequestId: {rid} Error: extension(s) {', '.join(crashed)} exited",
                }
        runtime_ms = (inv.response_done_mono - inv.started_mono) * 1000 if inv.responded else None
        runtime_done_ms = None
        if inv.runtime_next_mono is not None:
            runtime_done_ms = (inv.runtime_next_mono - inv.started_mono) * 1000
        ext_next = {}
        post_runtime_ms = None
        if outcome == "success":
            runtime_next = inv.runtime_next_mono
            for ext in exts:
                if ext.name not in crashed and ext.next_mono is not None and ext.next_calls > baseline[ext.name]:
                    ext_next[ext.name] = (ext.next_mono - runtime_next) * 1000
            post_runtime_ms = max([0.0, *ext_next.values()])
            end = max([runtime_next, *(runtime_next + v / 1000 for v in ext_next.values())])
        else:
            end = now
        duration_ms = (end - inv.started_mono) * 1000
        billed = math.ceil(duration_ms)
        memory = self.tree.peak_rss_mib()
        metrics = {
            "durationMs": round(duration_ms, 3),
            "billedDurationMs": billed,
            "memorySizeMB": self.cfg.memory_mb,
            "maxMemoryUsedMB": memory,
        }
        if init_ms is not None:
            metrics["initDurationMs"] = round(init_ms, 3)
        report = {"requestId": rid, "status": status, "metrics": metrics, "tracing": self._tracing(inv.trace)}
        if error_type and status != "success":
            report["errorType"] = error_type
        self.telemetry_api.emit("platform.report", report)
        self._platform_log(f"END RequestId: {rid}")
        init_part = f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else ""
        status_part = f"\tStatus: {status}" if status != "success" else ""
        self._platform_log(
            f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
            f"Memory Size: {self.cfg.memory_mb} MB\tMax Memory Used: {memory} MB{init_part}{status_part}"
        )
        reset = outcome != "success" or bool(crashed)
        if reset:
            self._shutdown_sequence("timeout" if outcome == "timeout" else "failure")
            self.phase = Phase.UNINITIALIZED
        else:
            self._freeze()
        return InvokeResult(
            request_id=rid,
            trace=inv.trace,
            status=status,
            payload=inv.response_body,
            error=error,
            error_type=error_type,
            runtime_duration_ms=runtime_ms,
            runtime_done_ms=runtime_done_ms,
            post_runtime_extensions_duration_ms=post_runtime_ms,
            duration_ms=duration_ms,
            billed_duration_ms=billed,
            init_duration_ms=init_ms,
            max_memory_used_mb=memory,
            extension_next_ms=ext_next,
            crashed_extensions=crashed,
            reset=reset,
            logs=self.sink.lines(phase=rid),
        )

    def _failed_init_result(self, rid: str, header: str, init: InitResult) -> InvokeResult:
        return InvokeResult(
            request_id=rid,
            trace=header,
            status="error",
            payload=None,
            error=init.error,
            error_type=init.error_type,
            runtime_duration_ms=None,
            runtime_done_ms=None,
            post_runtime_extensions_duration_ms=None,
            duration_ms=init.duration_ms,
            billed_duration_ms=math.ceil(init.duration_ms),
            init_duration_ms=init.duration_ms,
            max_memory_used_mb=0,
            extension_next_ms={},
            crashed_extensions=[],
            reset=True,
            logs=self.sink.lines(phase=rid),
        )

    # ----------------------------------------------------------------- shutdown / reset

    def _shutdown_sequence(self, reason: str) -> ShutdownResult:
        """Runtime first, then SHUTDOWN to the extensions, SIGKILL for what is left at the deadline.

        `reason` is the SHUTDOWN event's shutdownReason: "spindown" for a normal shutdown,
        "timeout" / "failure" for the reset after a failed invoke or init (which also kills the
        runtime at once instead of giving it its 300 ms).
        """
        t0 = time.monotonic()
        deadline_ms = int(time.time() * 1000 + SHUTDOWN_LIMIT_S * 1000)
        deadline = t0 + SHUTDOWN_LIMIT_S
        self._thaw()
        self.telemetry_api.flush()
        killed: list[str] = []
        rt = self.runtime_proc
        if rt is not None and rt.alive():
            if reason == "spindown":
                with self.cond:
                    internal = any(not e.external for e in self.extensions_api.registered())
                os.kill(rt.pid, signal.SIGTERM)
                rt.exited.wait(0.5 if internal else RUNTIME_SHUTDOWN_GRACE_S)
            if rt.alive():
                self.tree.signal_group(rt.pid, signal.SIGKILL)
                killed.append("runtime")
                rt.exited.wait(2)
        with self.cond:
            targets = [
                e
                for e in self.extensions_api.registered()
                if e.external and "SHUTDOWN" in e.events and self.extension_procs.get(e.name, None) is not None
            ]
        event = {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
        for ext in targets:
            if self.extension_procs[ext.name].alive():
                self.extensions_api.queue_event(ext, dict(event))
        # Wait for the extensions told to shut down; the others get SIGKILL with what is left.
        with self.cond:
            while any(self.extension_procs[e.name].alive() for e in targets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(min(remaining, 0.02))
        exited = {n: p.returncode for n, p in self.extension_procs.items() if not p.alive()}
        killed += [e.name for e in targets if self.extension_procs[e.name].alive()]
        self.tree.kill_all()
        for proc in self._launched():
            proc.exited.wait(2)
            proc.reader.wait_eof(1)
        phase = self.sink.phase
        if killed:
            self._platform_log(f"SHUTDOWN deadline passed: SIGKILL {', '.join(killed)}")
        self.telemetry_api.reset()
        with self.cond:
            self.runtime_api.reset()
            self.extensions_api.reset(set())
        self.tree.clear()
        self.runtime_proc = None
        self.extension_procs = {}
        return ShutdownResult(
            reason, deadline_ms, (time.monotonic() - t0) * 1000, exited, killed, self.sink.lines(phase=phase)
        )

    # ----------------------------------------------------------------- freezing

    def _freeze(self) -> None:
        """Everyone called next: stop every process, then collect what they had written."""
        self.telemetry_api.pause()
        self.tree.freeze()
        for proc in self._launched():
            proc.reader.drain()
        self.phase = Phase.IDLE

    def _thaw(self) -> None:
        self.tree.thaw()
        self.telemetry_api.resume()

    def _launched(self) -> list[Launched]:
        procs = list(self.extension_procs.values())
        if self.runtime_proc is not None:
            procs.append(self.runtime_proc)
        return procs

    def _launch(self, name: str, argv: list[str], env: dict[str, str], source: str) -> Launched:
        return launch(
            name,
            argv,
            env=env,
            cwd=self.cfg.function_dir,
            source=source,
            sink=self.sink,
            tree=self.tree,
            on_exit=self._on_process_exit,
        )

    # ----------------------------------------------------------------- callbacks

    def _on_process_exit(self, _proc: Launched) -> None:
        with self.cond:
            self.cond.notify_all()

    def _on_runtime_ready(self) -> None:
        # "After each extension registers with Lambda, Lambda starts the Runtime init phase";
        # internal extensions can register only until the runtime asks for its first event.
        with self.cond:
            self.extensions_api.registration_open = False
            self.cond.notify_all()

    def _on_extension_registered(self, ext: Extension) -> None:
        events = ", ".join(ext.events)
        self._platform_log(f"EXTENSION\tName: {ext.name}\tState: Ready\tEvents: [{events}]")
        self.telemetry_api.emit("platform.extension", {"name": ext.name, "state": "Ready", "events": list(ext.events)})

    def _on_telemetry_subscribed(self, ext: Extension, types: list[str]) -> None:
        self.telemetry_api.emit(
            "platform.telemetrySubscription", {"name": ext.name, "state": "Subscribed", "types": list(types)}
        )

    def _on_runtime_response(self, inv: Invocation) -> None:
        if inv.error_body is None:
            self._emit_runtime_done(inv, "success", None)
        else:
            self._emit_runtime_done(inv, "error", inv.error_type)

    def _emit_runtime_done(self, inv: Invocation, status: str, error_type: str | None) -> None:
        end = inv.response_done_mono if inv.responded else time.monotonic()
        record = {
            "requestId": inv.request_id,
            "status": status,
            "metrics": {
                "durationMs": round((end - inv.started_mono) * 1000, 3),
                "producedBytes": len(inv.response_body or inv.error_body or b""),
            },
            "tracing": self._tracing(inv.trace),
        }
        if inv.responded:
            arrived = inv.response_arrived_mono
            record["spans"] = [
                {
                    "name": "responseLatency",
                    "start": iso_time(inv.started_epoch),
                    "durationMs": round((arrived - inv.started_mono) * 1000, 3),
                },
                {
                    "name": "responseDuration",
                    "start": iso_time(inv.started_epoch + (arrived - inv.started_mono)),
                    "durationMs": round((inv.response_done_mono - arrived) * 1000, 3),
                },
            ]
        if error_type:
            record["errorType"] = error_type
        self.telemetry_api.emit("platform.runtimeDone", record)

    def _forward_log_line(self, line: LogLine) -> None:
        """Function and extension output also reach Telemetry API subscribers ("function" /
        "extension" records)."""
        if line.source == "runtime":
            self.telemetry_api.emit("function", line.text, line.time)
        elif line.source.startswith("extension:"):
            self.telemetry_api.emit("extension", line.text, line.time)

    # ----------------------------------------------------------------- helpers

    def _platform_log(self, text: str) -> None:
        self.sink.add("platform", text)

    @staticmethod
    def _tracing(header: str) -> dict:
        return {"spanId": secrets.token_hex(8), "type": "X-Amzn-Trace-Id", "value": header}


def _error_doc(body: bytes, error_type: str | None) -> dict:
    """The runtime's error document, or Lambda's default built from the error-type header."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            return doc
    except ValueError:
        pass
    return {"errorType": error_type or "Unhandled", "errorMessage": body.decode("utf-8", "replace")}


# --------------------------------------------------------------------------- test helpers


def install_python_extension(
    opt_dir: Path, name: str, script: Path = RECORDER_EXTENSION, env: dict[str, str] | None = None
) -> Path:
    """Install a Python program as the external extension `<opt>/extensions/<name>`.

    The file is a tiny sh launcher that sets `env` and execs this interpreter on `script`, so the
    extension process keeps the launcher's pid and its name (Lambda-Extension-Name) is `name`.
    """
    folder = Path(opt_dir) / "extensions"
    folder.mkdir(parents=True, exist_ok=True)
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
    path = folder / name
    path.write_text(f'#!/bin/sh\n{exports}exec {shlex.quote(harness.PYTHON)} {shlex.quote(str(script))} "$@"\n')
    path.chmod(0o755)
    return path
