#!/usr/bin/env bash
# The single test command: install test dependencies, build, run the Rust tests, then the
# end-to-end suite. Extra arguments go to pytest, e.g. `scripts/test.sh -k dns -x`.
# NETMON_BIN, if set, names the netmon binary the e2e tests run (default target/debug/netmon).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== installing test dependencies"
bash scripts/install-test-deps.sh

echo "== cargo build --workspace"
cargo build --workspace

echo "== cargo test --workspace"
cargo test --workspace

echo "== e2e tests (tests/e2e)"
export NETMON_BIN="${NETMON_BIN:-$repo/target/debug/netmon}"
export PYTHONDONTWRITEBYTECODE=1
python3 -m pytest -q -p no:cacheprovider tests/e2e "$@"
