"""python3-kafka (kafka-python, Debian) against bus-broker: one step per run,
`/usr/bin/python3 kafka_python_steps.py '{"step": ..., ...}'` (tests/compat/test_kafka_python.py
drives it). Prints its result as one JSON line; a failed check exits 1 with the reason last.

kafka-python 2.0.2 has no idempotent producer (enable_idempotence came in 2.1): its producer
runs with acks=all and retries, which is what it can do."""
import json
import logging
import sys
import time

import kafka
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata, TopicPartition

ARGS = json.loads(sys.argv[1])
TOPIC = ARGS.get("topic")
CONF = dict(bootstrap_servers=ARGS["bootstrap"], security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=ARGS["user"],
            sasl_plain_password=ARGS["password"], api_version_auto_timeout_ms=10000)
DEADLINE = time.monotonic() + ARGS.get("timeout_s", 30)
logging.basicConfig(level=logging.CRITICAL)


def left():
    return max(0.1, DEADLINE - time.monotonic())


def admin():
    return KafkaAdminClient(**CONF)


def create(topic, partitions, config=None):
    a = admin()
    a.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
    a.close()


def produce(topic, records):
    """acks=all, gzip; records: (key, value, headers, timestamp); returns (partition, offset)."""
    p = kafka.KafkaProducer(acks="all", compression_type="gzip", retries=5, linger_ms=5, **CONF)
    futures = [p.send(topic, key=k.encode() if k else None, value=v.encode(),
                      headers=[(hk, hv.encode()) for hk, hv in (h or [])], timestamp_ms=ts)
               for k, v, h, ts in records]
    out = [(md.partition, md.offset) for md in (f.get(timeout=left()) for f in futures)]
    p.close()
    return out


def consumer(group, **conf):
    c = dict(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
             fetch_max_wait_ms=100, **CONF)
    c.update(conf)
    return kafka.KafkaConsumer(**c)


def consume(topic, group, n, **conf):
    c = consumer(group, **conf)
    c.subscribe([topic])
    got = []
    while len(got) < n:
        assert time.monotonic() < DEADLINE, f"timed out: {len(got)} of {n} messages"
        for recs in c.poll(timeout_ms=200).values():
            for m in recs:
                got.append({"partition": m.partition, "offset": m.offset,
                            "key": m.key.decode() if m.key else None, "value": m.value.decode(),
                            "headers": {k: v.decode() for k, v in m.headers}})
    c.commit()
    c.close()
    return got


def step_sasl():
    a = admin()
    assert TOPIC not in a.list_topics()
    a.close()
    try:
        KafkaAdminClient(**dict(CONF, sasl_plain_password="wrong"))
        raise AssertionError("a wrong password was accepted")
    except kafka.errors.KafkaError as e:  # NoBrokersAvailable after the refusal
        err = e
    return {"refused": type(err).__name__}


def step_admin():
    a = admin()
    a.create_topics([NewTopic(TOPIC, 3, 1, topic_configs={"retention.ms": "3600000"})])
    assert TOPIC in a.list_topics()
    desc = a.describe_topics([TOPIC])
    assert len(desc[0]["partitions"]) == 3, desc
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
    entries = {e[0]: e[1] for e in res[0].resources[0][4]}
    assert entries.get("retention.ms") == "3600000", entries
    a.create_partitions({TOPIC: NewPartitions(4)})
    assert len(a.describe_topics([TOPIC])[0]["partitions"]) == 4
    a.delete_topics([TOPIC])
    assert TOPIC not in a.list_topics()
    a.close()
    return {"ok": True}


def step_produce():
    create(TOPIC, 3)
    recs = [(f"k{i % 7}", f"v{i}", [("h", f"x{i}")], None) for i in range(30)]
    acked = produce(TOPIC, recs)
    got = consume(TOPIC, "g-produce", 30)
    for m in got:
        i = int(m["value"][1:])
        assert m["key"] == f"k{i % 7}" and m["headers"] == {"h": f"x{i}"}, m
    assert {(m["partition"], m["offset"]) for m in got} == set(acked)
    return {"consumed": len(got)}


def step_group_resume():
    create(TOPIC, 2)
    produce(TOPIC, [(f"k{i}", f"a{i}", None, None) for i in range(20)])
    assert len(consume(TOPIC, "g-resume", 20)) == 20
    a = admin()
    offs = a.list_consumer_group_offsets("g-resume")
    a.close()
    assert sum(o.offset for tp, o in offs.items() if tp.topic == TOPIC) == 20, offs
    produce(TOPIC, [(f"k{i}", f"b{i}", None, None) for i in range(10)])
    second = consume(TOPIC, "g-resume", 10)
    assert [m["value"][0] for m in second] == ["b"] * 10, second
    return {"second": len(second)}


def step_seek():
    create(TOPIC, 1)
    produce(TOPIC, [(None, f"s{i}", None, None) for i in range(10)])
    c = consumer("g-seek")
    tp = TopicPartition(TOPIC, 0)
    c.assign([tp])
    c.seek(tp, 7)
    got = []
    while len(got) < 3:
        assert time.monotonic() < DEADLINE, "timed out after the seek"
        for recs in c.poll(timeout_ms=200).values():
            got += [m.offset for m in recs]
    c.close()
    assert got == [7, 8, 9], got
    return {"offsets": got}


def _offsets_for_times(ts_list):
    c = consumer("g-time")
    tp = TopicPartition(TOPIC, 0)
    out = []
    for ts in ts_list:
        r = c.offsets_for_times({tp: ts})[tp]
        out.append(r.offset if r is not None else -1)  # None: Kafka's -1, past the end
    c.close()
    return out


def step_offsets_by_time():
    create(TOPIC, 1)
    t0 = int(time.time() * 1000) - 60000
    produce(TOPIC, [(None, f"a{i}", None, t0) for i in range(3)])
    produce(TOPIC, [(None, f"b{i}", None, t0 + 10000) for i in range(3)])
    got = _offsets_for_times([t0, t0 + 5000])
    assert got == [0, 3], got
    return {"offsets": got}


def step_offsets_by_time_exact():
    create(TOPIC, 1)
    t0 = int(time.time() * 1000) - 60000
    produce(TOPIC, [(None, f"t{i}", None, t0 + i * 1000) for i in range(10)])
    got = _offsets_for_times([t0 + 5000, t0 + 99000])
    assert got == [5, -1], f"{got}: want 5 (inside the batch) and -1 (past the last record)"
    return {"offsets": got}


def step_rebalance():
    # One thread per member: kafka-python rejoins a group inside poll(), so a single thread
    # polling both would hold one member's JoinGroup while the other never rejoins.
    import threading
    create(TOPIC, 4)
    members = [consumer("g-two", session_timeout_ms=6000, heartbeat_interval_ms=500,
                        max_poll_interval_ms=10000) for _ in range(2)]
    got, stop, failed = [[], []], threading.Event(), []

    def run(i):
        try:
            members[i].subscribe([TOPIC])
            while not stop.is_set():
                for recs in members[i].poll(timeout_ms=50).values():
                    got[i].extend((m.partition, m.offset) for m in recs)
        except Exception as e:  # reported by the main thread
            failed.append(repr(e))
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    threads[0].start()
    while len(members[0].assignment()) != 4:
        assert time.monotonic() < DEADLINE and not failed, f"no 4 partitions for one: {failed}"
        time.sleep(0.02)
    threads[1].start()
    while [len(c.assignment()) for c in members] != [2, 2]:
        assert time.monotonic() < DEADLINE and not failed, f"no rebalance to 2+2: {failed}"
        time.sleep(0.02)
    produce(TOPIC, [(f"key-{i}", f"r{i}", None, None) for i in range(40)])
    while len(got[0]) + len(got[1]) < 40:
        assert time.monotonic() < DEADLINE and not failed, f"{len(got[0])}+{len(got[1])} of 40"
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join(left())
    for c in members:
        c.close()
    assert len(set(got[0] + got[1])) == 40 and got[0] and got[1], got
    return {"counts": [len(got[0]), len(got[1])]}


def step_produce_n():
    if ARGS.get("create"):
        create(TOPIC, 3)
    acked = produce(TOPIC, [(f"k{i}", f"{ARGS['tag']}{i}", None, None)
                            for i in range(ARGS["n"])])
    return {"acked": len(acked)}


def step_count():
    got = consume(TOPIC, f"g-count-{ARGS['n']}", ARGS["n"])
    return {"records": len(got), "distinct": len({m["value"] for m in got})}


def step_reset_offsets():
    # Kafka stores a committed -1 or -2 as it is and answers it back. kafka-python 2.0.2 reads
    # any negative committed offset as "none" (coordinator/consumer.py: `offset >= 0`) and
    # starts from its own auto_offset_reset, as the Java consumer does: so the group restarts
    # from the beginning with auto_offset_reset="earliest" (had the commit been refused or
    # ignored, it would resume at the 10 committed first and wait for records in vain).
    create(TOPIC, 1)
    produce(TOPIC, [(None, f"o{i}", None, None) for i in range(10)])
    consume(TOPIC, "g-reset", 10)
    tp = TopicPartition(TOPIC, 0)
    a = admin()
    assert a.list_consumer_group_offsets("g-reset")[tp].offset == 10
    stored = []
    for off in (-1, -2):
        c = consumer("g-reset")
        c.assign([tp])
        c.commit({tp: OffsetAndMetadata(off, "")})
        c.close()
        stored.append(a.list_consumer_group_offsets("g-reset", partitions=[tp])[tp].offset)
    a.close()
    # -1 reads back as "no committed offset" (-1 too), from Kafka as from bus-broker.
    assert stored == [-1, -2], f"committed -1 then -2, read back {stored}"
    again = consume(TOPIC, "g-reset", 10)
    assert [m["offset"] for m in again] == list(range(10)), again
    return {"stored": stored}


def step_alter_configs():
    create(TOPIC, 1)
    a = admin()
    a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC,
                                    configs={"retention.ms": "7200000"})])
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
    entries = {e[0]: e[1] for e in res[0].resources[0][4]}
    a.close()
    assert entries.get("retention.ms") == "7200000", entries
    return {"ok": True}


def step_delete_groups():
    create(TOPIC, 1)
    produce(TOPIC, [(None, "d", None, None)])
    consume(TOPIC, "g-delete", 1)
    a = admin()
    res = a.delete_consumer_groups(["g-delete"])
    assert all(err.errno == 0 for _, err in res), res
    groups = [g for g, _ in a.list_consumer_groups()]
    a.close()
    assert "g-delete" not in groups, groups
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
        os._exit(1)
    print(json.dumps(result), flush=True)
    import os
    os._exit(0)
