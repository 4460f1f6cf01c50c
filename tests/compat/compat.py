"""The client compatibility suite's declarations, runner and docs table (docs/broker.md, "Client
compatibility").

Every third-party client (installed by `make deps`: kafkajs from tests/compat/package.json,
Debian's python3-confluent-kafka, python3-kafka and kcat) is run against a fresh bus-broker
(SASL/SCRAM required, as the product runs it) by tests/compat/test_<client>.py. What each client
is expected to do is declared here, once, in EXPECT; the tests run every declared check and fail
when an outcome differs from its declaration (a check expected to fail that passes fails too:
flip it to OK here), and the table in docs/broker.md is generated from EXPECT
(`/usr/bin/python3 tests/compat/compat.py --write`; test_table checks it is up to date). So a
row of the table is true because a test says so.

`make test` runs the short form (the checks not in FULL_ONLY: a few seconds per client);
`make compat` (COMPAT=full) runs every check, including the slow ones (groups of two with a
rebalance, SIGKILL and restart, kafkajs's resetOffsets). A check the broker cannot pass yet is
declared xfail() (the suite fails once it passes, until it is declared OK); none is now.
"""
import glob
import json
import os
import re
import struct
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402

FULL = os.environ.get("COMPAT") == "full"
PYTHON = "/usr/bin/python3"  # Debian's, where python3-kafka and python3-confluent-kafka live

# What each check does (the "what was run" column).
CHECKS = {
    "sasl": "SASL/SCRAM authentication",
    "admin": "create topics (with a config), list, describe (metadata and configs), add "
             "partitions, delete",
    "produce": "idempotent producer (acks=all), gzip (seen compressed in the broker's log), keys "
               "and headers; consumed back intact",
    "group_resume": "consumer group: commit, close, a new consumer resumes from the committed "
                    "offsets",
    "seek": "seek to an offset",
    "offsets_by_time": "offsets by time (timestamps in separate batches)",
    "rebalance": "consumer group of two with a rebalance: every record read once",
    "kill_restart": "broker SIGKILLed after 2,000 acknowledged writes, restarted: every record "
                    "counted, 100 more produced and counted",
    "offsets_by_time_exact": "offsets by time at record precision, and -1 past the end",
    "reset_offsets": "commit offsets -1/-2 (reset to latest/earliest)",
    "alter_configs": "alter a topic's configs (retention.ms)",
    "delete_groups": "delete a consumer group",
    "delete_records": "delete records before an offset",
    "transactions": "transactional producer (commit) and read_committed consumer",
}

OK = "ok"
NOT_YET = "not yet in the broker"  # the reason of every expected failure the broker will fix


def xfail(reason=NOT_YET):
    return ("xfail", reason)


def unsupported(reason):
    return ("unsupported", reason)


# Checks given 60 s instead of 30 (kafkajs's resetOffsets takes ~5 s a call, see kafkajs.mjs).
SLOW = {"rebalance", "reset_offsets"}

# Slow checks, run by `make compat` only: groups of two with a rebalance and the SIGKILL and
# restart (1-4 s per client each, which together would take the short form past ~30 s), and
# reset_offsets (~16 s for kafkajs, whose every resetOffsets/resolve waits out a 5 s fetch).
# The other checks take under 2 s per client and run in `make test` too.
FULL_ONLY = {"rebalance", "kill_restart", "reset_offsets"}

CLIENTS = {
    "kafkajs": {"version": "2.2.4", "source": "npm (tests/compat/package.json)"},
    "confluent-kafka": {"version": "1.7.0 (librdkafka 2.0.2)",
                        "source": "Debian python3-confluent-kafka"},
    "kafka-python": {"version": "2.0.2", "source": "Debian python3-kafka"},
    "kcat": {"version": "1.7.1 (librdkafka 2.0.2)", "source": "Debian kcat"},
}

EXPECT = {
    "kafkajs": {
        "sasl": OK, "admin": OK, "produce": OK, "group_resume": OK, "seek": OK,
        "offsets_by_time": OK, "rebalance": OK, "kill_restart": OK,
        "offsets_by_time_exact": OK, "reset_offsets": OK, "alter_configs": OK,
        "delete_groups": OK, "delete_records": OK, "transactions": OK,
    },
    "confluent-kafka": {
        "sasl": OK, "admin": OK, "produce": OK, "group_resume": OK, "seek": OK,
        "offsets_by_time": OK, "rebalance": OK, "kill_restart": OK,
        "offsets_by_time_exact": OK,
        "reset_offsets": unsupported("librdkafka refuses to commit the logical offsets -1/-2 "
                                     "itself (\"No offset stored\")"),
        "alter_configs": OK,
        "delete_groups": unsupported("no delete_consumer_groups in 1.7.0's AdminClient"),
        "delete_records": unsupported("no delete_records in 1.7.0's AdminClient"),
        "transactions": OK,
    },
    "kafka-python": {
        "sasl": OK, "admin": OK,
        "produce": OK,  # without idempotence: see the note in test_kafka_python.py
        "group_resume": OK, "seek": OK, "offsets_by_time": OK, "rebalance": OK,
        "kill_restart": OK,
        "offsets_by_time_exact": OK, "reset_offsets": OK, "alter_configs": OK,
        "delete_groups": OK,
        "delete_records": unsupported("no delete_records in 2.0.2's KafkaAdminClient"),
        "transactions": unsupported("2.0.2 has no idempotent or transactional producer"),
    },
    "kcat": {
        "sasl": OK,
        "admin": unsupported("kcat has no admin commands (metadata listing -L is run)"),
        "produce": OK, "group_resume": OK, "seek": OK, "offsets_by_time": OK,
        "rebalance": OK, "kill_restart": OK,
        "offsets_by_time_exact": OK,
        "reset_offsets": unsupported("kcat cannot commit arbitrary offsets"),
        "alter_configs": unsupported("kcat has no admin commands"),
        "delete_groups": unsupported("kcat has no admin commands"),
        "delete_records": unsupported("kcat has no admin commands"),
        "transactions": unsupported("kcat has no transactional producer"),
    },
}

NOTES = {
    "kafkajs": {"offsets_by_time_exact": "precision only, in a gzip batch: kafkajs turns -1 into "
                                         "the log end",
                "reset_offsets": "resetOffsets, read back, then fetchOffsets with "
                                 "resolveOffsets; a consumer reads a committed -1/-2 as none"},
    "kafka-python": {"produce": "acks=all, not idempotent: 2.0.2 has no idempotent producer",
                     "rebalance": "one thread per member",
                     "reset_offsets": "read back; 2.0.2's consumer reads a committed -1/-2 as "
                                      "none and applies auto_offset_reset, as Kafka's Java "
                                      "consumer does"},
    "kcat": {"produce": "-X enable.idempotence=true -z gzip -H",
             "offsets_by_time": "-o s@TS",
             "offsets_by_time_exact": "kcat -Q: a record's own timestamp and -1 past the "
                                      "end; kcat cannot set record timestamps",
             "rebalance": "two kcat -G processes"},
}

USER, PASSWORD = "compat", "compat-password-1"


# ---- the broker under test ----

class Broker:
    """bus-broker with a fresh data dir and SASL/SCRAM required (user USER, no ACL file: every
    principal may do everything); restart() keeps the port and the data."""

    def __init__(self, ctx, topics=None):
        self.ctx = ctx
        p = subprocess.run([harness.bin_path("bus-broker"), "--scram-user", USER, "4096"],
                           input=(PASSWORD + "\n").encode(), capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        users = ctx.write_json("users.json", {"users": json.loads(p.stdout)})
        self.port = harness.free_port()
        self.cfg = {"listen": f"127.0.0.1:{self.port}", "data_dir": ctx.path("data", "x")[:-2],
                    "http.listen": "", "sasl.users_file": users, "sasl.required": True,
                    "group_initial_rebalance_delay_ms": 0}
        if topics:
            self.cfg["topics"] = ",".join(f"{n}:{p}" for n, p in topics.items())
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.start()

    def start(self):
        self.proc = self.ctx.start("bus-broker", config=self.cfg, http=False)
        harness.wait_for(lambda: harness.tcp_open(self.port) or harness._raise_exit(self.proc),
                         10, what="broker port")

    def kill_restart(self):
        self.proc.kill()
        self.start()


def kcat_sasl(mech="SCRAM-SHA-256"):
    return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", f"sasl.mechanisms={mech}",
            "-X", f"sasl.username={USER}", "-X", f"sasl.password={PASSWORD}"]


def run_json(argv, args, timeout=60):
    """Runs one step of a client script: argv + [json(args)]; the script prints one JSON value
    (its result) as its last line, or fails with its error on stderr."""
    try:
        p = subprocess.run(list(argv) + [json.dumps(args)], capture_output=True,
                           timeout=timeout * harness.timeout_mult(), cwd=HERE)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv[-1]} {args.get('step')}: timed out after {e.timeout:.0f} s"
                             f"\n{(e.stderr or b'').decode(errors='replace')[-1500:]}")
    if p.returncode != 0:
        raise AssertionError(f"{argv[-1]} {args.get('step')} failed (exit {p.returncode}): "
                             + p.stderr.decode(errors="replace")[-2000:])
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    assert lines, f"{argv} printed nothing; stderr: {p.stderr.decode()[-1000:]}"
    return json.loads(lines[-1])


def kill_restart_check(step, topic):
    """The kill_restart check for a client whose steps produce_n (acks=all; {"acked": n}) and
    count ({"records", "distinct"}) are run by step(env, name, **args)."""
    def check(env):
        n = 2000
        got = step(env, "produce_n", topic=topic, n=n, tag="a", create=True)
        assert got == {"acked": n}, got
        env["broker"].kill_restart()
        got = step(env, "count", topic=topic, n=n)
        assert got == {"records": n, "distinct": n}, got
        # The client goes on producing to the restarted broker.
        got = step(env, "produce_n", topic=topic, n=100, tag="b")
        assert got == {"acked": 100}, got
        got = step(env, "count", topic=topic, n=n + 100)
        assert got == {"records": n + 100, "distinct": n + 100}, got
    return check


def python_steps(script, client):
    """step(env, name, timeout=30, **args) running tests/compat/<script> in Debian's python3."""
    def step(env, name, timeout=30, **args):
        mod = {"confluent-kafka": "confluent_kafka", "kafka-python": "kafka"}[client]
        if subprocess.run([PYTHON, "-c", f"import {mod}"], capture_output=True).returncode:
            raise harness.Skip(f"{client} not installed (make deps)")
        args = dict(args, step=name, bootstrap=env["broker"].bootstrap, user=USER,
                    password=PASSWORD, timeout_s=timeout * harness.timeout_mult())
        args.setdefault("topic", f"{mod}-{name}")
        return run_json([PYTHON, os.path.join(HERE, script)], args, timeout=timeout + 10)
    return step


def checks_of(client, step):
    """{check: fn(env)} for every runnable check of client: its step of the same name (a short
    deadline for those expected to fail), kill_restart through produce_n and count."""
    out = {}
    for c, e in EXPECT[client].items():
        if e == OK:
            out[c] = (lambda env, c=c: step(env, c, timeout=60 if c in SLOW else 30))
        elif e[0] == "xfail":
            out[c] = (lambda env, c=c: step(env, c, timeout=10))
    if "kill_restart" in out:
        out["kill_restart"] = kill_restart_check(step, f"{client}-kill")
    return out


def gzip_batches(env, topic_part="produce"):
    """The number of gzip batches (attributes bits 0-2 = 1) in the broker's logs of the topics
    whose name contains topic_part: the produce check's gzip reached the broker compressed
    (librdkafka < 2.8 silently sent uncompressed when ApiVersions left out Produce v2)."""
    n = 0
    for path in glob.glob(os.path.join(env["broker"].cfg["data_dir"], f"*{topic_part}*-*",
                                       "*.log")):
        with open(path, "rb") as f:
            log = f.read()
        pos = 0
        while pos + 61 <= len(log):
            n += struct.unpack(">h", log[pos + 21:pos + 23])[0] & 7 == 1
            pos += 12 + struct.unpack(">i", log[pos + 8:pos + 12])[0]
    return n


# ---- the runner ----

def run_client(client, impl, ctx=None):
    """Runs client's declared checks (the short form unless COMPAT=full) with impl[check](env),
    env = {"broker": Broker, "ctx": ctx}. Fails unless every outcome matches EXPECT."""
    ctx = ctx or harness.ctx()
    expect = EXPECT[client]
    runnable = {c for c, e in expect.items() if e == OK or e[0] == "xfail"}
    assert set(impl) == runnable, ("tests/compat: the checks implemented for " + client +
                                   " differ from EXPECT: " + str(set(impl) ^ runnable))
    broker = Broker(ctx)
    env = {"broker": broker, "ctx": ctx}
    problems = []
    for check in CHECKS:
        if check not in runnable or (check in FULL_ONLY and not FULL):
            continue
        t0 = time.monotonic()
        try:
            impl[check](env)
            if check == "produce":
                assert gzip_batches(env) > 0, "no gzip batch reached the broker"
            outcome, detail = "ok", ""
        except (AssertionError, subprocess.SubprocessError, OSError):
            outcome, detail = "failed", traceback.format_exc().strip()
        if not broker.proc.alive():  # a check must never crash the broker
            problems.append(f"{check}: the broker died:\n{broker.proc.log()[-2000:]}")
            broker.start()
        want = expect[check]
        took = f"{time.monotonic() - t0:.1f}s"
        if want == OK and outcome != "ok":
            problems.append(f"{check} ({took}): expected to work, failed: {detail[-1500:]}")
        elif want != OK and outcome == "ok":
            problems.append(f"{check} ({took}): expected to fail ({want[1]}) but works: "
                            "mark it OK in tests/compat/compat.py EXPECT and run "
                            "tests/compat/compat.py --write")
        else:
            why = "" if want == OK else ": " + detail.splitlines()[-1][:160]
            print(f"    {client}: {check}: {outcome if want == OK else 'xfail'} ({took}){why}",
                  flush=True)
    assert not problems, "\n".join(problems)


# ---- the docs table ----

BEGIN = "<!-- compat-table: generated by tests/compat/compat.py --write -->"
END = "<!-- /compat-table -->"


def table():
    rows = ["| client | version | what was run | result |", "|---|---|---|---|"]
    for client, info in CLIENTS.items():
        first = True
        for check, what in CHECKS.items():
            e = EXPECT[client][check]
            if e == OK:
                result = "works"
            elif e[0] == "xfail":
                result = f"fails: {e[1]} (expected failure)"
            else:
                result = f"not supported by the client: {e[1]}"
            note = NOTES.get(client, {}).get(check)
            if note:
                what = f"{what} ({note})"
            if check in FULL_ONLY:
                what += " [make compat]"
            name = f"{client}" if first else ""
            ver = f"{info['version']}, {info['source']}" if first else ""
            rows.append(f"| {name} | {ver} | {what} | {result} |")
            first = False
    return "\n".join(rows) + "\n"


def docs_path():
    return os.path.join(ROOT, "docs", "broker.md")


def docs_block(text):
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    return m.group(1) if m else None


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.stdout.write(table())
        sys.exit(0)
    text = open(docs_path()).read()
    if docs_block(text) is None:
        sys.exit(f"{docs_path()}: no {BEGIN} ... {END} block")
    text = re.sub(re.escape(BEGIN) + r"\n.*?" + re.escape(END),
                  lambda _: BEGIN + "\n" + table() + END, text, flags=re.S)
    open(docs_path(), "w").write(text)
