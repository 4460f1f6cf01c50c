#!/usr/bin/env bash
# bench/dispatcher.sh - the dispatcher's speed against the endpoint it delivers to, in one run:
#
#  1. one-way: wrk (keep-alive) POSTs one event per request to bench-baseline-202 (a bare
#     libmicrohttpd server answering 202) -> R_wrk req/s. Then N events are put in topic `in`
#     and bus-dispatcher delivers them (consume, POST with every delivery header, commit) to
#     the same server -> R_disp events/s. Target: R_disp / R_wrk >= 0.50.
#  2. latency: events produced at 50% of R_disp for LAT_SECONDS; p50/p99 of the time from the
#     record's Kafka timestamp to its acknowledged delivery (histogram
#     bus_dispatcher_event_age_seconds).
#  3. streaming hop: a streaming route (consume, POST, produce the 202 body to `out` with
#     acks=all, commit after the ack) over the same backlog -> R_stream events/s.
#     Target: R_stream / R_wrk >= 0.30.
#  4. exactly-once cost: two more streaming routes over the same backlog, side by side in one
#     dispatcher, one of them with "exactly_once": true (outputs and input offsets in one Kafka
#     transaction per commit tick). Both run at once, so the machine's other load hits both
#     alike; each one's rate is its committed offsets (GET /v1/routes, refreshed every 0.5 s)
#     over the same window, from the first commit of either to the moment one of them
#     committed EVENTS: R_eos / R_plain. Printed, no target (skipped on the mock, whose
#     transactions are stubs; EOS=0 skips it anywhere).
#
# The broker is the product's own, bus-broker (data in a temporary folder, its default fsync
# policy, topics created by busctl apply), or bus-mock with BROKER=mock, or the one
# BUS_BOOTSTRAP names (topics in and out, 3 partitions each, must exist). The mock answers a
# fetch with one record batch per partition and holds an empty fetch for fetch.wait.max.ms,
# so its latency figures are its own (p50 ~75 ms against ~6 ms on bus-broker).
# Knobs: BIN (bin), BROKER (embedded), DURATION (10s), CONNS (64), WRK_THREADS (2), THREADS
# (baseline HTTP threads, 2), EVENTS (200000; 50000 on the mock), CONCURRENCY (64),
# LAT_SECONDS (10), DISPATCHER_EXTRA (extra JSON members for the dispatcher's config, e.g.
# '"kafka.fetch.wait.max.ms": 10'). EVENTS above ~80000 overflow bus-mock's per-partition log
# (librdkafka's mock drops its oldest segments), so the count never reaches EVENTS there.
set -euo pipefail
cd "$(dirname "$0")/.."
# Benches run in development mode (docs/security.md): development secrets are accepted.
export BUS_ENV=${BUS_ENV:-development}
ROOT=$PWD
BIN=${BIN:-bin}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
THREADS=${THREADS:-2}
BROKER=${BROKER:-embedded}
if [ "$BROKER" = mock ]; then EVENTS=${EVENTS:-50000}; else EVENTS=${EVENTS:-200000}; fi
CONCURRENCY=${CONCURRENCY:-64}
LAT_SECONDS=${LAT_SECONDS:-10}

for tool in wrk kcat python3 curl; do
  command -v $tool >/dev/null || { echo "bench/dispatcher.sh: $tool is not installed (make deps)" >&2; exit 1; }
done
for b in bus-dispatcher bus-mock bus-broker busctl bench-baseline-202; do
  [ -x "$BIN/$b" ] || { echo "bench/dispatcher.sh: $BIN/$b is not built (make bench)" >&2; exit 1; }
done

. bench/lib.sh  # free_port, ratio, cleanup of PIDS (last started first) and BENCH_DIRS on exit
TMP=$(mktemp -d /tmp/bench-dispatcher.XXXXXX)
BENCH_DIRS+=("$TMP")


if [ -n "${BUS_BOOTSTRAP:-}" ]; then
  BOOTSTRAP=$BUS_BOOTSTRAP
elif [ "$BROKER" != mock ]; then
  BPORT=$(free_port)
  BROKER_LISTEN=127.0.0.1:$BPORT BROKER_DATA_DIR="$TMP/broker" BROKER_HTTP_LISTEN=127.0.0.1:$(free_port) \
    "$BIN/bus-broker" >"$TMP/broker.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null && break; sleep 0.1; done
  BOOTSTRAP=127.0.0.1:$BPORT
  mkdir -p "$TMP/topics"
  echo '{"topics": [{"name": "in", "partitions": 3}, {"name": "out", "partitions": 3}]}' >"$TMP/topics/t.json"
  BUS_BOOTSTRAP=$BOOTSTRAP DISPATCHER_URLS="" "$BIN/busctl" apply "$TMP/topics" >/dev/null
else
  "$BIN/bus-mock" --bootstrap-file "$TMP/bootstrap" --topic in:3 --topic out:3 >"$TMP/mock.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$TMP/bootstrap" ] && break; sleep 0.1; done
  BOOTSTRAP=$(cat "$TMP/bootstrap")
fi

BASE_PORT=$(free_port)
"$BIN/bench-baseline-202" "$BASE_PORT" "$THREADS" >"$TMP/baseline.log" 2>&1 &
PIDS+=($!)

mkdir -p "$TMP/bus"
cat >"$TMP/bus/bench.json" <<JSON
{"topics": [{"name": "in", "partitions": 3, "key": "/account_id"},
            {"name": "out", "partitions": 3, "key": "/topic"}],
 "routes": [
  {"name": "oneway", "topic": "in", "endpoint": "http://127.0.0.1:$BASE_PORT/deliver",
   "concurrency": $CONCURRENCY, "ordering": "key"},
  {"name": "stream", "topic": "in", "endpoint": "http://127.0.0.1:$BASE_PORT/deliver",
   "mode": "streaming", "output": "out", "concurrency": $CONCURRENCY, "ordering": "key"},
  {"name": "stream_eos", "topic": "in", "endpoint": "http://127.0.0.1:$BASE_PORT/deliver",
   "mode": "streaming", "output": "out", "concurrency": $CONCURRENCY, "ordering": "key",
   "exactly_once": true},
  {"name": "stream_plain", "topic": "in", "endpoint": "http://127.0.0.1:$BASE_PORT/deliver",
   "mode": "streaming", "output": "out", "concurrency": $CONCURRENCY, "ordering": "key"}]}
JSON

python3 - "$TMP" "$EVENTS" <<'PY'
import json, sys
tmp, n = sys.argv[1], int(sys.argv[2])
ev = lambda i: {"account_id": f"acc-{i % 1000}", "ip": "203.0.113.7",
                "ts": "2026-11-25T04:18:31Z", "session_id": f"s-{i}", "server": "login-1"}
open(f"{tmp}/event.json", "w").write(json.dumps(ev(1)))
with open(f"{tmp}/events.txt", "w") as f:
    for i in range(n):
        f.write(f"acc-{i % 1000}\t{json.dumps(ev(i))}\n")
PY

cat >"$TMP/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

# Metrics helpers: delivery rate and wait on a route's delivered counter; histogram quantiles
# of the delta between two dumps.
cat >"$TMP/metrics.py" <<'PY'
import re, sys, time, urllib.request
def fetch(url):
    return urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
def counter(text, name, route):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
def buckets(text, name, route):
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{") and f'route="{route}"' in line:
            le = re.search(r'le="([^"]+)"', line).group(1)
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out
def quantile(b0, b1, q):
    bounds = sorted(b1)
    d = [b1[b] - b0.get(b, 0.0) for b in bounds]
    total = d[-1]
    if total <= 0:
        return float("nan")
    prev_b, prev_c = 0.0, 0.0
    for b, c in zip(bounds, d):
        if c >= q * total:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * ((q * total - prev_c) / max(c - prev_c, 1e-9))
        prev_b, prev_c = b, c
    return bounds[-2]
def sample(url, route):
    try:
        return counter(fetch(url), "bus_dispatcher_delivered_total", route)
    except OSError:
        return 0.0  # not listening yet
def rate(url, route, target):
    """events/s from the first sample with a delivery to `target` deliveries, sampled every
    50 ms; exits with a message when the count stood still for 30 s (a stalled route, not a
    slow one)."""
    c0 = t0 = None
    last, last_t = -1.0, time.monotonic()
    while True:
        c, t = sample(url, route), time.monotonic()
        if c != last:
            last, last_t = c, t
        elif t - last_t >= 30:
            sys.exit(f"bench/dispatcher.sh: route {route} stalled at {c:.0f} of {target:.0f} deliveries")
        if c0 is None and c > 0:
            c0, t0 = c, t
        if c >= target:
            return (c - c0) / max(t - t0, 1e-6)
        time.sleep(0.05)
def committed(url):
    """{route: sum of its partitions' committed offsets} from GET /v1/routes."""
    import json
    req = urllib.request.Request(url + "/v1/routes",
                                 headers={"Authorization": "Bearer dev-admin-token"})
    try:
        routes = json.loads(urllib.request.urlopen(req, timeout=5).read())["routes"]
    except OSError:
        return {}
    return {r["name"]: sum(max(p["committed"], 0) for p in r["partitions"]) for r in routes}
def race(url, a, b, target):
    """Committed events/s of routes a and b over one window: from the first sample where
    either committed anything to the first where either committed target."""
    c0 = t0 = None
    last, last_t = None, time.monotonic()
    while True:
        c, t = committed(url), time.monotonic()
        ca, cb = c.get(a, 0), c.get(b, 0)
        if (ca, cb) != last:
            last, last_t = (ca, cb), t
        elif t - last_t >= 30:
            sys.exit(f"bench/dispatcher.sh: routes {a}, {b} stalled at {ca}, {cb}")
        if c0 is None and (ca > 0 or cb > 0):
            c0, t0 = (ca, cb), t
        if ca >= target or cb >= target:
            dt = max(t - t0, 1e-6)
            return (ca - c0[0]) / dt, (cb - c0[1]) / dt
        time.sleep(0.1)
cmd = sys.argv[1]
if cmd == "race":
    ra, rb = race(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    print(f"{ra:.0f} {rb:.0f}")
elif cmd == "rate":
    print(f"{rate(sys.argv[2], sys.argv[3], float(sys.argv[4])):.0f}")
elif cmd == "wait":  # until TARGET deliveries or TIMEOUT seconds
    deadline = time.monotonic() + float(sys.argv[5])
    while sample(sys.argv[2], sys.argv[3]) < float(sys.argv[4]) and time.monotonic() < deadline:
        time.sleep(0.1)
elif cmd == "dump":
    open(sys.argv[5], "w").write(fetch(sys.argv[2]))
elif cmd == "quantiles":
    t0, t1 = open(sys.argv[2]).read(), open(sys.argv[3]).read()
    b0, b1 = buckets(t0, sys.argv[4], sys.argv[5]), buckets(t1, sys.argv[4], sys.argv[5])
    print(f"{quantile(b0, b1, 0.5) * 1000:.1f} {quantile(b0, b1, 0.99) * 1000:.1f}")
PY

# delivery_rate URL ROUTE TARGET -> events/s (metrics.py rate). One sampler process polls
# /metrics every 50 ms from the moment the dispatcher is launched: a shell loop spawning python
# per sample cost the 2-CPU box a third of a core and started after /readyz, when much of the
# backlog could already be delivered.
delivery_rate() { python3 "$TMP/metrics.py" rate "$1" "$2" "$3"; }

start_dispatcher() { # ROUTES PORT -> pid in DISP_PID
  cat >"$TMP/dispatcher-$1.json" <<JSON
{"listen": "127.0.0.1:$2", "bootstrap": "$BOOTSTRAP", "bus_config_dir": "$TMP/bus",
 "bus_schema": "$ROOT/config/schema/bus.schema.json", "routes": "$1", "log.level": "warn"${DISPATCHER_EXTRA:+, $DISPATCHER_EXTRA}}
JSON
  "$BIN/bus-dispatcher" --config "$TMP/dispatcher-$1.json" >"$TMP/dispatcher-$1.log" 2>&1 &
  DISP_PID=$!
  PIDS+=($DISP_PID)
}


echo "broker: $BOOTSTRAP; $EVENTS events; route concurrency $CONCURRENCY; wrk -t$WRK_THREADS -c$CONNS -d$DURATION; $(nproc) CPUs"
for _ in $(seq 100); do # the baseline answers 202: wait until it answers at all
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$BASE_PORT/")" != 000 ] && break
  sleep 0.1
done
BODY=$TMP/event.json wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -s "$TMP/post.lua" \
  "http://127.0.0.1:$BASE_PORT/deliver" >"$TMP/wrk.txt" 2>&1
WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk.txt")

kcat -P -b "$BOOTSTRAP" -t in -K $'\t' -H ce-type=in -H ce-source=bench -H ce-id=bench \
     -X linger.ms=5 -l "$TMP/events.txt"

P1=$(free_port)
start_dispatcher oneway "$P1"
ONEWAY_EPS=$(delivery_rate "http://127.0.0.1:$P1" oneway "$EVENTS")
echo "one-way: wrk -> endpoint ${WRK_RPS} req/s; dispatcher -> endpoint ${ONEWAY_EPS} events/s;" \
     "ratio $(ratio "$ONEWAY_EPS" "$WRK_RPS") (target >= 0.50)"

# Latency at half the measured maximum: paced producing through kcat.
HALF=$(python3 -c "print(max(1, int(float('$ONEWAY_EPS') / 2)))")
python3 "$TMP/metrics.py" dump "http://127.0.0.1:$P1" x x "$TMP/m0.txt"
python3 - "$HALF" "$LAT_SECONDS" <<'PY' | kcat -P -b "$BOOTSTRAP" -t in -K $'\t' -H ce-type=in -H ce-id=bench -X linger.ms=1
import json, sys, time
rate, secs = int(sys.argv[1]), float(sys.argv[2])
start, sent, step = time.monotonic(), 0, 0.01
while time.monotonic() - start < secs:
    due = int((time.monotonic() - start) * rate)
    while sent < due:
        ev = {"account_id": f"acc-{sent % 1000}", "ip": "203.0.113.7", "ts": "2026-11-25T04:18:31Z"}
        sys.stdout.write(f"acc-{sent % 1000}\t{json.dumps(ev)}\n")
        sent += 1
    sys.stdout.flush()
    time.sleep(step)
PY
PACED=$(python3 -c "print(int($HALF * $LAT_SECONDS))")
TOTAL=$((EVENTS + PACED))
python3 "$TMP/metrics.py" wait "http://127.0.0.1:$P1" oneway "$(( TOTAL * 999 / 1000 ))" 30
python3 "$TMP/metrics.py" dump "http://127.0.0.1:$P1" x x "$TMP/m1.txt"
read -r P50 P99 < <(python3 "$TMP/metrics.py" quantiles "$TMP/m0.txt" "$TMP/m1.txt" bus_dispatcher_event_age_seconds oneway)
echo "latency at ${HALF} events/s (50% of max): p50 ${P50} ms, p99 ${P99} ms (Kafka timestamp -> delivered)"
kill -TERM "$DISP_PID"; wait "$DISP_PID" 2>/dev/null || true

P2=$(free_port)
IN_TOTAL=$(python3 - "$TMP" <<PY
print($EVENTS)
PY
)
start_dispatcher stream "$P2"
STREAM_EPS=$(delivery_rate "http://127.0.0.1:$P2" stream "$IN_TOTAL")
echo "streaming hop: dispatcher ${STREAM_EPS} events/s (consume, POST, produce, commit);" \
     "ratio $(ratio "$STREAM_EPS" "$WRK_RPS") (target >= 0.30)"
kill -TERM "$DISP_PID"; wait "$DISP_PID" 2>/dev/null || true

if [ "${EOS:-1}" = 1 ] && [ "$BROKER" != mock ]; then
  P3=$(free_port)
  start_dispatcher stream_plain,stream_eos "$P3"
  read -r PLAIN_EPS EOS_EPS < <(python3 "$TMP/metrics.py" race "http://127.0.0.1:$P3" stream_plain stream_eos "$IN_TOTAL")
  echo "exactly-once cost: side by side, streaming ${PLAIN_EPS} events/s, exactly-once" \
       "streaming ${EOS_EPS} events/s (committed); ratio $(ratio "$EOS_EPS" "$PLAIN_EPS")"
fi
