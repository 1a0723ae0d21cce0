"""The `local_lambda` fixture: a started local Lambda execution environment (support/lambda_local.py).

    def test_x(local_lambda):
        lam = local_lambda(FUNCTIONS_DIR / "python", "app.handler", opt_dir=opt, env={...})
        r = lam.invoke({"k": "v"}, trace=None, sampled=True, timeout_s=5)
        assert r.ok, r.describe()
        lam.shutdown()

Every environment it started is shut down and killed at teardown.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import lambda_local
from support.lambda_local import LambdaConfig, LocalLambda


@pytest.fixture
def local_lambda(tmp_path):
    """local_lambda(function_dir, handler, runtime="python"|"node"|"provided", opt_dir=None,
    env=None, exec_wrapper=None, telemetry="normal"|"silent"|"refuse"|"absent", **LambdaConfig
    fields such as timeout_s, memory_mb, runtime_api_prefix, init_timeout_s) -> started LocalLambda.
    Check `.init_result` when the init itself is under test; `.invoke()` reports init errors too."""
    started: list[LocalLambda] = []

    def _start(
        function_dir,
        handler: str,
        runtime: str = "python",
        opt_dir=None,
        env: dict[str, str] | None = None,
        exec_wrapper=None,
        telemetry: str = "normal",
        **options,
    ) -> LocalLambda:
        if runtime == "node" and not (lambda_local.NODE_MODULES / "aws-lambda-ric" / "index.mjs").is_file():
            pytest.fail(
                f"aws-lambda-ric is missing under {lambda_local.NODE_MODULES}; "
                "scripts/install-test-deps.sh installs it",
                pytrace=False,
            )
        cfg = LambdaConfig(
            function_dir=Path(function_dir),
            handler=handler,
            runtime=runtime,
            opt_dir=Path(opt_dir) if opt_dir is not None else None,
            env=dict(env or {}),
            exec_wrapper=str(exec_wrapper) if exec_wrapper is not None else None,
            telemetry=telemetry,
            work_dir=tmp_path,
            **options,
        )
        lam = LocalLambda(cfg)
        started.append(lam)
        return lam.start()

    yield _start
    for lam in started:
        lam.close()
