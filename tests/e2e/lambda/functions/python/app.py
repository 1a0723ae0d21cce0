"""Test function for the local Lambda (Python, awslambdaric).

At init, if TICK_FILE is set, a background thread writes an increasing counter to it every
10 ms — it must not advance while the environment is frozen between invocations; if
CHILD_TICK_FILE is set, a child process in a session of its own does the same.
The event selects what the handler does: {"action": "echo" | "sleep" | "crash" | "raise" |
"big", "ms": N, "code": N, "size": N, "print": "a log line"}.
"""

import os
import subprocess
import sys
import threading
import time

TICK_FILE = os.environ.get("TICK_FILE")
CHILD_TICK_FILE = os.environ.get("CHILD_TICK_FILE")


def _tick(path):
    n = 0
    tmp = f"{path}.tmp"
    while True:
        n += 1
        with open(tmp, "w") as f:
            f.write(str(n))
        os.replace(tmp, path)
        time.sleep(0.01)


def _ticks():
    try:
        with open(TICK_FILE) as f:
            return int(f.read())
    except (TypeError, OSError, ValueError):
        return None


if TICK_FILE:
    threading.Thread(target=_tick, args=(TICK_FILE,), daemon=True).start()
if CHILD_TICK_FILE:
    subprocess.Popen(
        [sys.executable, "-c", f"import app; app._tick({CHILD_TICK_FILE!r})"],
        env={**os.environ, "CHILD_TICK_FILE": "", "TICK_FILE": ""},
        start_new_session=True,
    )

print("python function initialised", flush=True)


def handler(event, context):
    action = event.get("action", "echo")
    if "print" in event:
        print(event["print"], flush=True)
    if action == "sleep":
        time.sleep(event["ms"] / 1000)
    elif action == "crash":
        os._exit(event.get("code", 3))
    elif action == "raise":
        raise ValueError(event.get("message", "boom"))
    elif action == "big":
        return {"data": "x" * event["size"]}
    return {
        "runtime": "python",
        "echo": event,
        "requestId": context.aws_request_id,
        "functionArn": context.invoked_function_arn,
        "remainingMs": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "pid": os.getpid(),
        "ticks": _ticks(),
        "clientContext": getattr(context.client_context, "custom", None),
        "cognitoIdentityId": getattr(context.identity, "cognito_identity_id", None),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_", "_", "TZ", "LD_"))},
    }
