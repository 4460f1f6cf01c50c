#!/usr/bin/env bash
# make bench: runs every bench/*.sh (except this one) in name order and prints their results.
# Benchmarks are not tests: they print figures and ratios against their targets; a bench
# exits non-zero only when it could not run. BIN (default bin) selects the binaries.
set -uo pipefail
cd "$(dirname "$0")/.."
# Benches run in development mode (docs/security.md): development secrets are accepted.
export BUS_ENV=${BUS_ENV:-development}
status=0
for b in bench/*.sh; do
  [ "$(basename "$b")" = run.sh ] && continue
  echo "=== $b"
  if ! bash "$b"; then
    echo "=== $b could not run" >&2
    status=1
  fi
done
exit $status
