#!/usr/bin/env bash
# install_smoke.sh PREFIX SYSCONFDIR STATE GEOIP_DB: runs the product's bus and ipcheck from an
# installed tree only (PREFIX/bin, the release tree PREFIX/share/bus as working directory, the
# example configuration in SYSCONFDIR/bus), on the product's default ports, and follows one
# login from abroad to the ipcheck's answer on login.checked. Meant to run in a network
# namespace of its own (test_install.py starts it under `unshare -n`). Exit 0 when the answer
# came; the processes are stopped in every case.
set -uo pipefail
PREFIX=$1 ETC=$2 STATE=$3 GEOIP=$4
BIN=$PREFIX/bin
cd "$PREFIX/share/bus" || exit 1
ip link set lo up
export BUS_ENV=development BUS_SIGNING_SECRET=install-smoke-signing-secret-0123456789
export BROKER_DATA_DIR=$STATE/broker IPCHECK_GEOIP_DB=$GEOIP
PIDS=()
cleanup() { # the reverse of the start order: the broker goes last
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null
    wait "${PIDS[i]}" 2>/dev/null
  done
}
trap cleanup EXIT
start() { # start NAME: the installed binary with its installed configuration
  "$BIN/$1" --config "$ETC/bus/$1.json" >"$STATE/$1.log" 2>&1 &
  PIDS+=($!)
}
until_ok() { # until_ok SECONDS WHAT CMD...: polls CMD every 0.1 s until it succeeds
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "install_smoke: $what did not happen in time" >&2
      tail -n 20 "$STATE"/*.log >&2
      return 1
    fi
    sleep 0.1
  done
}
mkdir -p "$STATE"
start bus-broker
until_ok 30 "broker up" curl -sf http://127.0.0.1:9093/healthz || exit 1
DISPATCHER_URLS= "$BIN/busctl" apply >"$STATE/busctl.log" 2>&1 || { cat "$STATE/busctl.log"; exit 1; }
start ipcheck
start bus-publisher
start bus-dispatcher
for port in 8101 8080 8081; do
  until_ok 30 "port $port ready" curl -sf "http://127.0.0.1:$port/readyz" || exit 1
done
id=install-smoke-$$
curl -sf -X POST http://127.0.0.1:8080/v1/topics/login/events \
  -H 'Authorization: Bearer dev-login-token' -H "ce-id: $id" -H 'Content-Type: application/json' \
  -d '{"account_id": "smoke-'"$$"'", "ip": "8.8.8.8", "ts": "2026-12-07T10:00:00Z"}' || exit 1
echo
# ipcheck answers a login from abroad with a login.checked event carrying the country.
found() {
  "$BIN/busctl" tail login.checked -n 1 --from-beginning 2>/dev/null | grep "smoke-$$" | grep -q '"country": *"US"'
}
until_ok 60 "login.checked event" found || exit 1
echo "install_smoke: login.checked carries the country"
