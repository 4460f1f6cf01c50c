#!/usr/bin/env bash
# bench/product.sh - the whole product's speed (issue 5), driven by bin/loginsim:
#
#  1. sustained rate: the product on embedded defaults (bus-broker with fsync=always, a private
#     PostgreSQL cluster, the real config/bus/*.json on free ports; started by
#     tests/lib/product.py, the same start-up as tests/e2e/test_product.py) takes loginsim's
#     logins at rates from BENCH_START doubling up (or halving down) to the first that is not
#     sustained, then two bisection steps, each step for
#     BENCH_SECONDS. A rate is sustained when loginsim had >= 97% of its logins accepted on time
#     and no route's lag (bus_dispatcher_lag) was more than one second of logins at the end of
#     the step. Prints sustained/5000 (the goal) and, for the first rate not sustained, which
#     routes lagged and the CPU share of every process (from /proc, like pidstat).
#  2. latency at half the sustained rate, per login, from loginsim's ids_file (event id and the
#     wall-clock time of its 202): to the history row (history.logins.stored_at = now() of the
#     batch's insert transaction, read from PostgreSQL) and to guard's action (ce-time of the
#     account.action record, the time the dispatcher published guard's answer, read with kcat).
#     guard's default policy is set to kick for the bench so that the 5% of logins from abroad
#     produce actions. What a player feels (issue 24), in the same run: loginsim opens each
#     login's game session on gamesim (as make run does), so the figures go on to the kick
#     ending the live session (the session's ended_at) and to the alert reaching the player
#     (notify's in-game message, gamesim's received_at). Same host, same clock.
#
# loginsim sends BENCH_LOGIN_BATCH (20) logins per request to the publisher's batch endpoint,
# as busy login servers would; BENCH_LOGIN_BATCH=1 sends one POST per login.
# PostgreSQL runs durable (fsync, synchronous commits: PG_DURABLE=1, the default here).
# Knobs: BIN (bin), BENCH_SECONDS (20; issue 5 asks for 60), BENCH_START (1000 logins/s),
# BENCH_MAX (16000), BENCH_LOGIN_BATCH (20). Needs kcat, psql/initdb (make deps) and the GeoIP
# database.
set -euo pipefail
cd "$(dirname "$0")/.."
# Benches run in development mode (docs/security.md): development secrets are accepted.
export BUS_ENV=${BUS_ENV:-development}
BIN=${BIN:-bin}
# PostgreSQL as in production: fsync and synchronous commits on (tools/pg.sh; the test cluster
# runs without them). PG_DURABLE=0 measures the faster, not crash-safe, set-up.
export PG_DURABLE=${PG_DURABLE:-1}
for tool in kcat psql python3; do
  command -v $tool >/dev/null || { echo "bench/product.sh: $tool is not installed (make deps)" >&2; exit 1; }
done
for b in bus-broker bus-publisher bus-dispatcher ipcheck history guard notify campaign gamesim loginsim mktoken; do
  [ -x "$BIN/$b" ] || { echo "bench/product.sh: $BIN/$b is not built (make)" >&2; exit 1; }
done
[ -f var/geoip/geo-whois-asn-country.mmdb ] || { echo "bench/product.sh: var/geoip/geo-whois-asn-country.mmdb is missing (make deps)" >&2; exit 1; }
BIN=$BIN exec python3 bench/product.py
