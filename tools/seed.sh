#!/usr/bin/env bash
# tools/seed.sh [PLAYERS_FILE] - gives the demonstration players of `make run` their policies.
#
# For each line "account policy language" of PLAYERS_FILE (default config/demo/players.txt):
# PUT guard's /v1/accounts/{id}/policy {"action": policy, "channels": ["ingame"], "lang"} with
# the player's development token (the in-game channel needs no confirmed contact). A player
# still locked by an earlier run is unlocked first by support (reason "make run: demo reset"),
# so every run shows the lock again. "lang" is the player's language for guard's per-player
# language (issue 24); a guard without it ignores the field. A fourth column, an email, is set
# (PUT .../contacts) and confirmed with the code guard sends to it, read from notify's development
# mail dir (NOTIFY_OUTBOX_DIR, default var/outbox; the bus must be running): a campaign's email
# then reaches that player (notify asks guard for the confirmed contacts). An email already in
# effect is left as it is.
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
rc=0
seeded=()
OUTBOX=${NOTIFY_OUTBOX_DIR:-var/outbox}
MARK=$(mktemp)
trap 'rm -f "$OUT" "$MARK"' EXIT

# The 8-digit code of the newest contact_code email to $1 among the files not listed in $MARK
# (those of the mail dir before the request), empty if none yet.
code_for() {
  local n f
  for n in $(ls -t "$OUTBOX" 2>/dev/null | grep '\.eml$'); do
    grep -qxF "$n" "$MARK" && continue
    f=$OUTBOX/$n
    if grep -q "^To: $1"$'\r'"\?$" "$f" && grep -q '^X-Notify-Kind: contact_code' "$f"; then
      # the body (after the blank line ending the headers) holds the code
      sed '1,/^\r\?$/d' "$f" | grep -oE '(^|[^0-9])[0-9]{8}([^0-9]|$)' | grep -oE '[0-9]{8}' | head -1
      return
    fi
  done
}

# set_email ACCOUNT TOKEN EMAIL: asks for the email and confirms it with the code it got.
set_email() {
  local status code i
  ls "$OUTBOX" >"$MARK" 2>/dev/null
  status=$(curl -s -o "$OUT" -w '%{http_code}' -X PUT -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -d "{\"email\":\"$3\"}" "$GUARD_URL/v1/accounts/$1/contacts")
  [ "$status" = 200 ] && return 0 # already in effect
  if [ "$status" != 202 ]; then
    echo "seed: guard answered $status for $1's email: $(cat "$OUT")" >&2
    return 1
  fi
  for ((i = 0; i < 150; i++)); do
    code=$(code_for "$3")
    [ -n "$code" ] && break
    sleep 0.2
  done
  if [ -z "$code" ]; then
    echo "seed: no confirmation code for $1's email in $OUTBOX within 30 s" >&2
    return 1
  fi
  status=$(curl -s -o "$OUT" -w '%{http_code}' -X POST -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -d "{\"channel\":\"email\",\"code\":\"$code\"}" \
    "$GUARD_URL/v1/accounts/$1/contacts/confirm")
  if [ "$status" != 200 ]; then
    echo "seed: guard answered $status to $1's confirmation: $(cat "$OUT")" >&2
    return 1
  fi
}

while read -r account policy lang email _; do
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
  if [ -n "${email:-}" ]; then
    set_email "$account" "$token" "$email" || rc=1
  fi
done <"$FILE"
echo "${seeded[*]}"
exit $rc
