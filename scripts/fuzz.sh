#!/usr/bin/env bash
# Fuzzes netmon's parsers of untrusted input with cargo-fuzz for a bounded time: the /proc
# parsers (procnet/), the ring consumer and the collector's region reader (what any monitored
# process can write), the DNS wire parser and the Lambda Runtime API classifier of the
# interceptor. Every target in fuzz/ runs NETMON_FUZZ_SECONDS seconds (default 20), with
# overflow checks on (-a), seeded with fuzz/seeds/<target> or, for the /proc targets, the
# fixture files. Needs the nightly toolchain and cargo-fuzz (scripts/install-test-deps.sh
# installs cargo-fuzz when nightly is there). A crash fails the script; libFuzzer leaves the
# input in fuzz/artifacts/<target>/, and `cargo +nightly fuzz run -a <target> <file>` replays it.
#   scripts/fuzz.sh                 # every target
#   scripts/fuzz.sh proc_net_snmp   # one target
#   NETMON_FUZZ_SECONDS=3600 scripts/fuzz.sh region_reader   # a long run (see SECURITY.md)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
seconds="${NETMON_FUZZ_SECONDS:-20}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: the nightly toolchain is not installed (cargo-fuzz needs it)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cargo +nightly fuzz build -a >"$log" 2>&1; then
    cat "$log" >&2
    echo "fuzz: building the fuzz targets failed" >&2
    exit 1
fi
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    seeds="fuzz/seeds/$t"
    [ -d "$seeds" ] || seeds=procnet/tests/fixtures
    if ! cargo +nightly fuzz run -a "$t" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $t failed (input saved under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs="$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    echo "fuzz: $t: $runs inputs in ${seconds}s, no failure"
done
