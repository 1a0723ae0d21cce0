#!/usr/bin/env bash
# Install what the end-to-end tests need on a fresh Debian 12 machine (run as root).
# Idempotent: on a machine that already has everything it changes nothing and takes ~1 s.
#   apt: dnsmasq-base iproute2 curl openssl gcc (+ openjdk-17-jdk-headless, nodejs if missing)
#   pip: pytest
#   cargo: cargo-fuzz (when the nightly toolchain is installed)
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
# java 17 (with keytool) and node 20 are normally on the machine already.
{ have java && have keytool; } || pkgs+=(openjdk-17-jdk-headless)
have node || pkgs+=(nodejs)

if [ "${#pkgs[@]}" -gt 0 ]; then
    quiet apt-get update -q
    quiet apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi

for tool in dnsmasq ip curl openssl gcc java keytool node; do
    have "$tool" || { echo "install-test-deps: $tool is still missing after apt-get install" >&2; exit 1; }
done

if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    quiet python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore pytest
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
