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

echo "== cargo deny check licenses bans sources (deny.toml; advisories need GitHub: SECURITY.md)"
cargo deny --log-level error check licenses bans sources

echo "== fuzzing the parsers of untrusted input (scripts/fuzz.sh, NETMON_FUZZ_SECONDS per target, default 10 here)"
if rustup toolchain list 2>/dev/null | grep -q '^nightly' && cargo +nightly fuzz --version >/dev/null 2>&1; then
    NETMON_FUZZ_SECONDS="${NETMON_FUZZ_SECONDS:-10}" bash scripts/fuzz.sh
else
    # cargo-fuzz needs nightly; the same invariants ran above on stable, on random and
    # mutated input (procnet/tests/robustness.rs, collector/src/hostile_input.rs, the parsers'
    # unit tests), without coverage guidance.
    echo "no nightly toolchain with cargo-fuzz: fuzz targets not run"
fi

echo "== e2e tests (tests/e2e)"
export NETMON_BIN="${NETMON_BIN:-$repo/target/debug/netmon}"
export PYTHONDONTWRITEBYTECODE=1
python3 -m pytest -q -p no:cacheprovider tests/e2e "$@"
