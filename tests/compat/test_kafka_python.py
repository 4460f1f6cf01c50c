"""kafka-python (Debian, installed by make deps) against bus-broker: the checks declared in
tests/compat/compat.py, each a step of tests/compat/kafka_python_steps.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compat import checks_of, python_steps, run_client  # noqa: E402

ASAN = False  # the broker's C paths run sanitized in tests/integration; keep make test short


def test_kafka_python():
    steps = python_steps("kafka_python_steps.py", "kafka-python")
    run_client("kafka-python", checks_of("kafka-python", steps))
