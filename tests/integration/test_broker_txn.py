"""Transactions (KIP-98) in the embedded broker (bin/bus-broker), through librdkafka's
transactional producer (python3-confluent-kafka): commit and abort, read_committed consumers
that see committed records only, offsets committed with the transaction, abort on the
transaction time-out, fencing, a SIGKILL of the broker mid-transaction, the ACLs on
transactional ids, and OffsetFetch v7's require_stable (KIP-447): a read_committed consumer
does not read offsets a transaction is about to replace. docs/broker.md "Transactions"."""
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


def _request(port, hdr, body):
    """One request frame (header hdr, then body) on a new connection; returns the whole answer
    frame, size included, or raises AssertionError("connection closed")."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            buf += chunk
    return buf


def _produce_raw(port, batch, txn_id=None, topic=b"raw"):
    """Produce v3 of one batch to partition 0; returns the partition's error code."""
    tid = struct.pack(">h", -1) if txn_id is None else struct.pack(">h", len(txn_id)) + txn_id
    body = tid + struct.pack(">hii", -1, 5000, 1) + struct.pack(">h", len(topic)) + topic + \
        struct.pack(">iii", 1, 0, len(batch)) + batch
    buf = _request(port, struct.pack(">hhih", 0, 3, 7, 1) + b"t", body)
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


# ---- OffsetFetch v6-v7 and require_stable (KIP-447) ----

def _group_meta(boot, group):
    """The group metadata of a consumer outside the group (no member id, no generation:
    TxnOffsetCommit has nothing to check)."""
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": group})
    meta = c.consumer_group_metadata()
    c.close()
    return meta


def _pending_offsets(boot, txn_id, group, offsets):
    """A transactional producer whose open transaction holds `offsets` ([(topic, partition,
    offset)]) for group: TxnOffsetCommit done, EndTxn not yet. Returns the producer."""
    p = _producer(boot, txn_id)
    p.begin_transaction()
    p.send_offsets_to_transaction([ck.TopicPartition(t, n, o) for t, n, o in offsets],
                                  _group_meta(boot, group), 20 * harness.timeout_mult())
    return p


def _commit_plain(boot, group, offsets):
    """Commits [(topic, partition, offset)] for group outside any transaction (no member)."""
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[ck.TopicPartition(t, n, o) for t, n, o in offsets], asynchronous=False)
    c.close()


def test_committed_of_a_read_committed_consumer_waits_for_pending_transactional_offsets():
    """librdkafka sends OffsetFetch v7 with require_stable when its isolation.level is
    read_committed (the default): while an open transaction holds offsets for a partition of
    the group, the broker answers UNSTABLE_OFFSET_COMMIT and librdkafka asks again until the
    transaction ends, so committed() times out instead of answering the offset the transaction
    is about to replace. read_uncommitted asks without the flag and gets the last committed
    offset at once. After the commit the new offset is answered; after an abort the old one."""
    _need_ck()
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, topics="src:2,dst:1")
    _commit_plain(boot, "stable", [("src", 0, 2)])
    readers = {iso: ck.Consumer({"bootstrap.servers": boot, "group.id": "stable",
                                 "enable.auto.commit": False, "isolation.level": iso})
               for iso in ("read_committed", "read_uncommitted")}

    def committed(iso, timeout):
        tps = readers[iso].committed([ck.TopicPartition("src", 0), ck.TopicPartition("src", 1)],
                                     timeout * harness.timeout_mult())
        assert all(tp.error is None for tp in tps), tps
        return [tp.offset for tp in tps]

    assert committed("read_committed", 10) == [2, ck.OFFSET_INVALID]
    last = 2
    for outcome, offset in (("commit", 7), ("abort", 12)):
        p = _pending_offsets(boot, f"tx-stable-{outcome}", "stable", [("src", 0, offset)])
        _produce(p, "dst", [outcome])
        asked = _metric(proc, "bus_broker_requests_total", api="OffsetFetch")
        unstable = _metric(proc, "bus_broker_unstable_offsets_total")
        try:
            got = committed("read_committed", 2)
            raise AssertionError(f"committed() answered {got} while a transaction held offsets")
        except ck.KafkaException as e:
            assert e.args[0].code() == ck.KafkaError._TIMED_OUT, e
        # It was answered, and asked again: UNSTABLE_OFFSET_COMMIT is retriable.
        assert _metric(proc, "bus_broker_requests_total", api="OffsetFetch") >= asked + 2
        assert _metric(proc, "bus_broker_unstable_offsets_total") >= unstable + 2
        assert committed("read_uncommitted", 10) == [last, ck.OFFSET_INVALID]
        if outcome == "commit":
            p.commit_transaction(20 * harness.timeout_mult())
            last = offset
        else:
            p.abort_transaction(20 * harness.timeout_mult())
        assert committed("read_committed", 10) == [last, ck.OFFSET_INVALID], outcome
        assert committed("read_uncommitted", 10) == [last, ck.OFFSET_INVALID], outcome
    for c in readers.values():
        c.close()
    assert _read(boot, "dst", "read_committed", want=1) == ["commit"]


def test_consumer_assigned_while_a_transaction_holds_offsets_starts_where_it_commits():
    """The case KIP-447's require_stable is for: a partition changes hands while the previous
    owner's transaction holds its offsets (TxnOffsetCommit done, EndTxn not yet). The new
    owner's OffsetFetch is answered UNSTABLE_OFFSET_COMMIT until the transaction commits, then
    it starts from the committed transaction's offset: nothing the transaction covered is read
    again. (Answered with the older offset, as before v7, it started at 2.)"""
    _need_ck()
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, topics="hand:1")
    src = ck.Producer({"bootstrap.servers": boot})
    for i in range(10):
        src.produce("hand", value=f"h-{i}".encode(), partition=0)
    assert src.flush(20) == 0
    _commit_plain(boot, "handover", [("hand", 0, 2)])
    p = _pending_offsets(boot, "tx-handover", "handover", [("hand", 0, 7)])
    asked = _metric(proc, "bus_broker_requests_total", api="OffsetFetch")
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": "handover",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe(["hand"])
    seen = []

    def poll():
        seen.extend(m.offset() for m in c.consume(10, 0.2) if not m.error())
    # Assigned, and its offset fetch answered while the transaction is open (UNSTABLE_OFFSET_COMMIT:
    # librdkafka asks again and reads nothing meanwhile).
    harness.wait_for(lambda: poll() or (c.assignment() and _metric(
        proc, "bus_broker_requests_total", api="OffsetFetch") >= asked + 1), 20,
        what="the new owner's offset fetch")
    p.commit_transaction(20 * harness.timeout_mult())
    harness.wait_for(lambda: poll() or len(seen) >= 3, 20, what="records after the commit")
    harness.wait_for(lambda: poll() or c.position([ck.TopicPartition("hand", 0)])[0].offset == 10,
                     10, what="the consumer at the end")
    c.close()
    assert seen == [7, 8, 9], f"read from {seen[0]} while the transaction held offset 7: {seen}"


def _uvarint_bytes(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7f) | 0x80])
        n >>= 7
    return out + bytes([n])


def _offset_fetch(port, ver, group, topics, require_stable=False):
    """OffsetFetch v`ver` by hand; topics [(name, [partitions])] or None (all). Returns
    ({(topic, partition): (offset, metadata, error)}, top-level error), after checking that the
    answer was read to its last byte (the flexible encoding round trip from v6 on)."""
    flex = ver >= 6

    def s(x):
        b = x.encode()
        return _uvarint_bytes(len(b) + 1) + b if flex else struct.pack(">h", len(b)) + b

    def arr(items):
        if items is None:
            return _uvarint_bytes(0) if flex else struct.pack(">i", -1)
        return (_uvarint_bytes(len(items) + 1) if flex else struct.pack(">i", len(items))) + \
            b"".join(items)
    tag = b"\x00" if flex else b""
    body = s(group) + arr(None if topics is None else [
        s(t) + arr([struct.pack(">i", n) for n in parts]) + tag for t, parts in topics])
    if ver >= 7:
        body += bytes([1 if require_stable else 0])
    body += tag
    buf = _request(port, struct.pack(">hhih", 9, ver, 77, 1) + b"t" + tag, body)
    assert len(buf) == 4 + struct.unpack(">i", buf[:4])[0]
    assert struct.unpack(">i", buf[4:8])[0] == 77
    b, pos = buf[8:], 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def uv():
        nonlocal pos
        v, shift = 0, 0
        while True:
            c = b[pos]
            pos += 1
            v |= (c & 0x7f) << shift
            if not c & 0x80:
                return v
            shift += 7

    def rs():
        nonlocal pos
        n = uv() - 1 if flex else take(">h")
        if n < 0:
            return None
        pos += n
        return b[pos - n:pos].decode()

    def ra():
        return uv() - 1 if flex else take(">i")
    if flex:
        assert uv() == 0  # response header v1: no tagged fields
    if ver >= 3:
        assert take(">i") == 0
    out = {}
    for _ in range(ra()):
        name = rs()
        for _ in range(ra()):
            part, off = take(">i"), take(">q")
            if ver >= 5:
                assert take(">i") == -1
            meta, err = rs(), take(">h")
            if flex:
                assert uv() == 0
            out[(name, part)] = (off, meta, err)
        if flex:
            assert uv() == 0
    top = take(">h") if ver >= 2 else 0
    if flex:
        assert uv() == 0
    assert pos == len(b), f"{len(b) - pos} bytes after the answer"
    return out, top


def test_offset_fetch_v6_v7_encoding_and_require_stable_at_the_byte_level():
    """v7 with require_stable answers UNSTABLE_OFFSET_COMMIT (88) and offset -1 for a partition
    an open transaction holds offsets for, and the last committed offset for the others (the
    null-topics form too, per partition, as Kafka's coordinator does); without the flag, in v6
    and in v1-v5 the last committed offsets are answered. The pending offsets survive a SIGKILL
    of the broker (txn.state), and a new producer with the id aborts them."""
    _need_ck()
    ctx = harness.ctx()
    port = harness.free_port()
    proc, boot, data = _start(ctx, port=port, topics="rawt:2")
    _commit_plain(boot, "rawg", [("rawt", 0, 3), ("rawt", 1, 4)])
    stable = {("rawt", 0): (3, "", 0), ("rawt", 1): (4, "", 0)}
    unstable = {("rawt", 0): (-1, "", 88), ("rawt", 1): (4, "", 0)}
    both = [("rawt", [0, 1])]
    for ver in (1, 2, 3, 4, 5, 6, 7):
        assert _offset_fetch(port, ver, "rawg", both) == (stable, 0), ver
    p = _pending_offsets(boot, "tx-raw", "rawg", [("rawt", 0, 9)])

    def check_pending():
        assert _offset_fetch(port, 7, "rawg", both, require_stable=True) == (unstable, 0)
        assert _offset_fetch(port, 7, "rawg", None, require_stable=True) == (unstable, 0)
        assert _offset_fetch(port, 7, "rawg", both) == (stable, 0)
        assert _offset_fetch(port, 7, "rawg", None) == (stable, 0)
        for ver in (1, 2, 3, 4, 5, 6):
            assert _offset_fetch(port, ver, "rawg", both) == (stable, 0), ver
        assert _offset_fetch(port, 6, "rawg", None) == (stable, 0)
        # Another group's offsets of the same partition are not held.
        assert _offset_fetch(port, 7, "other", [("rawt", [0])], require_stable=True) == \
            ({("rawt", 0): (-1, "", 0)}, 0)
    check_pending()
    proc.kill()
    proc, boot, _ = _start(ctx, data=data, port=port, topics="rawt:2")
    check_pending()
    p2 = _producer(boot, "tx-raw")  # aborts what the first producer left open
    assert _offset_fetch(port, 7, "rawg", both, require_stable=True) == (stable, 0)
    p2.begin_transaction()
    p2.send_offsets_to_transaction([ck.TopicPartition("rawt", 1, 11)],
                                   _group_meta(boot, "rawg"), 20 * harness.timeout_mult())
    assert _offset_fetch(port, 7, "rawg", both, require_stable=True) == \
        ({("rawt", 0): (3, "", 0), ("rawt", 1): (-1, "", 88)}, 0)
    p2.commit_transaction(20 * harness.timeout_mult())
    assert _offset_fetch(port, 7, "rawg", both, require_stable=True) == \
        ({("rawt", 0): (3, "", 0), ("rawt", 1): (11, "", 0)}, 0)
    del p


def _offset_commit_v2(port, group, topic, entries):
    """OffsetCommit v2 by hand, as a consumer outside any generation (generation -1, no member):
    entries [(partition, offset)]. Returns {(partition): error} in order, or raises
    AssertionError("connection closed") when the broker closes the connection."""
    s = lambda x: struct.pack(">h", len(x)) + x.encode()  # noqa: E731
    parts = b"".join(struct.pack(">iq", p, o) + s("") for p, o in entries)
    body = s(group) + struct.pack(">i", -1) + s("") + struct.pack(">q", -1) + \
        struct.pack(">i", 1) + s(topic) + struct.pack(">i", len(entries)) + parts
    buf = _request(port, struct.pack(">hhih", 8, 2, 78, 1) + b"t", body)
    b, pos = buf[8:], 0
    n_topics = struct.unpack_from(">i", b, pos)[0]
    assert n_topics == 1
    pos += 4
    pos += 2 + struct.unpack_from(">h", b, pos)[0]
    n = struct.unpack_from(">i", b, pos)[0]
    pos += 4
    return [struct.unpack_from(">ih", b, pos + 6 * i)[1] for i in range(n)]


def _closed(fn):
    try:
        fn()
    except AssertionError as e:
        return "connection closed" in str(e)
    except ConnectionError:
        return True
    return False


def test_offset_requests_listing_more_partitions_than_the_broker_may_hold_are_refused():
    """An OffsetCommit or OffsetFetch lists at most max_partitions partitions (each one is looked
    up among the committed offsets: a 16 MiB request listing millions held the event loop): past
    it the connection is closed and nothing is committed; up to it the request is answered."""
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, max_partitions=20, topics="t:2")
    port = int(boot.rsplit(":", 1)[1])
    # at the limit: 20 entries (partitions 0 and 1, again and again) are committed
    errs = _offset_commit_v2(port, "g", "t", [(i % 2, 5) for i in range(20)])
    assert errs == [0] * 20
    out, top = _offset_fetch(port, 5, "g", [("t", [i % 2 for i in range(20)])])
    assert top == 0 and out[("t", 0)][0] == 5 and out[("t", 1)][0] == 5
    # one past it: refused whole, the offsets stay
    assert _closed(lambda: _offset_commit_v2(port, "g", "t", [(i % 2, 9) for i in range(21)]))
    assert _closed(lambda: _offset_fetch(port, 5, "g", [("t", [0] * 10), ("t", [1] * 11)]))
    out, _ = _offset_fetch(port, 7, "g", [("t", [0, 1])], require_stable=True)
    assert out[("t", 0)][0] == 5 and out[("t", 1)][0] == 5
    assert proc.alive()
