"""--check-config checks what a real start would: an unknown librdkafka property is refused
there, naming it, instead of passing the check and stopping the start."""
import os
import subprocess

import harness


def check(binary, config=None, env=None):
    full = dict(os.environ, BUS_ENV="development")
    full.update(env or {})
    argv = [harness.bin_path(binary), "--check-config"]
    if config is not None:
        path = harness.ctx().write_json(f"{binary}-check.json", config)
        argv += ["--config", path]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=full,
                          cwd=harness.ROOT)


def test_unknown_kafka_property_fails_the_check_from_file_and_environment():
    for binary, prefix in (("bus-publisher", "PUBLISHER"), ("bus-dispatcher", "DISPATCHER")):
        ok = check(binary, {"kafka.linger.ms": 5})
        assert ok.returncode == 0 and "configuration OK" in ok.stdout, (binary, ok.stderr)
        bad = check(binary, {"kafka.lingerr.ms": 5})
        assert bad.returncode == 2, (binary, bad.returncode)
        assert "kafka.lingerr.ms" in bad.stderr + bad.stdout, bad.stderr
        bad_env = check(binary, env={f"{prefix}_KAFKA_NO_SUCH_PROP": "1"})
        assert bad_env.returncode == 2 and "no.such.prop" in bad_env.stderr + bad_env.stdout
        bad_value = check(binary, {"kafka.acks": "sometimes"})
        assert bad_value.returncode == 2 and "kafka.acks" in bad_value.stderr + bad_value.stdout
