#!/usr/bin/env bash
# tools/seed.sh [PLAYERS_FILE] - gives the demonstration players of `make run` their policies.
#
# For each line "account policy language" of PLAYERS_FILE (default config/demo/players.txt):
# PUT guard's /v1/accounts/{id}/policy {"action": policy, "channels": ["ingame"], "lang"} with
# the player's development token (the in-game channel needs no confirmed contact). A player
# still locked by an earlier run is unlocked first by support (reason "make run: demo reset"),
# so every run shows the lock again. "lang" is the player's language for guard's per-player
# language (issue 24); a guard without it ignores the field.
#
# Env: GUARD_URL (default http://127.0.0.1:8103); needs bin/mktoken and BUS_ENV=development (or
# AUTH_SECRET). Prints the players seeded as "account:language", separated by spaces (loginsim's
# demo_accounts: the language of the player's game client, which its game sessions carry);
# exits 1 when guard refused one.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
FILE=${1:-config/demo/players.txt}
GUARD_URL=${GUARD_URL:-http://127.0.0.1:8103}
STAFF=$(bin/mktoken staff make-run) || exit 1
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
rc=0
seeded=()
while read -r account policy lang _; do
  case "$account" in '' | '#'*) continue ;; esac
  token=$(bin/mktoken player "$account") || exit 1
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $STAFF" \
    -H 'Content-Type: application/json' -d '{"reason":"make run: demo reset"}' \
    "$GUARD_URL/v1/support/accounts/$account/unlock"
  body=$(printf '{"action":"%s","channels":["ingame"],"lang":"%s"}' "$policy" "$lang")
  status=$(curl -s -o "$OUT" -w '%{http_code}' -X PUT -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "$body" "$GUARD_URL/v1/accounts/$account/policy")
  if [ "${status:0:1}" != 2 ]; then
    echo "seed: guard answered $status for $account's policy: $(cat "$OUT")" >&2
    rc=1
  else
    seeded+=("$account:$lang")
  fi
done <"$FILE"
echo "${seeded[*]}"
exit $rc
