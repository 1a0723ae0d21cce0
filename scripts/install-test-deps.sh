#!/usr/bin/env bash
# Install what the end-to-end tests need on a fresh Debian 12 machine (run as root).
# Idempotent: re-running it on a machine that already has everything is cheap.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: must run as root (apt-get, network namespaces)" >&2
    exit 1
fi

apt_pkgs=()
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2")
}
need dnsmasq dnsmasq-base
need ip iproute2
need curl curl
need openssl openssl
need gcc gcc
need java openjdk-17-jdk-headless
need keytool openjdk-17-jdk-headless
need node nodejs

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    # shellcheck disable=SC2068
    apt-get install -y -qq --no-install-recommends ${apt_pkgs[@]} >/dev/null
fi

# dnsmasq lives in /usr/sbin, which a non-login PATH may lack.
for tool in dnsmasq ip curl openssl gcc java keytool node; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "install-test-deps: $tool is still missing after install" >&2
        exit 1
    fi
done

if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check pytest
fi
