"""busctl: validate agrees with an independent validator (Debian's python3-jsonschema) on every
config/bus file and on broken variants; plan/apply against a broker and a running dispatcher;
tail; dlq replay delivers dead letters through their route again and nowhere else."""
import copy
import glob
import json
import os
import subprocess
import tempfile

import importlib.util

import jsonschema

import harness

# the dispatcher tests' helpers (sinks, producing with kcat, bus configs)
_spec = importlib.util.spec_from_file_location(
    "dispatcher_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "test_dispatcher.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

BROKERS = ["mock", "embedded"]
ROOT = harness.ROOT
SCHEMA_PATH = os.path.join(ROOT, "config", "schema", "bus.schema.json")


def busctl(*args, env=None, timeout=30):
    path = harness.bin_path("busctl")
    if not os.path.exists(path):
        raise harness.Skip("busctl not built")
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([path] + list(args), capture_output=True, text=True, cwd=ROOT, env=e,
                       timeout=timeout * harness.timeout_mult())
    return p.returncode, p.stdout, p.stderr


def jsonschema_ok(doc):
    schema = json.load(open(SCHEMA_PATH))
    v = jsonschema.Draft202012Validator(schema)
    return not list(v.iter_errors(doc))


def busctl_ok(doc, name="x.json"):
    ctx = harness.ctx()
    # a directory of its own: busctl validates every file of the directory it is given (one
    # shared with the previous variant's file would fail for that file's reason)
    d = ctx.path("v", str(len(os.listdir(ctx.path("v", "x")[:-2]))), name)
    with open(d, "w") as f:
        json.dump(doc, f)
    rc, out, err = busctl("validate", os.path.dirname(d))
    return rc == 0, err


# test_busctl runs once per broker, but these two need none.
@harness.one_broker
def test_repo_configs_valid_for_both_validators():
    files = sorted(glob.glob(os.path.join(ROOT, "config", "bus", "*.json")))
    assert files, "no config/bus files"
    for f in files:
        doc = json.load(open(f))
        assert jsonschema_ok(doc), f"{f}: python3-jsonschema rejects it"
    rc, out, err = busctl("validate", os.path.join(ROOT, "config", "bus"))
    assert rc == 0, err
    assert "valid" in out


@harness.one_broker
def test_validators_agree_on_broken_variants():
    base = {"topics": [{"name": "a", "partitions": 3, "key": "/k"}, {"name": "b"}],
            "routes": [{"name": "r", "topic": "a", "endpoint": "http://127.0.0.1:1/x",
                        "mode": "streaming", "output": "b"}]}
    assert jsonschema_ok(base)
    ok, err = busctl_ok(base)
    assert ok, err

    def variant(fn):
        d = copy.deepcopy(base)
        fn(d)
        return d
    schema_broken = [
        variant(lambda d: d["routes"][0].update(endpoint="ftp://x")),
        variant(lambda d: d["routes"][0].update(concurrency=0)),
        variant(lambda d: d["routes"][0].update(ordering="random")),
        variant(lambda d: d["routes"][0].update(unknown_key=1)),
        variant(lambda d: d["topics"][0].update(partitions="3")),
        variant(lambda d: d["routes"][0].pop("endpoint")),
        variant(lambda d: d["routes"][0].update(retry={"initial_ms": -1})),
        variant(lambda d: d.update(extra=[])),
    ]
    for i, doc in enumerate(schema_broken):
        assert not jsonschema_ok(doc), f"variant {i}: python3-jsonschema accepts it"
        ok, err = busctl_ok(doc, "team.json")
        assert not ok, f"variant {i}: busctl accepts it"
        line = err.strip().splitlines()[0]
        # "file: /json/pointer: message"
        assert line.split(": ")[0].endswith("team.json") and line.split(": ")[1].startswith("/"), \
            line
    # valid for the schema, wrong in meaning: only busctl sees it
    meaning_broken = [
        variant(lambda d: d["routes"][0].update(topic="nope")),
        variant(lambda d: d["routes"][0].update(output="nope")),
        variant(lambda d: d["routes"].append(copy.deepcopy(d["routes"][0]))),
        variant(lambda d: d["routes"].append({"name": "back", "topic": "b", "mode": "streaming",
                                              "output": "a",
                                              "endpoint": "http://127.0.0.1:1/y"})),
        # exactly_once is for streaming routes only (a one-way route produces nothing)
        variant(lambda d: (d["routes"][0].update(mode="one-way", exactly_once=True),
                           d["routes"][0].pop("output"))),
    ]
    for i, doc in enumerate(meaning_broken):
        assert jsonschema_ok(doc), f"meaning variant {i}"
        ok, err = busctl_ok(doc)
        assert not ok, f"meaning variant {i}: busctl accepts it"
    ok, err = busctl_ok(variant(lambda d: d["routes"][0].pop("mode") and
                                d["routes"][0].update(exactly_once=True)))
    assert not ok and "/routes/0/exactly_once: " in err and "only for streaming" in err, err
    ok, err = busctl_ok(variant(lambda d: d["routes"][0].update(exactly_once=True)))
    assert ok, err


def _setup(routes, topics):
    ctx = harness.ctx()
    broker = td.broker_with({t["name"]: t.get("partitions", 3) for t in topics})
    d = td.bus_config(topics, routes)
    return ctx, broker, d


def test_plan_and_apply_reload_dispatcher():
    ctx = harness.ctx()
    sink_a, sink_b = td.Sink(), td.Sink()
    ua, ub = ctx.serve(sink_a)[0], ctx.serve(sink_b)[0]
    topics = [td.topic("t", 3)]
    ctx, broker, d = _setup([td.route("ra", "t", ua)], topics)
    disp = td.start_dispatcher(broker, d)
    env = {"BUS_BOOTSTRAP": broker.bootstrap, "DISPATCHER_URLS": disp.url,
           "BUS_SCHEMA": td.SCHEMA}
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0, err
    assert "no changes" in out, out
    # the team adds a route and a topic
    td.bus_config(topics + [td.topic("newtopic", 2)],
                  [td.route("ra", "t", ua), td.route("rb", "t", ub)])
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0, err
    assert "+ route rb" in out and "+ topic newtopic" in out, out
    rc, out, err = busctl("apply", d, env=env)
    assert rc == 0, out + err
    if broker.kind == "mock":
        assert "mock cluster" in out and "not created" in out, out
    assert "reloaded" in out
    evs = td.events(30)
    td.produce(broker, "t", evs)
    td.wait_all(sink_b, [e["id"] for e in evs])
    td.wait_all(sink_a, [e["id"] for e in evs])
    rc, out, err = busctl("lag", env=env)
    assert rc == 0 and "rb" in out, out + err


def test_tail_prints_events():
    ctx, broker, d = _setup([], [td.topic("t", 1)])
    evs = td.events(3)
    td.produce(broker, "t", evs)
    rc, out, err = busctl("tail", "t", "-n", "3", "--from-beginning",
                          env={"BUS_BOOTSTRAP": broker.bootstrap})
    assert rc == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["value"]["id"] for x in lines] == ["e0", "e1", "e2"]  # one partition: in order
    assert lines[0]["headers"]["ce-type"] == "t" and lines[0]["key"] == "acc-0"


def test_dlq_replay_through_the_route_only():
    ctx = harness.ctx()
    state = {"reject": True}

    def answer(ev, h):
        if state["reject"] and ev["seq"] % 4 == 0:
            return 400, {"error": "not yet"}, None
        return 200, None, None
    picky, other = td.Sink(answer), td.Sink()
    up, uo = ctx.serve(picky)[0], ctx.serve(other)[0]
    topics = [td.topic("t", 2), td.topic("t.dlq", 1)]
    ctx, broker, d = _setup([td.route("picky", "t", up, dead_letter="t.dlq"),
                             td.route("other", "t", uo)], topics)
    disp = td.start_dispatcher(broker, d)
    evs = td.events(40)
    td.produce(broker, "t", evs)
    ids = [e["id"] for e in evs]
    td.wait_all(other, ids)
    rejected = [e["id"] for e in evs if e["seq"] % 4 == 0]
    harness.wait_for(lambda: td.metric(disp, "bus_dispatcher_dead_lettered_total") == 10, 20,
                     what="10 dead letters")
    assert picky.missing(ids) == rejected
    state["reject"] = False
    rc, out, err = busctl("dlq", "replay", "picky", d,
                          env={"BUS_BOOTSTRAP": broker.bootstrap, "BUS_SCHEMA": td.SCHEMA})
    assert rc == 0, out + err
    assert "replayed 10" in out, out
    td.wait_all(picky, ids)
    # the other route did not get them again
    harness.wait_for(lambda: td.metric(disp, "bus_dispatcher_delivered_total",
                                       'route="picky"') >= 40, 10, what="picky delivered")
    assert all(v == 1 for v in other.seen.values()), "replay reached another route"
    # a second replay has nothing new
    rc, out, err = busctl("dlq", "replay", "picky", d,
                          env={"BUS_BOOTSTRAP": broker.bootstrap, "BUS_SCHEMA": td.SCHEMA})
    assert rc == 0 and "replayed 0" in out, out + err


# ---- the command line as operators use it (GNU conventions, any folder, secured clusters) ----

@harness.one_broker
def test_help_is_on_stdout_and_does_nothing_else():
    # A broker that cannot be reached: anything busctl tried to do would fail or hang.
    env = {"BUS_BOOTSTRAP": "127.0.0.1:1", "DISPATCHER_URLS": "http://127.0.0.1:1"}
    for argv in (["--help"], ["-h"], ["apply", "--help"], ["apply", "config/bus", "--help"],
                 ["tail", "login", "--help"]):
        rc, out, err = busctl(*argv, env=env, timeout=5)
        assert rc == 0 and out.startswith("usage: busctl"), (argv, rc, out, err)
        assert "reloaded" not in out and "broker" not in err, (argv, out, err)
    for argv in (["plan", "--frobnicate"], ["apply", "config/bus", "extra"], ["lag", "x"],
                 ["tail", "login", "--follow"], ["dlq", "replay", "--all"], ["nonsense"]):
        rc, out, err = busctl(*argv, env=env, timeout=5)
        assert rc == 2 and err.startswith("usage: busctl") and not out, (argv, rc, out, err)


@harness.one_broker
def test_validate_works_from_any_folder():
    path = harness.bin_path("busctl")
    conf = os.path.join(ROOT, "config", "bus")
    with tempfile.TemporaryDirectory() as elsewhere:
        env = dict(os.environ)
        env.pop("BUS_SCHEMA", None)
        p = subprocess.run([path, "validate", conf], capture_output=True, text=True,
                           cwd=elsewhere, env=env, timeout=30)
    assert p.returncode == 0 and "valid" in p.stdout, p.stdout + p.stderr


def test_kafka_settings_reach_busctl_clients():
    ctx, broker, d = _setup([], [td.topic("t", 1)])
    env = {"BUS_BOOTSTRAP": broker.bootstrap, "DISPATCHER_URLS": "", "BUS_SCHEMA": td.SCHEMA}
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0, err
    rc, out, err = busctl("plan", d, env=dict(env, BUSCTL_KAFKA_NO_SUCH_PROPERTY="1"))
    assert rc == 2 and "no.such.property" in err, (rc, err)
    # A setting that cannot work with this broker makes the same plan fail: the settings are
    # those of the client that talks to it (TLS against a plaintext listener).
    rc, out, err = busctl("plan", d, env=dict(env, BUSCTL_KAFKA_SECURITY_PROTOCOL="ssl",
                                              BUSCTL_KAFKA_SOCKET_TIMEOUT_MS="2000"),
                          timeout=60)
    assert rc == 1, (rc, out, err)
    config = ctx.write_json("busctl.json", {"kafka.no.such.property": 1})
    rc, out, err = busctl("plan", d, env=dict(env, BUSCTL_CONFIG=config))
    assert rc == 2 and "no.such.property" in err, (rc, err)


def test_apply_fails_when_the_dispatcher_runs_another_directory():
    ctx = harness.ctx()
    sink = td.Sink()
    url = ctx.serve(sink)[0]
    topics = [td.topic("t", 1)]
    ctx, broker, running = _setup([td.route("ra", "t", url)], topics)
    disp = td.start_dispatcher(broker, running)
    other = ctx.path("other-bus")
    os.makedirs(other, exist_ok=True)
    with open(os.path.join(other, "test.json"), "w") as f:
        json.dump({"topics": topics, "routes": [td.route("ra", "t", url),
                                                td.route("rb", "t", url)]}, f)
    env = {"BUS_BOOTSTRAP": broker.bootstrap, "DISPATCHER_URLS": disp.url,
           "BUS_SCHEMA": td.SCHEMA}
    rc, out, err = busctl("apply", other, env=env)
    assert rc == 1, (rc, out, err)
    assert "route rb is not running on any dispatcher" in err, err
    # The directory the dispatcher reads applies cleanly.
    rc, out, err = busctl("apply", running, env=env)
    assert rc == 0, (rc, out, err)


_aspec = importlib.util.spec_from_file_location(
    "broker_admin_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "test_broker_admin.py"))
ta = importlib.util.module_from_spec(_aspec)
_aspec.loader.exec_module(ta)


def test_topic_settings_are_planned_and_applied_on_existing_topics():
    """retention_hours and min_insync_replicas of an existing topic: plan shows the change,
    apply makes it (IncrementalAlterConfigs, or AlterConfigs keeping the topic's other own
    settings with librdkafka 2.0.2), replication_factor goes into CreateTopics and a difference
    is reported, never "fixed"."""
    if harness.ctx().broker_kind == "mock":
        raise harness.Skip("librdkafka's mock cluster keeps no topic settings")
    ctx, broker, d = _setup([], [td.topic("t", 1)])
    env = {"BUS_BOOTSTRAP": broker.bootstrap, "DISPATCHER_URLS": "", "BUS_SCHEMA": td.SCHEMA}
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0 and "no changes" in out, out + err
    conn = ta._Conn(broker.bootstrap)
    # A setting made on the topic by someone else stays through apply.
    assert ta._incremental_alter(conn, "t", [("segment.bytes", 0, "8192")]) == (0, None)
    td.bus_config([dict(td.topic("t", 1), retention_hours=24, min_insync_replicas=1),
                   dict(td.topic("n", 2), retention_hours=2, replication_factor=1,
                        min_insync_replicas=1)], [])
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0, err
    assert "~ topic t retention.ms 604800000 -> 86400000 (retention_hours 24)" in out, out
    assert "min.insync.replicas" not in out.split("+ topic n")[0], "1 is already in force"
    assert "+ topic n (2 partitions, retention 2 h, replication factor 1, " \
        "min.insync.replicas 1)" in out, out
    # plan changes nothing
    assert ta._describe(conn, 2, "t", ["retention.ms"])[1]["retention.ms"][0] == "604800000"
    rc, out, err = busctl("apply", d, env=env)
    assert rc == 0, out + err
    err_t, t_cfg = ta._describe(conn, 2, "t")
    assert t_cfg["retention.ms"][:3] == ("86400000", 0, 1), t_cfg
    assert t_cfg["segment.bytes"][:3] == ("8192", 0, 1), "kept"
    assert t_cfg["min.insync.replicas"][0] == "1"
    err_n, n_cfg = ta._describe(conn, 2, "n")
    assert err_n == 0 and n_cfg["retention.ms"][:3] == ("7200000", 0, 1)
    assert n_cfg["min.insync.replicas"][:3] == ("1", 0, 1)
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0 and "no changes" in out, out + err
    td.bus_config([dict(td.topic("t", 1), retention_hours=24, min_insync_replicas=2)], [])
    rc, out, err = busctl("plan", d, env=env)
    assert "~ topic t min.insync.replicas 1 -> 2" in out, out
    # The replication factor cannot change by configuration: reported, left alone.
    td.bus_config([dict(td.topic("t", 1), retention_hours=24, replication_factor=3)], [])
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0 and "! topic t has replication factor 1, configured 3" in out, out
    # min_insync_replicas above replication_factor is refused by validate.
    td.bus_config([dict(td.topic("t", 1), replication_factor=1, min_insync_replicas=2)], [])
    rc, out, err = busctl("validate", d, env=env)
    assert rc == 1 and "min_insync_replicas 2 is above replication_factor 1" in err, err
    conn.close()


def test_busctl_reaches_a_sasl_broker_with_the_password_in_a_file():
    """A secured cluster: busctl's Kafka clients take the kafka.* settings, the password from
    BUSCTL_KAFKA_SASL_PASSWORD_FILE (as every secret has a _FILE form), and plan/apply work;
    a wrong password fails the plan."""
    if harness.ctx().broker_kind == "mock":
        raise harness.Skip("the SASL broker is bus-broker")
    ctx = harness.ctx()
    users = ta._users(ctx, {"ops": "ops-password-1"})
    _, boot, _ = ta._start(ctx, **{"sasl.users_file": users, "sasl.required": True})
    d = td.bus_config([dict(td.topic("secure", 2), retention_hours=12)], [])
    pw = ctx.path("secrets", "kafka-password")
    with open(pw, "w") as f:
        f.write("ops-password-1\n")
    env = {"BUS_BOOTSTRAP": boot, "DISPATCHER_URLS": "", "BUS_SCHEMA": td.SCHEMA,
           "BUSCTL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "BUSCTL_KAFKA_SASL_MECHANISMS": "SCRAM-SHA-256",
           "BUSCTL_KAFKA_SASL_USERNAME": "ops", "BUSCTL_KAFKA_SASL_PASSWORD_FILE": pw}
    rc, out, err = busctl("apply", d, env=env)
    assert rc == 0 and "+ topic secure (2 partitions, retention 12 h)" in out, out + err
    rc, out, err = busctl("plan", d, env=env)
    assert rc == 0 and "no changes" in out, out + err
    # Both forms at once, or _FILE of a property that is not secret: refused before anything.
    rc, out, err = busctl("plan", d, env=dict(env, BUSCTL_KAFKA_SASL_PASSWORD="x"))
    assert rc == 2 and "not both" in err, (rc, err)
    rc, out, err = busctl("plan", d, env=dict(env, BUSCTL_KAFKA_SASL_USERNAME_FILE=pw))
    assert rc == 2 and "kafka.sasl.username is not a secret" in err, (rc, err)
    with open(pw, "w") as f:
        f.write("wrong-password\n")
    rc, out, err = busctl("plan", d, env=dict(env, BUSCTL_KAFKA_SOCKET_TIMEOUT_MS="3000"),
                          timeout=60)
    assert rc == 1, (rc, out, err)
