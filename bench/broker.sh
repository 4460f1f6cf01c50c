#!/usr/bin/env bash
# bench/broker.sh - the embedded broker's speed against two yardsticks, in one run:
#
#  1. librdkafka's mock cluster (bin/bus-mock): the same librdkafka producer (idempotent,
#     acks=all, 200-byte messages) and consumer (bench/kclient: bus-kclient bench-produce /
#     bench-consume) against bus-broker and against bus-mock, best of ROUNDS (3) runs each.
#     Target: ratio >= 1.0 for both produce and consume. The mock keeps only ~5 MB per
#     partition, so this part uses MOCK_MESSAGES (150000) over 16 partitions.
#  2. dd: sequential write bandwidth of the same disk with the same fsync policy
#     (always: dd oflag=dsync, 1 MiB writes, each synced; interval/never: dd conv=fdatasync)
#     versus the log bytes bus-broker wrote per second while producing MESSAGES (500000)
#     messages. Target: ratio >= 0.70.
#
# Knobs: BIN (bin), FSYNC (always|interval|never, default always), MESSAGES, MOCK_MESSAGES,
# SIZE (200), BENCH_DIR (directory on the disk to measure, default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
FSYNC=${FSYNC:-always}
MESSAGES=${MESSAGES:-500000}
MOCK_MESSAGES=${MOCK_MESSAGES:-150000}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-200}
BENCH_DIR=${BENCH_DIR:-/tmp}

for b in bus-broker bus-kclient; do
  [ -x "$BIN/$b" ] || { echo "bench/broker.sh: $BIN/$b is not built (make)" >&2; exit 1; }
done
WORK=$(mktemp -d -p "$BENCH_DIR" bench-broker.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench/broker.sh: nothing listens on port $1" >&2
  exit 1
}
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

start_broker() { # data_dir -> sets BOOT
  local port; port=$(free_port)
  BROKER_LISTEN=127.0.0.1:$port BROKER_DATA_DIR=$1 BROKER_FSYNC=$FSYNC BROKER_HTTP_LISTEN= \
    "$BIN/bus-broker" >"$WORK/broker.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
  BOOT=127.0.0.1:$port
}

echo "bus-broker, fsync=$FSYNC, ${SIZE}-byte messages, idempotent producer with acks=all"

# --- 1. against the mock cluster ---
# best BOOT: produce into ROUNDS fresh topics and consume the first one ROUNDS times; sets
# P_MSGS P_MB C_MSGS C_MB to the best round of each.
best() {
  local boot=$1 r m mb
  P_MSGS=0; P_MB=0; C_MSGS=0; C_MB=0
  for r in $(seq 1 "$ROUNDS"); do
    read -r m mb < <("$BIN/bus-kclient" bench-produce "$boot" "cmp$r" "$MOCK_MESSAGES" "$SIZE")
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$m" "$P_MSGS"; then P_MSGS=$m; P_MB=$mb; fi
  done
  for r in $(seq 1 "$ROUNDS"); do
    read -r m mb < <("$BIN/bus-kclient" bench-consume "$boot" cmp1 "$MOCK_MESSAGES")
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$m" "$C_MSGS"; then C_MSGS=$m; C_MB=$mb; fi
  done
}
start_broker "$WORK/data-cmp"
for r in $(seq 1 "$ROUNDS"); do "$BIN/bus-kclient" create "$BOOT" "cmp$r" 16 >/dev/null; done
best "$BOOT"
EP_MSGS=$P_MSGS; EC_MSGS=$C_MSGS
printf '%-34s produce %9.0f msg/s %7.1f MB/s   consume %9.0f msg/s %7.1f MB/s\n' \
  "bus-broker ($MOCK_MESSAGES msgs)" "$P_MSGS" "$P_MB" "$C_MSGS" "$C_MB"
if [ -x "$BIN/bus-mock" ]; then
  TOPIC_ARGS=()
  for r in $(seq 1 "$ROUNDS"); do TOPIC_ARGS+=(--topic "cmp$r:16"); done
  "$BIN/bus-mock" --bootstrap-file "$WORK/mock.boot" "${TOPIC_ARGS[@]}" >"$WORK/mock.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/mock.boot" ] && break; sleep 0.1; done
  best "$(cat "$WORK/mock.boot")"
  printf '%-34s produce %9.0f msg/s %7.1f MB/s   consume %9.0f msg/s %7.1f MB/s\n' \
    "bus-mock ($MOCK_MESSAGES msgs)" "$P_MSGS" "$P_MB" "$C_MSGS" "$C_MB"
  echo "ratio broker/mock: produce $(ratio "$EP_MSGS" "$P_MSGS")  consume $(ratio "$EC_MSGS" "$C_MSGS")   (target >= 1.00)"
else
  echo "bus-mock not built: mock comparison skipped"
fi

# --- 2. against dd on the same disk ---
"$BIN/bus-kclient" create "$BOOT" seq 1 >/dev/null
T0=$(date +%s.%N)
read -r SP_MSGS SP_MB < <("$BIN/bus-kclient" bench-produce "$BOOT" seq "$MESSAGES" "$SIZE")
T1=$(date +%s.%N)
LOG_BYTES=$(du -sb "$WORK/data-cmp/seq-0" | cut -f1)
LOG_MB=$(python3 -c "import sys; print(f'{float(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2]))/1e6:.1f}')" "$LOG_BYTES" "$T0" "$T1")
case "$FSYNC" in
  always) DD_FLAGS="oflag=dsync" ;;
  *) DD_FLAGS="conv=fdatasync" ;;
esac
DD_COUNT=$(( LOG_BYTES / 1048576 + 1 ))
DD_OUT=$(dd if=/dev/zero of="$WORK/dd.bin" bs=1M count="$DD_COUNT" $DD_FLAGS 2>&1 | tail -1)
DD_MB=$(echo "$DD_OUT" | python3 -c "import re,sys; l=sys.stdin.read(); b=int(l.split()[0]); s=float(re.search(r'copied, ([0-9.e-]+) s', l).group(1)); print(f'{b/s/1e6:.1f}')")
printf '%-34s produce %9.0f msg/s %7.1f MB/s payload, %7.1f MB/s written to the log\n' \
  "bus-broker ($MESSAGES msgs, 1 part.)" "$SP_MSGS" "$SP_MB" "$LOG_MB"
echo "dd bs=1M count=$DD_COUNT $DD_FLAGS: $DD_MB MB/s"
echo "ratio broker log bandwidth / dd: $(ratio "$LOG_MB" "$DD_MB")   (target >= 0.70)"
