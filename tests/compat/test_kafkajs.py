"""kafkajs (npm, pinned in tests/compat/package.json, installed by make deps) against bus-broker:
the checks declared in tests/compat/compat.py, each a step of tests/compat/kafkajs.mjs."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from compat import HERE, PASSWORD, USER, run_client, run_json  # noqa: E402

ASAN = False  # the broker's C paths are run sanitized by tests/integration; keep make test short

SCRIPT = os.path.join(HERE, "kafkajs.mjs")


def _step(env, step, timeout=30, **args):
    if not shutil.which("node"):
        raise harness.Skip("node not installed (make deps)")
    if not os.path.exists(os.path.join(HERE, "node_modules", "kafkajs", "package.json")):
        raise harness.Skip("kafkajs not installed in tests/compat (make deps)")
    mult = harness.timeout_mult()
    args = dict(args, step=step, bootstrap=env["broker"].bootstrap, user=USER, password=PASSWORD,
                timeout_ms=int(timeout * 1000 * mult))
    args.setdefault("topic", "js-" + step)
    return run_json(["node", SCRIPT], args, timeout=timeout + 10)


def _kill_restart(env):
    n = 2000 if os.environ.get("COMPAT") == "full" else 500
    got = _step(env, "produce_n", topic="js-kill", n=n, tag="a", create=True)
    assert got == {"acked": n}, got
    env["broker"].kill_restart()
    got = _step(env, "count", topic="js-kill", n=n)
    assert got == {"records": n, "distinct": n}, got
    # The same client library goes on producing to the restarted broker.
    got = _step(env, "produce_n", topic="js-kill", n=100, tag="b")
    assert got == {"acked": 100}, got
    assert _step(env, "count", topic="js-kill", n=n + 100) == {"records": n + 100,
                                                               "distinct": n + 100}


CHECKS = {c: (lambda env, c=c: _step(env, c)) for c in
          ["sasl", "admin", "produce", "group_resume", "seek", "offsets_by_time", "rebalance",
           "offsets_by_time_exact", "reset_offsets", "alter_configs", "delete_groups",
           "delete_records", "transactions"]}
for c in ("offsets_by_time_exact", "reset_offsets", "alter_configs", "delete_groups",
          "delete_records", "transactions"):  # expected to fail: do not wait long for it
    CHECKS[c] = (lambda env, c=c: _step(env, c, timeout=10))
CHECKS["rebalance"] = lambda env: _step(env, "rebalance", timeout=60)
CHECKS["kill_restart"] = _kill_restart


def test_kafkajs():
    run_client("kafkajs", CHECKS)
