"""Transactions (KIP-98) in the embedded broker (bin/bus-broker), through librdkafka's
transactional producer (python3-confluent-kafka): commit and abort, read_committed consumers
that see committed records only, offsets committed with the transaction, abort on the
transaction time-out, fencing, a SIGKILL of the broker mid-transaction, and the ACLs on
transactional ids. docs/broker.md "Transactions"."""
import datetime
import json
import os
import re
import socket
import struct
import subprocess
import time

import harness

try:
    import confluent_kafka as ck
except ImportError:  # run by a Python without Debian's python3-confluent-kafka
    ck = None


def _need_ck():
    if ck is None:
        raise harness.Skip("python3-confluent-kafka not importable by this Python")


def _start(ctx, data=None, port=None, **extra):
    """Starts bus-broker; returns (proc, bootstrap, data dir)."""
    port = port or harness.free_port()
    data = data or ctx.path("data", "x")[:-2]
    hport = harness.free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "data_dir": data, "http.listen": f"127.0.0.1:{hport}"}
    cfg.update(extra)
    proc = ctx.start("bus-broker", config=cfg, http=False)
    proc.metrics_url = f"http://127.0.0.1:{hport}/metrics"
    harness.wait_for(lambda: harness.tcp_open(port) or harness._raise_exit(proc), 10,
                     what="broker port")
    return proc, f"127.0.0.1:{port}", data


def _metric(proc, name, **labels):
    """The value of one sample of the broker's /metrics (0 when absent)."""
    status, text, _ = harness.http("GET", proc.metrics_url)
    assert status == 200
    for ln in str(text).splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", ln)
        if m and m.group(1) == name and all(f'{k}="{v}"' in (m.group(2) or "")
                                            for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def _producer(boot, txn_id, **conf):
    c = {"bootstrap.servers": boot, "transactional.id": txn_id, "linger.ms": 5}
    c.update(conf)
    p = ck.Producer(c)
    p.init_transactions(20 * harness.timeout_mult())
    return p


def _produce(p, topic, values, partition=None):
    for v in values:
        if partition is None:
            p.produce(topic, value=v.encode(), key=v.encode())
        else:
            p.produce(topic, value=v.encode(), key=v.encode(), partition=partition)
    assert p.flush(20 * harness.timeout_mult()) == 0


def _read(boot, topic, isolation, want=None, idle_s=3.0, group=None):
    """Reads topic from the beginning with a fresh consumer until `want` values came (then
    for a short moment more, to catch extras) or nothing arrived for idle_s. Returns the
    values in order of arrival."""
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": group or f"r-{time.time_ns()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "isolation.level": isolation, "enable.partition.eof": False})
    c.subscribe([topic])
    out = []
    last = time.monotonic()
    deadline = time.monotonic() + 30 * harness.timeout_mult()
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m.value().decode())
                last = time.monotonic()
            if want is not None and len(out) >= want and time.monotonic() - last > 0.5:
                break
            if time.monotonic() - last > idle_s * harness.timeout_mult() and \
                    (want is None or len(out) >= want or time.monotonic() - last > 10):
                break
    finally:
        c.close()
    return out


def test_commit_and_abort_with_read_committed_and_uncommitted_consumers():
    _need_ck()
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, topics="t:2")
    p = _producer(boot, "tx-basic")
    p.begin_transaction()
    _produce(p, "t", [f"c1-{i}" for i in range(20)])
    p.commit_transaction(20)
    p.begin_transaction()
    _produce(p, "t", [f"a-{i}" for i in range(15)])
    p.abort_transaction(20)
    p.begin_transaction()
    _produce(p, "t", [f"c2-{i}" for i in range(10)])
    p.commit_transaction(20)
    committed = sorted([f"c1-{i}" for i in range(20)] + [f"c2-{i}" for i in range(10)])
    got = _read(boot, "t", "read_committed", want=30)
    assert sorted(got) == committed, got
    # The aborted records were written (a read_uncommitted consumer sees them): what hid them
    # from the read_committed one was the abort marker and the aborted-transactions list.
    got = _read(boot, "t", "read_uncommitted", want=45)
    assert sorted(got) == sorted(committed + [f"a-{i}" for i in range(15)]), got
    assert _metric(proc, "bus_broker_transactions_total", outcome="commit") == 2
    assert _metric(proc, "bus_broker_transactions_total", outcome="abort") == 1
    assert _metric(proc, "bus_broker_transactions_open") == 0


def test_open_transaction_holds_back_read_committed_until_it_ends():
    _need_ck()
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, topics="open:1")
    plain = ck.Producer({"bootstrap.servers": boot})
    plain.produce("open", value=b"before")
    assert plain.flush(20) == 0
    p = _producer(boot, "tx-open")
    p.begin_transaction()
    _produce(p, "open", [f"o-{i}" for i in range(5)])
    # A non-transactional record after the transaction's first one waits behind the LSO too.
    plain.produce("open", value=b"after")
    assert plain.flush(20) == 0
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": "g-open",
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe(["open"])
    seen = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            seen.append(m.value().decode())
    assert seen == ["before"], seen
    assert _metric(proc, "bus_broker_transactions_open") == 1
    # ListOffsets latest: the LSO for read_committed, the log end otherwise.
    assert c.get_watermark_offsets(ck.TopicPartition("open", 0), 10)[1] == 1
    plain_c = ck.Consumer({"bootstrap.servers": boot, "group.id": "g-plain",
                         "isolation.level": "read_uncommitted"})
    assert plain_c.get_watermark_offsets(ck.TopicPartition("open", 0), 10)[1] == 7
    plain_c.close()
    p.commit_transaction(20)
    harness.wait_for(lambda: seen.extend(
        [m.value().decode() for m in c.consume(10, 0.2) if not m.error()]) or len(seen) >= 7,
        20, what="the committed records")
    c.close()
    assert seen == ["before"] + [f"o-{i}" for i in range(5)] + ["after"], seen


def test_consume_transform_produce_commits_input_offsets_with_the_output():
    _need_ck()
    ctx = harness.ctx()
    _, boot, _ = _start(ctx, topics="in:1,out:1")
    src = ck.Producer({"bootstrap.servers": boot})
    for i in range(10):
        src.produce("in", value=f"in-{i}".encode())
    assert src.flush(20) == 0
    p = _producer(boot, "tx-eos")
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": "eos", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe(["in"])
    msgs = []
    harness.wait_for(lambda: msgs.extend(m for m in c.consume(10, 0.2) if not m.error())
                     or len(msgs) >= 10, 20, what="input")
    # First attempt aborted: neither its output nor its offsets count.
    p.begin_transaction()
    _produce(p, "out", [f"bad-{m.value().decode()}" for m in msgs[:5]])
    p.send_offsets_to_transaction([ck.TopicPartition("in", 0, msgs[4].offset() + 1)],
                                  c.consumer_group_metadata(), 20)
    p.abort_transaction(20)
    tp = c.committed([ck.TopicPartition("in", 0)], 10)[0]
    assert tp.offset < 0, f"an aborted transaction committed offset {tp.offset}"
    p.begin_transaction()
    _produce(p, "out", [f"out-{m.value().decode()}" for m in msgs[:6]])
    p.send_offsets_to_transaction([ck.TopicPartition("in", 0, msgs[5].offset() + 1)],
                                  c.consumer_group_metadata(), 20)
    p.commit_transaction(20)
    c.close()
    check = ck.Consumer({"bootstrap.servers": boot, "group.id": "eos"})
    assert check.committed([ck.TopicPartition("in", 0)], 10)[0].offset == 6
    check.close()
    assert _read(boot, "out", "read_committed", want=6) == [f"out-in-{i}" for i in range(6)]


def test_offsets_of_a_consumer_no_longer_in_the_group_are_refused_kip_447():
    """TxnOffsetCommit v3 carries the consumer's member id and generation (librdkafka sends it
    when the broker lists v3): a producer whose consumer lost its partitions (here: left the
    group, another member joined) cannot commit them; its transaction aborts, nothing of it
    is visible and the offsets the current member committed stay."""
    _need_ck()
    ctx = harness.ctx()
    _, boot, _ = _start(ctx, topics="in:1,out:1")
    src = ck.Producer({"bootstrap.servers": boot})
    for i in range(4):
        src.produce("in", value=f"in-{i}".encode())
    assert src.flush(20) == 0
    conf = {"bootstrap.servers": boot, "group.id": "z", "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    old = ck.Consumer(conf)
    old.subscribe(["in"])
    got = []
    harness.wait_for(lambda: got.extend(m for m in old.consume(10, 0.2) if not m.error())
                     or len(got) >= 4, 20, what="input read by the first member")
    stale = old.consumer_group_metadata()
    old.close()  # leaves the group: its member id and generation are gone
    new = ck.Consumer(conf)
    new.subscribe(["in"])
    harness.wait_for(lambda: new.consume(1, 0.2) is not None and new.assignment(), 20,
                     what="the second member assigned")
    zombie = _producer(boot, "tx-zombie")
    zombie.begin_transaction()
    _produce(zombie, "out", ["from-the-zombie"])
    refused = None
    try:
        zombie.send_offsets_to_transaction([ck.TopicPartition("in", 0, 4)], stale, 20)
        zombie.commit_transaction(20)
    except ck.KafkaException as e:
        refused = e.args[0]
    assert refused is not None, "offsets of a member no longer in the group were committed"
    assert refused.code() in (ck.KafkaError.UNKNOWN_MEMBER_ID, ck.KafkaError.ILLEGAL_GENERATION), \
        refused
    if refused.txn_requires_abort():
        zombie.abort_transaction(20)
    # the current member's own transaction goes through
    p = _producer(boot, "tx-current")
    p.begin_transaction()
    _produce(p, "out", ["from-the-member"])
    p.send_offsets_to_transaction([ck.TopicPartition("in", 0, 2)], new.consumer_group_metadata(),
                                  20)
    p.commit_transaction(20)
    assert new.committed([ck.TopicPartition("in", 0)], 10)[0].offset == 2
    new.close()
    assert _read(boot, "out", "read_committed", want=1) == ["from-the-member"]


def test_transaction_past_its_timeout_is_aborted_and_its_producer_fenced():
    _need_ck()
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, topics="slow:1")
    p = _producer(boot, "tx-slow", **{"transaction.timeout.ms": 2000,
                                      "message.timeout.ms": 2000})
    p.begin_transaction()
    _produce(p, "slow", [f"s-{i}" for i in range(5)])
    harness.wait_for(lambda: "aborted after its time-out" in proc.log(), 15,
                     what="the time-out abort")
    assert _metric(proc, "bus_broker_transactions_total", outcome="timeout") == 1
    try:
        p.commit_transaction(10)
        raise AssertionError("the commit of a timed-out transaction succeeded")
    except ck.KafkaException as e:
        err = e.args[0]
        assert err.code() in (ck.KafkaError.INVALID_PRODUCER_EPOCH, ck.KafkaError._FENCED,
                              ck.KafkaError.PRODUCER_FENCED) or err.fatal(), err
    assert _read(boot, "slow", "read_committed", idle_s=2) == []
    assert sorted(_read(boot, "slow", "read_uncommitted", want=5)) == [f"s-{i}" for i in range(5)]
    # The id is usable again by a new producer.
    p2 = _producer(boot, "tx-slow")
    p2.begin_transaction()
    _produce(p2, "slow", ["later"])
    p2.commit_transaction(20)
    assert _read(boot, "slow", "read_committed", want=1) == ["later"]


def test_kill_9_mid_transaction_keeps_it_open_then_a_new_producer_aborts_it():
    _need_ck()
    ctx = harness.ctx()
    port = harness.free_port()
    proc, boot, data = _start(ctx, port=port, topics="crash:2")
    p = _producer(boot, "tx-crash", **{"acks": "all"})
    p.begin_transaction()
    _produce(p, "crash", [f"kept-{i}" for i in range(10)])
    p.commit_transaction(20)
    p.begin_transaction()
    _produce(p, "crash", [f"lost-{i}" for i in range(10)])
    proc.kill()
    state = json.load(open(os.path.join(data, "txn.state")))
    [t] = [t for t in state["transactions"] if t["id"] == "tx-crash"]
    assert t["state"] == "ongoing" and t["partitions"], t
    proc2, boot, _ = _start(ctx, data=data, port=port, topics="crash:2")
    # Still open after the restart: read_committed stops before it.
    got = _read(boot, "crash", "read_committed", want=10, idle_s=2)
    assert sorted(got) == sorted(f"kept-{i}" for i in range(10)), got
    # A new producer with the id fences the old one and aborts what it left.
    p2 = _producer(boot, "tx-crash")
    p2.begin_transaction()
    _produce(p2, "crash", [f"new-{i}" for i in range(3)])
    p2.commit_transaction(20)
    try:
        p.commit_transaction(10)
        raise AssertionError("the fenced producer committed")
    except ck.KafkaException:
        pass
    got = _read(boot, "crash", "read_committed", want=13)
    assert sorted(got) == sorted([f"kept-{i}" for i in range(10)] +
                                 [f"new-{i}" for i in range(3)]), got
    assert len(_read(boot, "crash", "read_uncommitted", want=23)) == 23
    # And across a second (clean) restart the aborted list still hides them.
    proc2.stop()
    _, boot, _ = _start(ctx, data=data, port=port, topics="crash:2")
    got = _read(boot, "crash", "read_committed", want=13)
    assert sorted(got) == sorted([f"kept-{i}" for i in range(10)] +
                                 [f"new-{i}" for i in range(3)]), got


def test_acls_govern_transactional_ids_and_the_topics_a_transaction_writes():
    _need_ck()
    ctx = harness.ctx()
    acls = ctx.write_json("acl.json", {"acls": [
        {"principal": "User:*", "resource": "topic", "name": "ok",
         "operations": ["Write", "Read", "Describe"]},
        {"principal": "User:*", "resource": "topic", "name": "secret", "operations": ["Describe"]},
        {"principal": "User:*", "resource": "group", "name": "*", "operations": ["Read"]},
        {"principal": "User:*", "resource": "transactional_id", "name": "tx-allowed",
         "operations": ["Write", "Describe"]},
    ]})
    _, boot, _ = _start(ctx, topics="ok:1,secret:1", **{"acl.file": acls})
    # No rule for this id: InitProducerId (or FindCoordinator) is refused.
    p = ck.Producer({"bootstrap.servers": boot, "transactional.id": "tx-other"})
    try:
        p.init_transactions(10)
        raise AssertionError("init_transactions succeeded without Write on the id")
    except ck.KafkaException as e:
        assert "AUTHORIZATION" in str(e).upper(), e
    # Allowed id: a transaction may write "ok" but not "secret".
    p = _producer(boot, "tx-allowed")
    p.begin_transaction()
    p.produce("secret", value=b"forged")
    p.flush(10)
    try:
        p.commit_transaction(10)
        raise AssertionError("a transaction wrote a topic the principal cannot write")
    except ck.KafkaException:
        pass
    admin = ck.Consumer({"bootstrap.servers": boot, "group.id": "peek"})
    lo, hi = admin.get_watermark_offsets(ck.TopicPartition("secret", 0), 10)
    admin.close()
    assert hi == 0, f"{hi} records reached the topic"


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _batch(attrs, pid=-1, epoch=-1, seq=-1):
    """One v2 record batch holding one record (value "x")."""
    rec = bytes([0, 0, 0, 1, 2]) + b"x" + bytes([0])  # attrs, ts/offset delta, null key, value
    rec = bytes([len(rec) * 2]) + rec
    after_crc = struct.pack(">hiqqqhii", attrs, 0, 0, 0, pid, epoch, seq, 1) + rec
    head = struct.pack(">qiib", 0, 4 + 1 + 4 + len(after_crc), 0, 2)
    return head + struct.pack(">I", _crc32c(after_crc)) + after_crc


def _produce_raw(port, batch, txn_id=None, topic=b"raw"):
    """Produce v3 of one batch to partition 0; returns the partition's error code."""
    tid = struct.pack(">h", -1) if txn_id is None else struct.pack(">h", len(txn_id)) + txn_id
    body = tid + struct.pack(">hii", -1, 5000, 1) + struct.pack(">h", len(topic)) + topic + \
        struct.pack(">iii", 1, 0, len(batch)) + batch
    hdr = struct.pack(">hhih", 0, 3, 7, 1) + b"t"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            buf += chunk
    # size, corr, topics[1], name, partitions[1], index, error
    pos = 4 + 4 + 4
    (n,) = struct.unpack(">h", buf[pos:pos + 2])
    pos += 2 + n + 4 + 4
    return struct.unpack(">h", buf[pos:pos + 2])[0]


def test_transactional_or_control_batches_outside_a_transaction_are_refused():
    """The hole a transaction must not open: a producer writing batches flagged transactional
    without the coordinator (the LSO would not hold them back, no marker would end them) or
    forging control batches (an abort marker hiding another producer's records)."""
    ctx = harness.ctx()
    port = harness.free_port()
    _start(ctx, port=port, topics="raw:1")
    assert _produce_raw(port, _batch(0)) == 0  # a plain batch goes in: the request is right
    assert _produce_raw(port, _batch(0x10, pid=4242, epoch=0, seq=0)) == 87  # INVALID_RECORD
    assert _produce_raw(port, _batch(0x30, pid=4242, epoch=0)) == 87
    assert _produce_raw(port, _batch(0x30, pid=4242, epoch=0), txn_id=b"ghost") == 87
    # A transactional id the coordinator does not know: INVALID_PRODUCER_ID_MAPPING.
    assert _produce_raw(port, _batch(0x10, pid=4242, epoch=0, seq=0), txn_id=b"ghost") == 49
    # A non-transactional batch sent under a transactional id.
    assert _produce_raw(port, _batch(0), txn_id=b"ghost") == 87


def test_kafkajs_transactions_commit_abort_and_send_offsets():
    """kafkajs (installed for the compatibility suite, tests/compat/package.json)."""
    kafkajs = os.path.join(harness.ROOT, "tests", "compat", "node_modules", "kafkajs")
    if not os.path.isdir(kafkajs):
        raise harness.Skip("kafkajs not installed (make deps installs tests/compat/)")
    ctx = harness.ctx()
    _, boot, _ = _start(ctx, topics="js:2,js-in:1")
    script = os.path.join(harness.ROOT, "tests", "integration", "broker_txn_kafkajs.mjs")
    p = subprocess.run(["node", script, kafkajs, json.dumps({"bootstrap": boot})],
                       capture_output=True, timeout=90 * harness.timeout_mult())
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    assert json.loads(p.stdout.decode().strip().splitlines()[-1])["ok"] is True


def test_restart_finishes_a_transaction_caught_between_prepare_and_its_markers():
    """A crash after EndTxn persisted PREPARE_COMMIT / PREPARE_ABORT but before every marker was
    written leaves txn.state in that state: the broker writes the markers on start. The state
    is made by SIGKILL mid-transaction and then set to what the crash would have left."""
    _need_ck()
    ctx = harness.ctx()
    port = harness.free_port()
    for outcome in ("commit", "abort"):
        proc, boot, data = _start(ctx, data=ctx.path(f"data-{outcome}", "x")[:-2], port=port,
                                  topics="prep:2")
        p = _producer(boot, f"tx-{outcome}", **{"acks": "all"})
        p.begin_transaction()
        _produce(p, "prep", [f"{outcome}-{i}" for i in range(8)])
        proc.kill()
        path = os.path.join(data, "txn.state")
        state = json.load(open(path))
        [t] = [t for t in state["transactions"] if t["id"] == f"tx-{outcome}"]
        assert t["state"] == "ongoing", t
        t["state"] = f"prepare_{outcome}"
        with open(path, "w") as f:
            json.dump(state, f)
        proc, boot, _ = _start(ctx, data=data, port=port, topics="prep:2")
        harness.wait_for(lambda: f"finishing its {outcome} after a restart" in proc.log(), 10,
                         what="the recovery")
        state = json.load(open(path))
        [t] = [t for t in state["transactions"] if t["id"] == f"tx-{outcome}"]
        assert t["state"] == f"complete_{outcome}" and not t["partitions"], t
        got = _read(boot, "prep", "read_committed", want=8 if outcome == "commit" else None,
                    idle_s=2)
        if outcome == "commit":
            assert sorted(got) == sorted(f"commit-{i}" for i in range(8)), got
        else:
            assert got == [], got
            assert len(_read(boot, "prep", "read_uncommitted", want=8)) == 8
        proc.stop()
        del p


def test_time_out_of_a_transaction_left_open_by_a_crash_counts_across_the_restart():
    """The time-out is counted from the transaction's start by the wall clock: a transaction
    open when the broker was SIGKILLed is aborted once its time-out has passed, with no
    producer coming back for it."""
    _need_ck()
    ctx = harness.ctx()
    port = harness.free_port()
    proc, boot, data = _start(ctx, port=port, topics="orphan:1")
    p = _producer(boot, "tx-orphan", **{"transaction.timeout.ms": 3000,
                                        "message.timeout.ms": 3000, "acks": "all"})
    p.begin_transaction()
    _produce(p, "orphan", [f"o-{i}" for i in range(4)])
    begun = time.monotonic()  # the transaction started before this (AddPartitionsToTxn)
    proc.kill()
    # The broker stays down past the time-out: the scenario, not a wait for a condition.
    harness.wait_for(lambda: time.monotonic() - begun > 3.2, 10, what="the down time")
    proc, boot, _ = _start(ctx, data=data, port=port, topics="orphan:1")
    harness.wait_for(lambda: "aborted after its time-out" in proc.log(), 20,
                     what="the time-out abort after the restart")

    def ts_of(text):
        [line] = [x for x in proc.log_lines() if x.get("msg", "").startswith(text)]
        return datetime.datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
    # At the first pass of the loop, not a whole time-out (3 s) after the restart.
    waited = (ts_of("transaction tx-orphan") - ts_of("listening on")).total_seconds()
    assert waited < 1.0, f"aborted {waited:.2f} s after the restart"
    assert _read(boot, "orphan", "read_committed", idle_s=2) == []
    assert sorted(_read(boot, "orphan", "read_uncommitted", want=4)) == \
        [f"o-{i}" for i in range(4)]
    del p
