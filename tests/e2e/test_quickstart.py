"""The README's first command: `netmon run -- python3 examples/demo.py`."""

from __future__ import annotations

from support import harness

DEMO = harness.REPO / "examples" / "demo.py"


def test_the_readme_demo_runs_and_shows_both_ends(run_netmon):
    result = run_netmon([harness.PYTHON, DEMO])
    harness.assert_ran_ok(result)
    assert "downloaded 1048576 bytes, uploaded 262144 bytes" in result.proc.stdout
    s = result.summary
    out = [f for f in s["flows"] if f["direction"] == "outgoing" and f["dst_port"] != 9 and f["transport"] == "tcp"]
    inc = [f for f in s["flows"] if f["direction"] == "incoming"]
    assert len(out) == 1 and len(inc) == 1, result.describe()
    # Both ends are in the process: what one sent, the other received.
    assert out[0]["bytes_sent"] == inc[0]["bytes_received"] > 262144
    assert out[0]["bytes_received"] == inc[0]["bytes_sent"] > 1048576
    assert out[0]["dst_domain"] == "localhost"
    refused = harness.one_flow(result, dst_port=9)
    assert refused["errors"] == {"ECONNREFUSED": 1}
    assert "netmon: " in result.proc.stderr and "1 failed" in result.proc.stderr
