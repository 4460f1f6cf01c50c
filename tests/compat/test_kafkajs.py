"""kafkajs (npm, pinned in tests/compat/package.json, installed by make deps) against bus-broker:
the checks declared in tests/compat/compat.py, each a step of tests/compat/kafkajs.mjs."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from compat import HERE, PASSWORD, USER, checks_of, run_client, run_json  # noqa: E402

ASAN = False  # the broker's C paths run sanitized in tests/integration; keep make test short


def _step(env, step, timeout=30, **args):
    if not shutil.which("node"):
        raise harness.Skip("node not installed (make deps)")
    if not os.path.exists(os.path.join(HERE, "node_modules", "kafkajs", "package.json")):
        raise harness.Skip("kafkajs not installed in tests/compat (make deps)")
    args = dict(args, step=step, bootstrap=env["broker"].bootstrap, user=USER, password=PASSWORD,
                timeout_ms=int(timeout * 1000 * harness.timeout_mult()))
    args.setdefault("topic", "js-" + step)
    return run_json(["node", os.path.join(HERE, "kafkajs.mjs")], args, timeout=timeout + 10)


def test_kafkajs():
    run_client("kafkajs", checks_of("kafkajs", _step))
