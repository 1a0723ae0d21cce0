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
