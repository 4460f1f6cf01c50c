#!/usr/bin/env bash
# make run: the whole product in the foreground on embedded defaults.
#
#   embedded broker (var/broker) or BUS_BOOTSTRAP, private PostgreSQL (var/pg) or DATABASE_URL,
#   busctl apply, the bus (publisher, dispatcher), every service (one campaign process per
#   config/campaign/NAME.json), the game server stub, the demo players' policies (tools/seed.sh,
#   config/demo/players.txt) and simulated login servers (LOGINSIM_RATE logins/s, default 5;
#   0 = none) that favour the demo players (LOGINSIM_DEMO_SHARE, default 0.2).
#
# SIGINT or SIGTERM stops everything it started within 10 s, in dependency order (simulators,
# dispatcher, publisher, services, broker, database); a second signal while stopping changes
# nothing. A process that dies is started again after a back-off (1 s, doubling to 30 s; reset
# once it ran 60 s), as systemd's Restart=on-failure would. Logs go to var/log/<name>.log.
# RUN_VAR moves the state (PostgreSQL, broker log, outbox, logs) from var/ elsewhere; the GeoIP
# database stays in var/geoip (make deps).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=${RUN_VAR:-$ROOT/var}
LOGDIR=$VAR/log
mkdir -p "$LOGDIR" "$VAR/outbox"
export BROKER_DATA_DIR=${BROKER_DATA_DIR:-$VAR/broker}
export NOTIFY_OUTBOX_DIR=${NOTIFY_OUTBOX_DIR:-$VAR/outbox}

# Development mode (docs/security.md): every unset secret takes its documented development value.
export BUS_ENV=development
# AUTH_SECRET: unset = the services' and bin/mktoken's shared development default (lib/auth.h).
LOGINSIM_RATE=${LOGINSIM_RATE:-5}
# LOG_LEVEL=debug make run: every process logs each delivery it makes or handles, with the
# event's trace id (the lines `bin/busctl trace EVENT_ID` follows; docs/logging.md).
if [ -n "${LOG_LEVEL:-}" ]; then
  for p in BROKER PUBLISHER DISPATCHER IPCHECK HISTORY GUARD NOTIFY CAMPAIGN GAMESIM LOGINSIM; do
    export "${p}_LOG_LEVEL=$LOG_LEVEL"
  done
fi

# The dispatcher's share of the 10 s: finish deliveries, commit, leave the groups (docs/bus.md).
export DISPATCHER_SHUTDOWN_TIMEOUT_MS=${DISPATCHER_SHUTDOWN_TIMEOUT_MS:-2500}
export PUBLISHER_SHUTDOWN_GRACE_MS=${PUBLISHER_SHUTDOWN_GRACE_MS:-1000}
export LOGINSIM_RATE

# Children, by index: name, command line, pid (0 = waiting to be started again), restart
# back-off, when it was started and when it may be started again (seconds, $SECONDS).
PIDS=()
NAMES=()
CMDS=()
BACKOFF=()
STARTED_AT=()
RESTART_AT=()
PG_STARTED=0
STOPPING=0
CAMPAIGNS=() # the names of the campaign processes (config/campaign/NAME.json: campaign-NAME)

say() { printf '\033[1m[run]\033[0m %s\n' "$*"; }

# stop_group SECONDS NAME... : SIGTERM to the named children, SIGKILL to those still running
# after SECONDS.
stop_group() {
  local budget=$1 i name pids=()
  shift
  for name in "$@"; do
    for i in "${!NAMES[@]}"; do
      if [ "${NAMES[$i]}" = "$name" ] && [ "${PIDS[$i]}" != 0 ]; then
        kill -TERM "${PIDS[$i]}" 2>/dev/null
        pids+=("${PIDS[$i]}")
        PIDS[$i]=0
      fi
    done
  done
  [ ${#pids[@]} = 0 ] && return
  local deadline=$((SECONDS * 10 + budget * 10)) p alive
  while :; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    if [ $((SECONDS * 10)) -ge $deadline ]; then
      for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
      break
    fi
    sleep 0.05
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}

# Stops everything in dependency order: what produces events first, the stores last. Runs once;
# a signal arriving meanwhile (make sends its own TERM, a user presses Ctrl-C twice) runs
# on_signal, which sees STOPPING and returns: the stop goes on where it was.
stop_all() {
  [ "$STOPPING" = 1 ] && return
  STOPPING=1
  say "stopping..."
  stop_group 1 loginsim gamesim
  stop_group 4 bus-dispatcher
  stop_group 2 bus-publisher
  stop_group 2 "${CAMPAIGNS[@]}" notify guard history ipcheck
  stop_group 2 bus-broker bus-mock
  if [ "$PG_STARTED" = 1 ]; then tools/pg.sh stop "$VAR/pg" >/dev/null 2>&1; fi
  say "stopped."
}
on_signal() {
  [ "$STOPPING" = 1 ] && return
  stop_all
  exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# spawn I: starts child I in its own session (a Ctrl-C on the terminal reaches make and this
# script only, and the processes are then stopped in order by stop_all, not all at once by the
# terminal), with its log under var/log.
spawn() {
  local i=$1
  # shellcheck disable=SC2086 # CMDS holds a simple command line (binary and arguments)
  setsid ${CMDS[$i]} >>"$LOGDIR/${NAMES[$i]}.log" 2>&1 &
  PIDS[$i]=$!
  STARTED_AT[$i]=$SECONDS
}

# start NAME CMD... : starts a process in the background with its log under var/log.
start() {
  local name=$1
  shift
  if [ ! -x "$1" ]; then
    say "skipping $name: $1 is not built"
    return 1
  fi
  local i=${#NAMES[@]}
  NAMES[$i]=$name
  CMDS[$i]="$*"
  BACKOFF[$i]=1
  RESTART_AT[$i]=0
  spawn "$i"
}

# supervise: a child that exited is started again after its back-off (doubling up to 30 s,
# back to 1 s once it ran 60 s); one that exited 0 asked to stop and is left stopped.
supervise() {
  local i rc
  for i in "${!PIDS[@]}"; do
    if [ "${PIDS[$i]}" = 0 ]; then
      if [ "${RESTART_AT[$i]}" != 0 ] && [ $SECONDS -ge "${RESTART_AT[$i]}" ]; then
        say "starting ${NAMES[$i]} again"
        RESTART_AT[$i]=0
        spawn "$i"
      fi
      continue
    fi
    kill -0 "${PIDS[$i]}" 2>/dev/null && continue
    wait "${PIDS[$i]}" 2>/dev/null
    rc=$?
    PIDS[$i]=0
    if [ "$rc" = 0 ]; then
      say "${NAMES[$i]} exited (0); not restarted"
      continue
    fi
    if [ $((SECONDS - STARTED_AT[$i])) -ge 60 ]; then BACKOFF[$i]=1; fi
    say "${NAMES[$i]} exited ($rc); starting it again in ${BACKOFF[$i]} s; last lines of $LOGDIR/${NAMES[$i]}.log:"
    tail -n 5 "$LOGDIR/${NAMES[$i]}.log"
    RESTART_AT[$i]=$((SECONDS + BACKOFF[$i]))
    BACKOFF[$i]=$((BACKOFF[$i] * 2 > 30 ? 30 : BACKOFF[$i] * 2))
  done
}

# wait_url NAME URL: waits until URL answers 200 (the process's /readyz), up to 30 s.
wait_url() {
  local name=$1 url=$2 i
  for ((i = 0; i < 300; i++)); do
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    local pid=${PIDS[${#PIDS[@]} - 1]}
    if ! kill -0 "$pid" 2>/dev/null; then
      say "$name exited; last lines of $LOGDIR/$name.log:"
      tail -n 20 "$LOGDIR/$name.log"
      exit 1
    fi
    sleep 0.1
  done
  say "$name did not become ready at $url; see $LOGDIR/$name.log"
  exit 1
}

# wait_port NAME PORT
wait_port() {
  local name=$1 port=$2 i
  for ((i = 0; i < 300; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  say "$name did not open port $port; see $LOGDIR/$name.log"
  exit 1
}

# 1. PostgreSQL
if [ -z "${DATABASE_URL:-}" ]; then
  if [ -x tools/pg.sh ]; then
    tools/pg.sh start "$VAR/pg" 55432 >>"$LOGDIR/postgres.log" 2>&1 || {
      say "PostgreSQL did not start; see $LOGDIR/postgres.log"; exit 1; }
    PG_STARTED=1
    export DATABASE_URL=$(tools/pg.sh url "$VAR/pg" 55432)  # with its password (docs/security.md)
  fi
fi

# The embedded broker requires SASL/SCRAM and applies the product's ACLs (config/broker/acl.json,
# docs/broker.md "The product's principals"): the publisher, the dispatcher and busctl (the admin)
# each connect as their own principal through their kafka.* settings. Passwords are made once
# per RUN_VAR under broker-sasl/ (0600); kcat.conf and busctl.env there are for your own kcat
# and busctl.
SASL_DIR=$VAR/broker-sasl
broker_principals() {
  local u first=1
  (umask 077 && mkdir -p "$SASL_DIR")
  for u in publisher dispatcher busctl; do
    if [ ! -s "$SASL_DIR/$u.password" ]; then
      (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$SASL_DIR/$u.password")
    fi
  done
  {
    echo '{"users": {'
    for u in publisher dispatcher busctl; do
      [ $first = 1 ] || echo ','
      first=0
      bin/bus-broker --scram-user "$u" <"$SASL_DIR/$u.password" | sed '1d;$d' || return 1
    done
    echo '}}'
  } >"$SASL_DIR/users.json.tmp" && mv "$SASL_DIR/users.json.tmp" "$SASL_DIR/users.json" || return 1
  export BROKER_SASL_USERS_FILE=$SASL_DIR/users.json BROKER_SASL_REQUIRED=true
  export BROKER_ACL_FILE=$ROOT/config/broker/acl.json
  kafka_principal PUBLISHER publisher
  kafka_principal DISPATCHER dispatcher
  kafka_principal BUSCTL busctl
  (umask 077 && printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=busctl\nsasl.password=%s\n' \
    "$(cat "$SASL_DIR/busctl.password")" >"$SASL_DIR/kcat.conf")
  (umask 077 && env | grep '^BUSCTL_KAFKA_' | sed 's/^/export /' >"$SASL_DIR/busctl.env")
}
# kafka_principal PREFIX USER: PREFIX_KAFKA_* (the kafka.* pass-through) for SCRAM as USER.
kafka_principal() {
  export "$1_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" "$1_KAFKA_SASL_MECHANISMS=SCRAM-SHA-512" \
    "$1_KAFKA_SASL_USERNAME=$2" "$1_KAFKA_SASL_PASSWORD=$(cat "$SASL_DIR/$2.password")"
}

# 2. Broker
if [ -z "${BUS_BOOTSTRAP:-}" ]; then
  if [ -x bin/bus-broker ]; then
    broker_principals || { say "could not make the broker's SASL users in $SASL_DIR"; exit 1; }
    start bus-broker bin/bus-broker && wait_port bus-broker 9092
    export BUS_BOOTSTRAP=127.0.0.1:9092
  else
    rm -f "$VAR/mock.bootstrap"
    start bus-mock bin/bus-mock --bootstrap-file "$VAR/mock.bootstrap" --bus-config config/bus
    for ((i = 0; i < 100; i++)); do [ -s "$VAR/mock.bootstrap" ] && break; sleep 0.1; done
    export BUS_BOOTSTRAP=$(cat "$VAR/mock.bootstrap")
    say "no embedded broker built: using librdkafka's mock cluster at $BUS_BOOTSTRAP (memory only)"
  fi
fi

# 3. Topics
if [ -x bin/busctl ]; then
  # The dispatcher is not running yet (it reads the bus config at start): no reload.
  DISPATCHER_URLS= bin/busctl apply config/bus >>"$LOGDIR/busctl.log" 2>&1 || say "busctl apply failed; see $LOGDIR/busctl.log"
fi

# 4. Services first (so the dispatcher finds its endpoints), then the bus.
start gamesim bin/gamesim && wait_url gamesim http://127.0.0.1:8109/healthz
start ipcheck bin/ipcheck && wait_url ipcheck http://127.0.0.1:8101/readyz
start history bin/history && wait_url history http://127.0.0.1:8102/readyz
start guard bin/guard && wait_url guard http://127.0.0.1:8103/readyz
start notify bin/notify && wait_url notify http://127.0.0.1:8104/readyz
# Every campaign of config/campaign/NAME.json is one process on the port its file names (and a
# route to that port in config/bus/); a new campaign counts logins from its first start.
for conf in config/campaign/*.json; do
  name=campaign-$(basename "$conf" .json)
  listen=$(sed -n 's/.*"listen": *"\([^"]*\)".*/\1/p' "$conf")
  CAMPAIGNS+=("$name")
  start "$name" bin/campaign --config "$conf" && wait_url "$name" "http://${listen:-127.0.0.1:8105}/readyz"
done
start bus-publisher bin/bus-publisher && wait_url bus-publisher http://127.0.0.1:8080/readyz
start bus-dispatcher bin/bus-dispatcher && wait_url bus-dispatcher http://127.0.0.1:8081/healthz

# 5. The demonstration players (config/demo/players.txt): one per policy and language, logged in
# often by loginsim (a fifth of its logins, half of those from abroad) so that each policy acts
# within a minute. LOGINSIM_DEMO_SHARE=0 leaves them alone.
DEMO_PLAYERS=
if [ -x tools/seed.sh ] && [ -x bin/mktoken ]; then
  DEMO_PLAYERS=$(tools/seed.sh 2>>"$LOGDIR/seed.log") || say "seeding the demo players failed; see $LOGDIR/seed.log"
fi
export LOGINSIM_DEMO_ACCOUNTS=${LOGINSIM_DEMO_ACCOUNTS-$DEMO_PLAYERS}
export LOGINSIM_DEMO_SHARE=${LOGINSIM_DEMO_SHARE:-0.2}
# An attacker guessing user-00001's password (a twentieth of the attempts, topic login.failed):
# guard throttles the account within about two minutes (reason brute_force).
export LOGINSIM_FAILED_SHARE=${LOGINSIM_FAILED_SHARE:-0.05}

if [ "$LOGINSIM_RATE" != 0 ]; then
  start loginsim bin/loginsim
fi

cat <<EOF

  The product is running (logs: var/log/*.log; Ctrl-C stops everything).

  Pages (sign in with a token from bin/mktoken; first \`export BUS_ENV=development\` in your shell):
    Player page       http://127.0.0.1:8102/          bin/mktoken player alice
    Support console   http://127.0.0.1:8103/support/  bin/mktoken staff sam
    Bus dashboard     http://127.0.0.1:8081/          admin token: \$BUS_ADMIN_TOKEN (dev: dev-admin-token)

  Campaigns (config/campaign/*.json, one process each; logs var/log/campaign-NAME.log):
    $(printf '%s ' "${CAMPAIGNS[@]}")

  Publish a login:
    curl -s -H 'Authorization: Bearer dev-login-token' -H 'Content-Type: application/json' \\
      -d '{"account_id":"alice","ip":"8.8.8.8","ts":"$(date -u +%Y-%m-%dT%H:%M:%SZ)"}' \\
      http://127.0.0.1:8080/v1/topics/login/events
  A player's history (mint a token first):
    TOKEN=\$(bin/mktoken player alice)
    curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8102/v1/accounts/alice/logins
  A contact takes effect once confirmed with the code sent to it (emails land in var/outbox/):
    curl -s -X PUT -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -d '{"email":"alice@example.com"}' http://127.0.0.1:8103/v1/accounts/alice/contacts
    curl -s -X POST -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -d '{"channel":"email","code":"<code from the email>"}' \\
      http://127.0.0.1:8103/v1/accounts/alice/contacts/confirm
  Lock on logins from abroad (the code goes in game, and by email once confirmed), then look
  at the status:
    curl -s -X PUT -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -d '{"action":"lock","channels":["ingame","email"]}' http://127.0.0.1:8103/v1/accounts/alice/policy
    curl -s -H 'Authorization: Bearer dev-status-token' \\
      'http://127.0.0.1:8103/v1/accounts/alice/status?ip=8.8.8.8'   # as a login server asks
  Unlock as support staff:
    STAFF=\$(bin/mktoken staff sam)
    curl -s -X POST -H "Authorization: Bearer \$STAFF" -H 'Content-Type: application/json' \\
      -d '{"reason":"verified by phone"}' http://127.0.0.1:8103/v1/support/accounts/alice/unlock
  Bus routes (admin token): curl -s -H 'Authorization: Bearer dev-admin-token' http://127.0.0.1:8081/v1/routes
  Metrics of any process: http://127.0.0.1:<port>/metrics
  An event's journey: bin/busctl trace EVENT_ID   (every delivery: LOG_LEVEL=debug make run)
  The broker requires SASL (each process has its own principal, config/broker/acl.json); as
  the admin: kcat -F $SASL_DIR/kcat.conf -b 127.0.0.1:9092 -L
             . $SASL_DIR/busctl.env   (then bin/busctl trace, dlq, apply)
  Emails: var/outbox/   in-game messages and kicks (gamesim's admin token):
    curl -s -H 'Authorization: Bearer dev-only-gamesim-admin-token' http://127.0.0.1:8109/v1/received

  Demo players (config/demo/players.txt), logged in often, half of the time from abroad; each
  policy acts within a minute (Korean and English players: demo-<policy>-ko / -en):
    demo-notify-ko   notify: an in-game message reaches the live session; its email is
                     confirmed, so campaign password-2026 also reaches it by email
                     (var/outbox/, To: demo-notify-ko@example.com; notify asks guard for the
                     confirmed contacts)
    demo-kick-ko     kick: the session from abroad ends, and the player is told why
    demo-block-ko    block_abroad: logins from abroad are refused before they start
    demo-lock-ko     lock: the account is locked, its sessions end, later logins are refused
  Their game sessions (how each one ended and why), and loginsim's refusals:
    curl -s -H 'Authorization: Bearer dev-only-gamesim-admin-token' \\
      'http://127.0.0.1:8109/v1/sessions?account_id=demo-kick-ko'
    grep 'refused by guard' var/log/loginsim.log
  user-00001's password is being guessed (topic login.failed): within about two minutes guard
  throttles it (the refusals above say brute_force; the status API gives retry_after).

EOF

# Stay in the foreground until a signal or until our parent (make) is gone (`kill <make's pid>`
# then also stops everything), starting again any process that dies.
PARENT=$PPID
while :; do
  if ! kill -0 "$PARENT" 2>/dev/null; then
    exit 0
  fi
  supervise
  sleep 0.5 &
  wait $!
done
