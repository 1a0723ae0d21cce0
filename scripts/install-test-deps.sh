#!/usr/bin/env bash
# Install what the end-to-end tests need on a fresh Debian 12 machine (run as root).
# Idempotent: on a machine that already has everything it changes nothing and takes ~1 s.
#   apt: dnsmasq-base iproute2 curl openssl gcc chromium (+ openjdk-17-jdk-headless, nodejs if missing)
#   pip: pytest, grpcio
#   cargo: cargo-fuzz (when the nightly toolchain is installed), cargo-deny
#   Lambda runtime clients: awslambdaric (pip), aws-lambda-ric (npm, native build into the cache)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: run as root (apt-get; the DNS tests create network namespaces)" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
quiet() { # run a command, show its output only if it fails
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-test-deps: failed: $*" >&2
        exit 1
    fi
}
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

pkgs=()
have dnsmasq || pkgs+=(dnsmasq-base)
have ip || pkgs+=(iproute2)
have curl || pkgs+=(curl)
have openssl || pkgs+=(openssl)
have gcc || pkgs+=(gcc libc6-dev)
# gcc -static (tests/e2e/programs/static_client.c) links glibc's libc.a, from libc6-dev.
{ have gcc && [ -f "$(gcc -print-file-name=libc.a)" ]; } || pkgs+=(libc6-dev)
# java 17 (with keytool) and node 20 are normally on the machine already.
{ have java && have keytool; } || pkgs+=(openjdk-17-jdk-headless)
have node || pkgs+=(nodejs)
# Headless Chromium opens `netmon run --html` reports (tests/e2e/test_html_report.py).
have chromium || pkgs+=(chromium)

if [ "${#pkgs[@]}" -gt 0 ]; then
    quiet apt-get update -q
    quiet apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi

for tool in dnsmasq ip curl openssl gcc java keytool node chromium; do
    have "$tool" || { echo "install-test-deps: $tool is still missing after apt-get install" >&2; exit 1; }
done

if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    quiet python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore pytest
fi
# grpcio: the OTLP/gRPC receiver that misbehaves on purpose (tests/e2e/support/bad_otlp.py).
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
    quiet python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore grpcio
fi

# cargo-deny for the supply-chain check of scripts/test.sh (deny.toml); about two minutes to build.
if ! cargo deny --version >/dev/null 2>&1; then
    quiet cargo install -q --locked cargo-deny
fi

# cargo-fuzz for scripts/fuzz.sh, only where the nightly toolchain it needs is installed.
if rustup toolchain list 2>/dev/null | grep -q '^nightly' && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    quiet cargo install -q --locked cargo-fuzz
fi

# OTLP receivers for tests/e2e/test_otlp.py: rotel (PyPI wheel with the rotel-agent binary) and
# VictoriaMetrics >= 1.9x (Debian trixie's package; bookworm's has no OTLP), unpacked into a
# cache directory through a private APT configuration that leaves the system's sources alone.
if ! python3 -c 'import rotel' >/dev/null 2>&1; then
    quiet python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore rotel
fi
rotel_agent="$(python3 -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
[ -x "$rotel_agent" ] || { echo "install-test-deps: rotel-agent missing at $rotel_agent" >&2; exit 1; }

cache="${NETMON_TEST_CACHE:-/var/cache/netmon-test}"
vm_bin="$cache/victoria-metrics/usr/bin/victoria-metrics"
if [ ! -x "$vm_bin" ]; then
    apt_dir="$cache/apt-trixie"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc" "$apt_dir/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$apt_dir/etc/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o "Dir::State::Status=/dev/null"
        -o "APT::Sandbox::User=root"
    )
    quiet apt-get "${apt_opts[@]}" update -q
    (cd "$apt_dir/debs" && quiet apt-get "${apt_opts[@]}" download victoria-metrics)
    rm -rf "$cache/victoria-metrics"
    quiet dpkg-deb -x "$(ls "$apt_dir"/debs/victoria-metrics_*.deb | head -n1)" "$cache/victoria-metrics"
    rm -rf "$apt_dir"
fi
[ -x "$vm_bin" ] || { echo "install-test-deps: victoria-metrics missing at $vm_bin" >&2; exit 1; }

# Lambda runtime clients for the local Lambda (tests/e2e/support/lambda_local.py): awslambdaric
# (PyPI wheel) and aws-lambda-ric (npm; its install scripts build curl and aws-lambda-cpp from
# source, ~1 min, once) into $cache/node — outside the repository.
if ! python3 -c 'import awslambdaric' >/dev/null 2>&1; then
    quiet python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore awslambdaric
fi
ric_version=4.0.2
node_dir="$cache/node"
ric_dir="$node_dir/node_modules/aws-lambda-ric"
if [ ! -f "$ric_dir/rapid-client.node" ] ||
    [ "$(node -p "require('$ric_dir/package.json').version" 2>/dev/null)" != "$ric_version" ]; then
    build_pkgs=()
    have cmake || build_pkgs+=(cmake)
    have autoreconf || build_pkgs+=(autoconf)
    have automake || build_pkgs+=(automake)
    have libtoolize || build_pkgs+=(libtool)
    have g++ || build_pkgs+=(g++)
    have make || build_pkgs+=(make)
    if [ "${#build_pkgs[@]}" -gt 0 ]; then
        quiet apt-get update -q
        quiet apt-get install -y -q --no-install-recommends "${build_pkgs[@]}"
    fi
    mkdir -p "$node_dir"
    [ -f "$node_dir/package.json" ] || echo '{"name": "netmon-test-node", "private": true}' >"$node_dir/package.json"
    # node-gyp must use the installed headers: it cannot download them here.
    [ -f /usr/include/node/node.h ] && export npm_config_nodedir=/usr
    (cd "$node_dir" && quiet npm install --no-save --no-audit --no-fund "aws-lambda-ric@$ric_version")
fi
[ -f "$ric_dir/rapid-client.node" ] || { echo "install-test-deps: aws-lambda-ric missing at $ric_dir" >&2; exit 1; }
