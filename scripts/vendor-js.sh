#!/usr/bin/env bash
# Fetches the JavaScript library the HTML report embeds (collector/assets/vendor.json: package,
# version, the registry's dist.integrity) from the npm registry with npm, verifies the tarball
# against that integrity, and writes the file into collector/assets/ for include_str!.
#   scripts/vendor-js.sh           re-fetch and write collector/assets/<vendored>
#   scripts/vendor-js.sh --check   re-fetch and compare with what is committed (exit 1 if not equal)
# To move to another version: set "version" and "integrity" (`npm view PKG@VERSION dist.integrity`)
# in the manifest, run this script, and commit the manifest and the file.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="$repo/collector/assets"
manifest="$assets/vendor.json"
check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    *) echo "vendor-js: unknown argument ${1} (use --check or nothing)" >&2; exit 2 ;;
esac
for tool in npm node openssl tar; do
    command -v "$tool" >/dev/null || { echo "vendor-js: $tool is missing" >&2; exit 1; }
done

field() { node -e 'const m = require(process.argv[1]); const v = m[process.argv[2]]; if (typeof v !== "string" || !v) process.exit(1); console.log(v)' "$manifest" "$1"; }
package="$(field package)"
version="$(field version)"
integrity="$(field integrity)"
file="$(field file)"
vendored="$(field vendored)"

registry="$(npm view "$package@$version" dist.integrity 2>/dev/null)"
if [ "$registry" != "$integrity" ]; then
    echo "vendor-js: the registry's dist.integrity of $package@$version is '$registry', the manifest says '$integrity'" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tarball="$(cd "$tmp" && npm pack --silent "$package@$version")"
actual="sha512-$(openssl dgst -sha512 -binary "$tmp/$tarball" | openssl base64 -A)"
if [ "$actual" != "$integrity" ]; then
    echo "vendor-js: $tarball has integrity $actual, expected $integrity" >&2
    exit 1
fi
tar -xzf "$tmp/$tarball" -C "$tmp" "$file"
sha256="$(openssl dgst -sha256 -r "$tmp/$file" | cut -d' ' -f1)"

if [ "$check" = 1 ]; then
    if ! cmp -s "$tmp/$file" "$assets/$vendored"; then
        echo "vendor-js: collector/assets/$vendored differs from $file of $package@$version" >&2
        exit 1
    fi
    if [ "$(field sha256)" != "$sha256" ]; then
        echo "vendor-js: the manifest's sha256 is not the file's ($sha256)" >&2
        exit 1
    fi
    echo "vendor-js: collector/assets/$vendored is $package@$version ($integrity)"
    exit 0
fi

cp "$tmp/$file" "$assets/$vendored"
node -e 'const fs = require("fs"); const p = process.argv[1]; const m = JSON.parse(fs.readFileSync(p)); m.sha256 = process.argv[2]; fs.writeFileSync(p, JSON.stringify(m, null, 2) + "\n")' "$manifest" "$sha256"
echo "vendor-js: wrote collector/assets/$vendored from $package@$version ($integrity, sha256 $sha256)"
