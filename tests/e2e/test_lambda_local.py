"""Self-checks of the local Lambda (support/lambda_local.py) with real runtime clients and a real
external extension — no netmon involved. The product's Lambda tests rely on these behaviours."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest
from support.lambda_local import FUNCTIONS_DIR, install_python_extension

RUNTIMES = ["python", "node"]
HANDLER = "app.handler"


def recorder(opt: Path, out_dir: Path, name: str = "recorder", **settings: str) -> Path:
    """Install the recording test extension; returns the file its records go to."""
    out = out_dir / f"{name}.jsonl"
    env = {"TEST_EXT_NAME": name, "TEST_EXT_OUT": str(out)}
    env.update({f"TEST_EXT_{k.upper()}": str(v) for k, v in settings.items()})
    install_python_extension(opt, name, env=env)
    return out


def records(path: Path, kind: str | None = None) -> list[dict]:
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in found if kind is None or r["kind"] == kind]


def events(path: Path, event_type: str | None = None) -> list[dict]:
    return [r["event"] for r in records(path, "event") if event_type is None or r["event"]["eventType"] == event_type]


def read_ticks(path: Path) -> int:
    return int(path.read_text())


def alive(pid: int) -> bool:
    """Running, stopped or sleeping — not gone and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


# --------------------------------------------------------------------------- functions


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_function_invoked_several_times(local_lambda, tmp_path, runtime):
    opt = tmp_path / "opt"
    (opt / "lib").mkdir(parents=True)
    lam = local_lambda(FUNCTIONS_DIR / runtime, HANDLER, runtime=runtime, opt_dir=opt, env={"MY_SETTING": "x"})
    assert lam.init_result.ok, lam.describe()
    pids = set()
    request_ids = set()
    for i in range(4):
        r = lam.invoke({"n": i, "print": f"line-of-invoke-{i}"}, timeout_s=20)
        assert r.ok, r.describe()
        body = r.json()
        assert body["runtime"] == runtime
        assert body["echo"] == {"n": i, "print": f"line-of-invoke-{i}"}
        assert body["requestId"] == r.request_id
        assert body["functionArn"] == lam.arn
        assert body["trace"] == r.trace
        assert 0 < body["remainingMs"] <= 20_000
        assert r.runtime_duration_ms is not None and r.runtime_duration_ms > 0
        # This invocation's own log line is in its logs and in nobody else's.
        assert any(f"line-of-invoke-{i}" in ln.text for ln in r.logs if ln.source == "runtime"), r.describe()
        assert not any(f"line-of-invoke-{i - 1}" in ln.text for ln in r.logs), r.describe()
        assert [ln.text for ln in r.logs if ln.source == "platform"][
            0
        ] == f"START RequestId: {r.request_id} Version: $LATEST"
        assert any(ln.text.startswith(f"REPORT RequestId: {r.request_id}\tDuration: ") for ln in r.logs)
        assert (r.init_duration_ms is not None) == (i == 0), "Init Duration is reported on the first invoke only"
        pids.add(body["pid"])
        request_ids.add(r.request_id)
    assert len(pids) == 1, "the same runtime process serves every invocation"
    assert len(request_ids) == 4
    env = r.json()["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == lam.cfg.function_name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{lam.cfg.function_name}"
    assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_LAMBDA_RUNTIME_API"] == lam.runtime_api_address
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["_HANDLER"] == HANDLER
    assert env["LAMBDA_TASK_ROOT"] == str(FUNCTIONS_DIR / runtime)
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_")
    assert env["TZ"] == ":UTC"
    assert f"{opt}/lib" in env["LD_LIBRARY_PATH"].split(":")
    assert "init" in [ln.phase for ln in lam.logs(source="runtime")], "init output is logged as init"
    # A 3 MB response (libcurl sends `Expect: 100-continue` for large bodies) and a 1 MB event.
    big = lam.invoke({"action": "big", "size": 3_000_000, "pad": "y" * 1_000_000})
    assert big.ok and len(big.json()["data"]) == 3_000_000, big.describe()
    if runtime == "python":  # aws-lambda-ric's native client runs next on libuv's worker threads,
        # one connection per thread; libcurl in awslambdaric keeps its single connection alive.
        assert lam.server.connections <= 2, "the runtime client keeps its connection alive"
    shutdown = lam.shutdown()
    assert shutdown.killed == [], lam.describe()


def test_client_context_and_cognito_identity_headers(local_lambda):
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER)
    r = lam.invoke(
        {},
        client_context=json.dumps({"custom": {"tenant": "t-1"}, "env": {}, "client": {}}),
        cognito_identity=json.dumps({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}),
    )
    assert r.ok, r.describe()
    assert r.json()["clientContext"] == {"tenant": "t-1"}
    assert r.json()["cognitoIdentityId"] == "id-1"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_environment_is_frozen_between_invocations(local_lambda, tmp_path, runtime):
    """Counters written every 10 ms by a background thread/timer of the function and by a child
    process in its own session stop while frozen, and run while invoked."""
    ticks, child_ticks = tmp_path / "ticks", tmp_path / "child-ticks"
    opt = tmp_path / "opt"
    recorder(opt, tmp_path)
    env = {"TICK_FILE": str(ticks), "CHILD_TICK_FILE": str(child_ticks)}
    lam = local_lambda(FUNCTIONS_DIR / runtime, HANDLER, runtime=runtime, opt_dir=opt, env=env)
    for _ in range(3):
        r = lam.invoke({"action": "sleep", "ms": 100})
        assert r.ok, r.describe()
        states = lam.process_states()
        # the runtime, its child and the extension
        assert len(states) >= 3 and set(states.values()) <= {"T"}, f"not all stopped: {states}\n{lam.describe()}"
        frozen, child_frozen = read_ticks(ticks), read_ticks(child_ticks)
        time.sleep(0.3)
        assert read_ticks(ticks) == frozen, "the counter advanced while the environment was frozen"
        assert read_ticks(child_ticks) == child_frozen, "the child process ran while the environment was frozen"
        r = lam.invoke({"action": "sleep", "ms": 100})
        assert r.ok, r.describe()
        assert read_ticks(ticks) - frozen >= 3, "the background thread did not run during the invoke"
        assert read_ticks(child_ticks) - child_frozen >= 3, "the child process did not run during the invoke"
    everyone = lam.pids()
    lam.shutdown()
    assert not [pid for pid in everyone if alive(pid)], "shutdown leaves no process behind, detached child included"


def test_function_error_is_returned_without_reset(local_lambda):
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER)
    first = lam.invoke({}).json()["pid"]
    r = lam.invoke({"action": "raise", "message": "bad input"})
    assert r.status == "error" and not r.reset, r.describe()
    assert r.error["errorType"] == "ValueError" and r.error["errorMessage"] == "bad input", r.error
    assert lam.invoke({}).json()["pid"] == first, "a handled error does not restart the runtime"


# --------------------------------------------------------------------------- timeout and crash


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_timeout_kills_runtime_and_reinitialises(local_lambda, tmp_path, runtime):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path)
    lam = local_lambda(FUNCTIONS_DIR / runtime, HANDLER, runtime=runtime, opt_dir=opt)
    first_pid = lam.invoke({}).json()["pid"]
    r = lam.invoke({"action": "sleep", "ms": 10_000}, timeout_s=0.5)
    assert r.status == "timeout" and r.reset, r.describe()
    assert r.error["errorMessage"].endswith(f"{r.request_id} Task timed out after 0.50 seconds"), r.error
    assert r.payload is None
    assert [e["shutdownReason"] for e in events(out, "SHUTDOWN")] == ["timeout"]
    again = lam.invoke({"after": "timeout"})
    assert again.ok, again.describe()
    assert again.json()["pid"] != first_pid, "a fresh runtime serves the next invoke"
    assert again.init_duration_ms is not None, "the next invoke re-initialised the environment"
    assert len(records(out, "register")) == 2, "the extension was started again"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_crash_is_an_error_and_reinitialises(local_lambda, tmp_path, runtime):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path)
    lam = local_lambda(FUNCTIONS_DIR / runtime, HANDLER, runtime=runtime, opt_dir=opt)
    first_pid = lam.invoke({}).json()["pid"]
    r = lam.invoke({"action": "crash", "code": 3})
    assert r.status == "error" and r.error_type == "Runtime.ExitError" and r.reset, r.describe()
    assert r.error["errorMessage"] == f"RequestId: {r.request_id} Error: Runtime exited with error: exit status 3"
    assert [e["shutdownReason"] for e in events(out, "SHUTDOWN")] == ["failure"]
    again = lam.invoke({})
    assert again.ok and again.json()["pid"] != first_pid, again.describe()


# --------------------------------------------------------------------------- extensions


def test_extension_sees_invoke_and_shutdown(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path)
    only_shutdown = recorder(opt, tmp_path, name="shutdown-only", events="SHUTDOWN")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt, function_name="fn-ext")
    chosen = "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"
    results = [lam.invoke({}, trace=chosen), lam.invoke({}, sampled=False), lam.invoke({}, sampled=True)]
    for r in results:
        assert r.ok, r.describe()
    assert results[0].trace == chosen
    assert results[1].trace.endswith(";Sampled=0") and results[2].trace.endswith(";Sampled=1")
    shutdown_started = time.time() * 1000
    shutdown = lam.shutdown()
    assert shutdown.exited == {"recorder": 0, "shutdown-only": 0} and shutdown.killed == [], shutdown

    register = records(out, "register")[0]
    assert register["status"] == 200
    assert register["body"] == {
        "functionName": "fn-ext",
        "functionVersion": "$LATEST",
        "handler": HANDLER,
        "accountId": "123456789012",
    }
    assert register["identifier"]
    ext_env = register["env"]
    assert ext_env["AWS_LAMBDA_FUNCTION_NAME"] == "fn-ext"
    for runtime_only in ("_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_EXECUTION_ENV"):
        assert runtime_only not in ext_env, f"{runtime_only} must not reach extensions"

    invokes = events(out, "INVOKE")
    assert [e["requestId"] for e in invokes] == [r.request_id for r in results]
    for event, r in zip(invokes, results, strict=True):
        assert event["tracing"] == {"type": "X-Amzn-Trace-Id", "value": r.trace}
        assert event["invokedFunctionArn"] == lam.arn
        assert set(event) == {"eventType", "deadlineMs", "requestId", "invokedFunctionArn", "tracing"}
    assert abs(invokes[0]["deadlineMs"] - (records(out, "event")[0]["at"] * 1000 + 30_000)) < 5_000
    headers = records(out, "event")[0]["headers"]
    assert headers["Content-Type"] == "application/json" and headers["Lambda-Extension-Event-Identifier"]

    (shutdown_event,) = events(out, "SHUTDOWN")
    assert shutdown_event["shutdownReason"] == "spindown"
    assert set(shutdown_event) == {"eventType", "shutdownReason", "deadlineMs"}
    assert shutdown_started <= shutdown_event["deadlineMs"] <= shutdown_started + 2_000 + 100
    assert events(only_shutdown, "INVOKE") == [], "INVOKE goes only to extensions registered for it"
    assert [e["eventType"] for e in events(only_shutdown)] == ["SHUTDOWN"]
    text = lam.log_text(source="platform")
    assert "EXTENSION\tName: recorder\tState: Ready\tEvents: [INVOKE, SHUTDOWN]" in text
    assert "[recorder] SHUTDOWN spindown" in lam.log_text("shutdown", "extension:recorder")


def test_post_runtime_extension_duration(local_lambda, tmp_path):
    """An extension that sleeps 50 ms after INVOKE before calling next keeps the invoke open: the
    time from the runtime's next to its next (PostRuntimeExtensionsDuration) covers the rest of the
    50 ms, and the invoke's duration all of it."""
    opt = tmp_path / "opt"
    recorder(opt, tmp_path, name="slow", sleep_ms=50)
    recorder(opt, tmp_path, name="quick")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt)
    for _ in range(3):
        r = lam.invoke({})
        assert r.ok, r.describe()
        assert set(r.extension_next_ms) == {"slow", "quick"}
        assert r.post_runtime_extensions_duration_ms == r.extension_next_ms["slow"] > r.extension_next_ms["quick"]
        assert r.runtime_done_ms + r.post_runtime_extensions_duration_ms >= 50, r.describe()
        assert (
            r.duration_ms >= 50 and r.duration_ms >= r.runtime_done_ms + r.post_runtime_extensions_duration_ms - 0.001
        )


def test_extension_crash_during_invoke_keeps_the_result(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    recorder(opt, tmp_path, mode="crash_on_invoke")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt)
    r = lam.invoke({"keep": 1})
    assert r.json()["echo"] == {"keep": 1}, r.describe()
    assert r.crashed_extensions == ["recorder"] and r.error_type == "Extension.Crash" and r.reset, r.describe()


def test_extension_init_error_fails_init(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path, mode="init_error")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt)
    assert not lam.init_result.ok and lam.init_result.error_type == "Extension.InitError", lam.describe()
    assert records(out, "init_error")[0]["status"] == 202
    r = lam.invoke({})
    assert r.status == "error" and r.error_type == "Extension.InitError", r.describe()
    assert "INIT_REPORT" in r.log_text(), "the retried init is logged in the invocation"


def test_extension_that_never_registers_times_out_init(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    recorder(opt, tmp_path, mode="no_register")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt, init_timeout_s=1)
    assert not lam.init_result.ok and lam.init_result.error_type == "Sandbox.Timedout", lam.describe()
    assert lam.pids() == [], "a failed init leaves no process behind"


def test_extension_ignoring_shutdown_is_killed_at_the_deadline(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    recorder(opt, tmp_path, mode="ignore_shutdown")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt)
    assert lam.invoke({}).ok
    shutdown = lam.shutdown()
    assert shutdown.killed == ["recorder"], shutdown
    assert shutdown.duration_ms >= 1_900, shutdown
    assert lam.pids() == []


def test_internal_extension_rules(local_lambda):
    """Registration by a name that is no /opt/extensions file is an internal extension: closed once
    the runtime asked for its first event; other protocol errors answer as AWS does."""
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER)
    conn = http.client.HTTPConnection("127.0.0.1", lam.server.port, timeout=5)

    def call(method, path, body=b"", headers=None):
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    # All on one keep-alive connection.
    assert call(
        "POST", "/2020-01-01/extension/register", b'{"events":["INVOKE"]}', {"Lambda-Extension-Name": "late"}
    ) == (
        403,
        {"errorMessage": "Extension registration closed already", "errorType": "Extension.RegistrationClosed"},
    )
    assert call("POST", "/2020-01-01/extension/register", b"{}")[1]["errorType"] == "Extension.InvalidExtensionName"
    assert call("GET", "/2020-01-01/extension/event/next")[1]["errorType"] == "Extension.MissingExtensionIdentifier"
    unknown = {"Lambda-Extension-Identifier": "0b3c1c1e-8a4e-4f38-9d53-8e1f7c1d2a3b"}
    assert call("GET", "/2020-01-01/extension/event/next", headers=unknown)[1]["errorType"] == (
        "Extension.UnknownExtensionIdentifier"
    )
    assert call("POST", "/2018-06-01/runtime/invocation/not-a-request/response", b"{}") == (
        400,
        {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"},
    )
    assert call("POST", "/2018-06-01/runtime/init/error", b"{}")[0] == 403, "init is over"
    assert lam.invoke({}).ok


# --------------------------------------------------------------------------- Telemetry API


def test_telemetry_records_arrive_at_the_subscriber(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path, telemetry="1")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt)
    results = [lam.invoke({"n": i}) for i in range(2)]
    assert all(r.ok for r in results), [r.describe() for r in results]
    lam.shutdown()  # platform.report of the last invoke is delivered in the Shutdown phase

    subscribe = records(out, "subscribe")[0]
    assert (subscribe["status"], json.loads(subscribe["body"])) == (200, "OK")
    batches = records(out, "telemetry")
    assert batches and all(b["content_type"] == "application/json" for b in batches)
    delivered = [ev for b in batches for ev in b["batch"]]
    assert all(set(ev) == {"time", "type", "record"} and ev["time"].endswith("Z") for ev in delivered)
    types = [ev["type"] for ev in delivered]
    for t in (
        "platform.initStart",
        "platform.initRuntimeDone",
        "platform.initReport",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "platform.extension",
        "platform.telemetrySubscription",
    ):
        assert t in types, f"{t} missing from {types}"
    assert not any(t in ("function", "extension") for t in types), "subscribed to platform only"
    init_start = next(ev["record"] for ev in delivered if ev["type"] == "platform.initStart")
    assert init_start["initializationType"] == "on-demand" and init_start["phase"] == "init"

    for i, r in enumerate(results):
        mine = {ev["type"]: ev["record"] for ev in delivered if ev["record"].get("requestId") == r.request_id}
        assert set(mine) == {"platform.start", "platform.runtimeDone", "platform.report"}, mine
        assert mine["platform.start"]["tracing"]["value"] == r.trace
        done = mine["platform.runtimeDone"]
        assert done["status"] == "success"
        assert done["metrics"]["producedBytes"] == len(r.payload)
        assert abs(done["metrics"]["durationMs"] - r.runtime_duration_ms) < 1
        assert [s["name"] for s in done["spans"]] == ["responseLatency", "responseDuration"]
        report = mine["platform.report"]
        assert report["status"] == "success"
        metrics = report["metrics"]
        assert metrics["memorySizeMB"] == 128 and metrics["maxMemoryUsedMB"] > 0
        assert metrics["billedDurationMs"] >= metrics["durationMs"]
        assert ("initDurationMs" in metrics) == (i == 0)


@pytest.mark.parametrize(
    "mode, status, answer",
    [
        ("refuse", 202, {"errorMessage": "Telemetry API is not supported", "errorType": "Telemetry.NotSupported"}),
        ("silent", 200, "OK"),
        ("absent", 404, None),
    ],
)
def test_telemetry_refused_or_silent(local_lambda, tmp_path, mode, status, answer):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path, telemetry="1")
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt, telemetry=mode)
    assert lam.invoke({}).ok
    lam.shutdown()
    subscribe = records(out, "subscribe")[0]
    assert subscribe["status"] == status
    if answer is not None:
        assert json.loads(subscribe["body"]) == answer
    assert records(out, "telemetry") == [], "nothing is delivered"


# --------------------------------------------------------------------------- API address and wrapper


def test_runtime_api_with_path_prefix(local_lambda, tmp_path):
    opt = tmp_path / "opt"
    out = recorder(opt, tmp_path)
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, opt_dir=opt, runtime_api_prefix="/lambda-api/v1")
    assert lam.runtime_api_address == f"127.0.0.1:{lam.server.port}/lambda-api/v1"
    r = lam.invoke({"via": "prefix"})
    assert r.ok and r.json()["env"]["AWS_LAMBDA_RUNTIME_API"] == lam.runtime_api_address, r.describe()
    assert [e["requestId"] for e in events(out, "INVOKE")] == [r.request_id]
    conn = http.client.HTTPConnection("127.0.0.1", lam.server.port, timeout=5)
    conn.request("POST", "/2020-01-01/extension/register", b"{}", {"Lambda-Extension-Name": "x"})
    assert conn.getresponse().status == 404, "without the prefix there is no API"


def test_exec_wrapper_gets_the_runtime_command(local_lambda, tmp_path):
    argv_file = tmp_path / "wrapper-argv"
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_file}\nexport WRAPPED=yes\nexec "$@"\n')
    wrapper.chmod(0o755)
    lam = local_lambda(FUNCTIONS_DIR / "python", HANDLER, exec_wrapper=wrapper)
    r = lam.invoke({})
    assert r.ok, r.describe()
    argv = argv_file.read_text().splitlines()
    assert argv[1:] == ["-m", "awslambdaric", HANDLER], argv
    assert r.json()["env"]["AWS_LAMBDA_EXEC_WRAPPER"] == str(wrapper)
    assert r.json()["env"]["_HANDLER"] == HANDLER
