# bench/lib.sh - the shell helpers every bench/*.sh shares. Source it from the repository root
# (the benches cd there first):
#
#     . bench/lib.sh
#     TMP=$(mktemp -d /tmp/bench-x.XXXXXX); BENCH_DIRS+=("$TMP")   # removed on exit
#     "$BIN/bus-broker" ... & PIDS+=($!)                            # stopped on exit
#     port=$(free_port)
#     echo "ratio $(ratio "$ours" "$yardstick")"
#
# free_port    a free port chosen as the test harness chooses it (tests/lib/harness.py
#              free_port): below the kernel's ephemeral range, so that nothing binding port 0 or
#              connecting out can take it before the bench's process binds it (the race of
#              binding port 0 and handing the number on), and never the same port twice in one
#              bench run.
# ratio A B    A/B with two decimals; n/a when B is 0.
# better A B   exit status 0 when A > B (decimal numbers).
# cleanup      (on EXIT) stops the processes in PIDS, last started first (SIGTERM, then waits:
#              a dispatcher stops before its broker, or its shutdown waits for it), removes the
#              directories in BENCH_DIRS.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIDS=()
BENCH_DIRS=()
# The ports this bench run was given: each free_port runs in a subshell of its own.
BENCH_PORTS_FILE=$(mktemp /tmp/bench-ports.XXXXXX)

free_port() {
  python3 - "$BENCH_ROOT/tests/lib" "$BENCH_PORTS_FILE" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import harness
with open(sys.argv[2]) as f:
    given = {int(x) for x in f.read().split()}
port = harness.free_port(exclude=given)
with open(sys.argv[2], "a") as f:
    f.write(f"{port}\n")
print(port)
PY
}

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

better() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$1" "$2"; }

cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  for d in "${BENCH_DIRS[@]}"; do rm -rf "$d"; done
  rm -f "$BENCH_PORTS_FILE"
}
trap cleanup EXIT
