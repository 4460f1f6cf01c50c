"""python3-confluent-kafka (Debian) against bus-broker: one step per run,
`/usr/bin/python3 confluent_steps.py '{"step": ..., ...}'` (tests/compat/test_confluent_kafka.py
drives it). Prints its result as one JSON line; a failed check exits 1 with the reason last."""
import json
import sys
import time

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

ARGS = json.loads(sys.argv[1])
TOPIC = ARGS.get("topic")
CONF = {"bootstrap.servers": ARGS["bootstrap"], "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": ARGS["user"],
        "sasl.password": ARGS["password"]}
DEADLINE = time.monotonic() + ARGS.get("timeout_s", 30)


def left():
    return max(0.1, DEADLINE - time.monotonic())


def admin():
    return AdminClient(dict(CONF))


def wait(futures):
    return {k: f.result(timeout=left()) for k, f in futures.items()}


def create(topic, partitions, config=None):
    a = admin()  # held until the answer came (a destroyed handle fails its futures)
    wait(a.create_topics([NewTopic(topic, partitions, 1, config=config or {})]))


def produce(topic, batches, **conf):
    """Idempotent, acks=all, gzip; one flush per batch of (key, value, headers, timestamp)."""
    p = ck.Producer(dict(CONF, **{"enable.idempotence": True, "acks": "all",
                                  "compression.type": "gzip", "linger.ms": 5}, **conf))
    acked = []

    def on_delivery(err, msg):
        assert err is None, err
        acked.append((msg.partition(), msg.offset()))
    for batch in batches:
        for key, value, headers, ts in batch:
            p.produce(topic, value=value, key=key, headers=headers, timestamp=ts or 0,
                      on_delivery=on_delivery)
            p.poll(0)
        assert p.flush(left()) == 0, "unacknowledged messages"
    return acked


def consume(topic, group, n, from_beginning=True, assign=None, **conf):
    c = ck.Consumer(dict(CONF, **{"group.id": group, "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest" if from_beginning else "latest",
                                  "fetch.wait.max.ms": 100}, **conf))
    if assign:
        c.assign(assign)
    else:
        c.subscribe([topic])
    got = []
    while len(got) < n:
        m = c.poll(min(1.0, left()))
        assert time.monotonic() < DEADLINE, f"timed out: {len(got)} of {n} messages"
        if m is None:
            continue
        assert not m.error(), m.error()
        got.append({"partition": m.partition(), "offset": m.offset(),
                    "key": m.key().decode() if m.key() else None, "value": m.value().decode(),
                    "headers": {k: v.decode() for k, v in (m.headers() or [])}})
    if not assign:
        c.commit(asynchronous=False)
    c.close()
    return got


def step_sasl():
    md = admin().list_topics(timeout=left())
    assert len(md.brokers) == 1
    errors = []
    bad = ck.Producer(dict(CONF, **{"sasl.password": "wrong", "error_cb": errors.append}))
    while not errors:
        assert time.monotonic() < DEADLINE, "a wrong password was not refused"
        bad.poll(0.05)
    assert errors[0].code() == ck.KafkaError._AUTHENTICATION, errors[0]
    assert "invalid credentials" in errors[0].str(), errors[0]
    return {"brokers": len(md.brokers)}


def step_admin():
    a = admin()
    wait(a.create_topics([NewTopic(TOPIC, 3, 1, config={"retention.ms": "3600000"})]))
    md = a.list_topics(timeout=left())
    assert TOPIC in md.topics and len(md.topics[TOPIC].partitions) == 3
    res = wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, TOPIC)]))
    cfg = list(res.values())[0]
    assert cfg["retention.ms"].value == "3600000", cfg
    wait(a.create_partitions([NewPartitions(TOPIC, 4)]))
    assert len(a.list_topics(TOPIC, timeout=left()).topics[TOPIC].partitions) == 4
    wait(a.delete_topics([TOPIC], operation_timeout=5))
    assert TOPIC not in a.list_topics(timeout=left()).topics
    return {"ok": True}


def step_produce():
    create(TOPIC, 3)
    msgs = [(f"k{i % 7}", f"v{i}", [("h", f"x{i}")], None) for i in range(30)]
    acked = produce(TOPIC, [msgs[:10], msgs[10:]])
    assert len(acked) == 30
    got = consume(TOPIC, "g-produce", 30)
    for m in got:
        i = int(m["value"][1:])
        assert m["key"] == f"k{i % 7}" and m["headers"] == {"h": f"x{i}"}, m
    assert len({m["value"] for m in got}) == 30
    by_offset = {(m["partition"], m["offset"]) for m in got}
    assert by_offset == set(acked), "every record at the offset it was acknowledged at"
    return {"consumed": len(got)}


def step_group_resume():
    create(TOPIC, 2)
    produce(TOPIC, [[(f"k{i}", f"a{i}", None, None) for i in range(20)]])
    assert len(consume(TOPIC, "g-resume", 20)) == 20
    c = ck.Consumer(dict(CONF, **{"group.id": "g-resume"}))
    committed = c.committed([ck.TopicPartition(TOPIC, p) for p in range(2)], timeout=left())
    c.close()
    assert sum(tp.offset for tp in committed) == 20, committed
    produce(TOPIC, [[(f"k{i}", f"b{i}", None, None) for i in range(10)]])
    second = consume(TOPIC, "g-resume", 10)
    assert [m["value"][0] for m in second] == ["b"] * 10, second
    return {"second": len(second)}


def step_seek():
    create(TOPIC, 1)
    produce(TOPIC, [[(None, f"s{i}", None, None) for i in range(10)]])
    c = ck.Consumer(dict(CONF, **{"group.id": "g-seek", "auto.offset.reset": "earliest"}))
    c.assign([ck.TopicPartition(TOPIC, 0, 0)])
    first = c.poll(left())
    assert first and not first.error() and first.offset() == 0
    c.seek(ck.TopicPartition(TOPIC, 0, 7))
    got = []
    while len(got) < 3:
        m = c.poll(min(1.0, left()))
        assert time.monotonic() < DEADLINE, "timed out after the seek"
        if m is not None and not m.error():
            got.append(m.offset())
    c.close()
    assert got == [7, 8, 9], got
    return {"offsets": got}


def _offsets_for_times(ts_list):
    """One request per timestamp (one request names a partition once)."""
    c = ck.Consumer(dict(CONF, **{"group.id": "g-time"}))
    out = [c.offsets_for_times([ck.TopicPartition(TOPIC, 0, ts)], timeout=left())[0].offset
           for ts in ts_list]
    c.close()
    return out


def step_offsets_by_time():
    create(TOPIC, 1)
    t0 = int(time.time() * 1000) - 60000
    produce(TOPIC, [[(None, f"a{i}", None, t0) for i in range(3)],
                    [(None, f"b{i}", None, t0 + 10000) for i in range(3)]])
    got = _offsets_for_times([t0, t0 + 5000])
    assert got == [0, 3], got
    return {"offsets": got}


def step_offsets_by_time_exact():
    create(TOPIC, 1)
    t0 = int(time.time() * 1000) - 60000
    produce(TOPIC, [[(None, f"t{i}", None, t0 + i * 1000) for i in range(10)]])
    got = _offsets_for_times([t0 + 5000, t0 + 99000])
    assert got == [5, -1], f"{got}: want 5 (inside the batch) and -1 (past the last record)"
    return {"offsets": got}


def step_rebalance():
    create(TOPIC, 4)
    members, assigned, got = [], [0, 0], [[], []]

    def on_assign(i):
        def cb(consumer, partitions):
            assigned[i] = len(partitions)
        return cb
    for i in range(2):
        c = ck.Consumer(dict(CONF, **{"group.id": "g-two", "auto.offset.reset": "earliest",
                                      "fetch.wait.max.ms": 100, "session.timeout.ms": 6000,
                                      "heartbeat.interval.ms": 500}))
        c.subscribe([TOPIC], on_assign=on_assign(i))
        members.append(c)
        if i == 0:
            while assigned[0] != 4:
                assert time.monotonic() < DEADLINE, "the first member never got 4 partitions"
                c.poll(0.1)
    while assigned != [2, 2]:
        assert time.monotonic() < DEADLINE, f"no rebalance to 2+2: {assigned}"
        for c in members:
            c.poll(0.05)
    produce(TOPIC, [[(f"key-{i}", f"r{i}", None, None) for i in range(40)]])
    while len(got[0]) + len(got[1]) < 40:
        assert time.monotonic() < DEADLINE, f"timed out: {len(got[0])}+{len(got[1])} of 40"
        for i, c in enumerate(members):
            m = c.poll(0.05)
            if m is not None and not m.error():
                got[i].append((m.partition(), m.offset()))
    for c in members:
        c.close()
    allrec = got[0] + got[1]
    assert len(set(allrec)) == 40 and got[0] and got[1], got
    return {"counts": [len(got[0]), len(got[1])]}


def step_produce_n():
    if ARGS.get("create"):
        create(TOPIC, 3)
    acked = produce(TOPIC, [[(f"k{i}", f"{ARGS['tag']}{i}", None, None)
                             for i in range(ARGS["n"])]])
    return {"acked": len(acked)}


def step_count():
    got = consume(TOPIC, f"g-count-{ARGS['n']}", ARGS["n"])
    return {"records": len(got), "distinct": len({m["value"] for m in got})}


def step_alter_configs():
    create(TOPIC, 1)
    a = admin()
    wait(a.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, TOPIC,
                                         set_config={"retention.ms": "7200000"})]))
    cfg = list(wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC,
                                                       TOPIC)])).values())[0]
    assert cfg["retention.ms"].value == "7200000", cfg["retention.ms"]
    return {"ok": True}


def step_transactions():
    create(TOPIC, 1)
    p = ck.Producer(dict(CONF, **{"transactional.id": "compat-tx",
                                  "transaction.timeout.ms": 10000}))
    p.init_transactions(left())
    p.begin_transaction()
    p.produce(TOPIC, value=b"t0")
    p.produce(TOPIC, value=b"t1")
    p.commit_transaction(left())
    got = consume(TOPIC, "g-tx", 2, **{"isolation.level": "read_committed"})
    assert [m["value"] for m in got] == ["t0", "t1"]
    return {"ok": True}


if __name__ == "__main__":
    fn = globals().get("step_" + ARGS["step"])
    if fn is None:
        sys.exit(f"unknown step {ARGS['step']}")
    try:
        result = fn()
    except BaseException as e:  # the reason on the last line of stderr
        import traceback
        traceback.print_exc()
        sys.stderr.write(f"\nstep {ARGS['step']}: {type(e).__name__}: {e}\n")
        sys.stderr.flush()
        import os
        os._exit(1)  # librdkafka's threads must not hold the exit
    print(json.dumps(result), flush=True)
    import os
    os._exit(0)
