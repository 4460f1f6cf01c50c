"""The embedded broker's admin calls and answers (issue 22 item 4; docs/broker.md "Admin calls"):
AlterConfigs / IncrementalAlterConfigs persisted across a restart and taking effect,
DescribeConfigs with real settings, DeleteRecords, DeleteGroups, OffsetCommit of -1/-2,
ListOffsets by time at record precision, UNSUPPORTED_VERSION answers, KIP-848 refused, and the
ACLs on the new calls. Clients: Debian's python3-confluent-kafka (librdkafka 2.0.2), kcat,
bus-kclient, and the protocol byte by byte where no installed client sends the request
(IncrementalAlterConfigs, DeleteRecords, ConsumerGroupHeartbeat: librdkafka 2.0.2 and
confluent-kafka 1.7.0 expose none of them)."""
import glob
import json
import os
import socket
import struct
import subprocess

import harness


# ---- the protocol by hand ----

def _s(x):
    if x is None:
        return struct.pack(">h", -1)
    b = x.encode() if isinstance(x, str) else x
    return struct.pack(">h", len(b)) + b


def _arr(items):
    return struct.pack(">i", len(items)) + b"".join(items)


class _R:
    """A reader over an answer."""

    def __init__(self, b):
        self.b, self.p = b, 0

    def _take(self, fmt):
        n = struct.calcsize(fmt)
        v = struct.unpack(fmt, self.b[self.p:self.p + n])[0]
        self.p += n
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def s(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.b[self.p:self.p + n].decode()
        self.p += n
        return v

    def uvarint(self):
        v, shift = 0, 0
        while True:
            c = self.b[self.p]
            self.p += 1
            v |= (c & 0x7f) << shift
            if not c & 0x80:
                return v
            shift += 7

    def cs(self):
        n = self.uvarint()
        if n == 0:
            return None
        v = self.b[self.p:self.p + n - 1].decode()
        self.p += n - 1
        return v


class _Conn:
    """One raw connection; call() sends a request and returns the answer after its
    correlation id."""

    def __init__(self, boot):
        host, port = boot.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.corr = 0

    def call(self, key, ver, body, flexible=False):
        self.corr += 1
        hdr = struct.pack(">hhi", key, ver, self.corr) + _s("admin-test") + \
            (b"\x00" if flexible else b"")
        self.sock.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
        size = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(size)
        assert struct.unpack(">i", data[:4])[0] == self.corr
        return _R(data[4:])

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "connection closed by the broker"
            buf += chunk
        return buf

    def sasl_plain(self, user, pw):
        r = self.call(17, 1, _s("PLAIN"))
        assert r.i16() == 0
        tok = b"\x00" + user.encode() + b"\x00" + pw.encode()
        r = self.call(36, 0, struct.pack(">i", len(tok)) + tok)
        assert r.i16() == 0, "PLAIN authentication"

    def close(self):
        self.sock.close()


def _incremental_alter(conn, topic, ops, validate_only=False):
    """IncrementalAlterConfigs v0 of one topic: ops [(name, op, value)]; returns (err, msg)."""
    cfgs = [_s(n) + struct.pack(">b", op) + _s(v) for n, op, v in ops]
    body = _arr([struct.pack(">b", 2) + _s(topic) + _arr(cfgs)]) + \
        struct.pack(">b", 1 if validate_only else 0)
    r = conn.call(44, 0, body)
    assert r.i32() == 0 and r.i32() == 1
    err, msg = r.i16(), r.s()
    assert (r.i8(), r.s()) == (2, topic)
    return err, msg


def _alter(conn, rtype, name, cfgs):
    """AlterConfigs v0 of one resource: cfgs {name: value}; returns (err, msg)."""
    entries = [_s(k) + _s(v) for k, v in cfgs.items()]
    r = conn.call(33, 0, _arr([struct.pack(">b", rtype) + _s(name) + _arr(entries)]) + b"\x00")
    assert r.i32() == 0 and r.i32() == 1
    err, msg = r.i16(), r.s()
    assert (r.i8(), r.s()) == (rtype, name)
    return err, msg


def _describe(conn, rtype, name, keys=None):
    """DescribeConfigs v1 with synonyms: (err, {name: (value, read_only, source, synonyms)})."""
    body = _arr([struct.pack(">b", rtype) + _s(name) +
                 (struct.pack(">i", -1) if keys is None else _arr([_s(k) for k in keys]))])
    r = conn.call(32, 1, body + b"\x01")
    assert r.i32() == 0 and r.i32() == 1
    err, _ = r.i16(), r.s()
    r.i8()
    r.s()
    out = {}
    for _ in range(r.i32()):
        n, v, ro, src, _sens = r.s(), r.s(), r.i8(), r.i8(), r.i8()
        syn = [(r.s(), r.s(), r.i8()) for _ in range(r.i32())]
        out[n] = (v, ro, src, syn)
    return err, out


def _list_offset(conn, topic, part, ts):
    """ListOffsets v1: (error, timestamp, offset)."""
    body = struct.pack(">i", -1) + _arr([_s(topic) + _arr([struct.pack(">iq", part, ts)])])
    r = conn.call(2, 1, body)
    assert r.i32() == 1 and r.s() == topic and r.i32() == 1
    assert r.i32() == part
    return r.i16(), r.i64(), r.i64()


def _delete_records(conn, topic, part, offset):
    """DeleteRecords v0: (error, low watermark)."""
    body = _arr([_s(topic) + _arr([struct.pack(">iq", part, offset)])]) + struct.pack(">i", 5000)
    r = conn.call(21, 0, body)
    assert r.i32() == 0 and r.i32() == 1 and r.s() == topic and r.i32() == 1
    assert r.i32() == part
    low = r.i64()
    return r.i16(), low


def _fetch_error(conn, topic, part, offset):
    """Fetch v4 of one partition: (error, log end)."""
    body = struct.pack(">iiiib", -1, 0, 1, 1 << 20, 0) + \
        _arr([_s(topic) + _arr([struct.pack(">iqi", part, offset, 1 << 20)])])
    r = conn.call(1, 4, body)
    r.i32()
    assert r.i32() == 1 and r.s() == topic and r.i32() == 1
    assert r.i32() == part
    return r.i16(), r.i64()


def _commit(conn, group, topic, part, offset):
    """A simple OffsetCommit v2 (no generation): the partition's error."""
    body = _s(group) + struct.pack(">i", -1) + _s("") + struct.pack(">q", -1) + \
        _arr([_s(topic) + _arr([struct.pack(">iq", part, offset) + _s("")])])
    r = conn.call(8, 2, body)
    assert r.i32() == 1 and r.s() == topic and r.i32() == 1
    assert r.i32() == part
    return r.i16()


def _committed(conn, group, topic, part):
    """OffsetFetch v1: the committed offset."""
    r = conn.call(9, 1, _s(group) + _arr([_s(topic) + _arr([struct.pack(">i", part)])]))
    assert r.i32() == 1 and r.s() == topic and r.i32() == 1
    assert r.i32() == part
    off = r.i64()
    r.s()
    assert r.i16() == 0
    return off


def _delete_groups(conn, groups):
    """DeleteGroups v0: {group: error}."""
    r = conn.call(42, 0, _arr([_s(g) for g in groups]))
    r.i32()
    return {r.s(): r.i16() for _ in range(r.i32())}


# ---- brokers and clients ----

def _start(ctx, data=None, port=None, **extra):
    port = port or harness.free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "data_dir": data or ctx.path("data", "x")[:-2],
           "http.listen": f"127.0.0.1:{harness.free_port()}"}
    cfg.update(extra)
    proc = ctx.start("bus-broker", config=cfg, http=False)
    harness.wait_for(lambda: harness.tcp_open(port) or harness._raise_exit(proc), 10,
                     what="broker port")
    return proc, f"127.0.0.1:{port}", cfg["data_dir"]


def _py(code, *args, timeout=60):
    """Runs code in Debian's python3 (python3-confluent-kafka); returns stdout."""
    p = subprocess.run(["/usr/bin/python3", "-c", code] + [str(a) for a in args],
                       capture_output=True, timeout=timeout * harness.timeout_mult())
    if p.returncode == 3:
        raise harness.Skip(p.stderr.decode().strip())
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    return p.stdout.decode()


CK_CONFIGS = r"""
import json, sys
try:
    from confluent_kafka.admin import AdminClient, ConfigResource
except ImportError:
    sys.exit(3)
boot, topic, changes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
a = AdminClient({"bootstrap.servers": boot})
res = ConfigResource("topic", topic)
if changes:
    for k, v in changes.items():
        res.set_config(k, v)
    a.alter_configs([res])[res].result(30)
got = a.describe_configs([ConfigResource("topic", topic)])
out = {}
for r, f in got.items():
    for name, e in f.result(30).items():
        out[name] = [e.value, e.source, e.is_default]
print(json.dumps(out))
"""


def _produce(boot, topic, n, size=100):
    lines = "".join(f"{i:06d}" + "x" * size + "\n" for i in range(n)).encode()
    harness.kcat(["-P", "-b", boot, "-t", topic, "-p", "0", "-X", "acks=all",
                  "-X", "batch.num.messages=10"], input_bytes=lines)


def _low_high(conn, topic, part=0):
    return (_list_offset(conn, topic, part, -2)[2], _list_offset(conn, topic, part, -1)[2])


# ---- configs ----

def test_alter_configs_take_effect_survive_a_restart_and_describe_tells_the_source():
    ctx = harness.ctx()
    port = harness.free_port()
    opts = dict(segment_bytes=4096, retention_check_ms=100, topics="ret:1,other:1")
    proc, boot, data = _start(ctx, port=port, **opts)
    _produce(boot, "ret", 200)
    conn = _Conn(boot)
    assert _low_high(conn, "ret") == (0, 200)
    assert len(glob.glob(os.path.join(data, "ret-0", "*.log"))) > 3, "several segments"

    # Before: every setting inherited from the broker's config file (STATIC_BROKER_CONFIG = 4).
    got = json.loads(_py(CK_CONFIGS, boot, "ret", "{}"))
    assert got["retention.ms"][0] == "604800000" and got["retention.ms"][1] == 4
    assert got["segment.bytes"][0] == "4096"
    assert got["cleanup.policy"][0] == "delete" and got["min.insync.replicas"][0] == "1"

    # AlterConfigs through librdkafka: the new retention deletes the old segments at once.
    got = json.loads(_py(CK_CONFIGS, boot, "ret",
                         json.dumps({"retention.ms": "1000", "cleanup.policy": "delete"})))
    assert got["retention.ms"][:2] == ["1000", 1], got  # DYNAMIC_TOPIC_CONFIG
    assert got["cleanup.policy"][:2] == ["delete", 1]
    assert got["segment.bytes"][:2] == ["4096", 4], "AlterConfigs: what is not named is default"
    # Every segment but the active one (at most 4096 bytes: the last ~40 records) goes.
    harness.wait_for(lambda: _low_high(conn, "ret")[0] > 150, 20,
                     what="retention.ms=1000 deletes the old segments")
    low, high = _low_high(conn, "ret")
    assert high == 200, (low, high)
    assert "retention: deleted segment" in proc.log()

    # IncrementalAlterConfigs: SET one, DELETE another (back to the default), the rest kept.
    assert _incremental_alter(conn, "ret", [("retention.bytes", 0, "123456"),
                                            ("retention.ms", 1, None)]) == (0, None)
    err, cfg = _describe(conn, 2, "ret")
    assert err == 0
    assert cfg["retention.bytes"][:3] == ("123456", 0, 1)
    assert cfg["retention.ms"][:3] == ("604800000", 0, 4)
    assert ("log.retention.ms", "", 4) in cfg["retention.ms"][3], "synonym names the source"
    assert cfg["cleanup.policy"][2] == 1, "kept from the earlier change"
    # validate_only changes nothing.
    assert _incremental_alter(conn, "ret", [("segment.bytes", 0, "8192")], True) == (0, None)
    assert _describe(conn, 2, "ret", ["segment.bytes"])[1]["segment.bytes"][0] == "4096"
    # min.insync.replicas is stored and enforced as Kafka does with one in-sync replica.
    assert _incremental_alter(conn, "other", [("min.insync.replicas", 0, "2")]) == (0, None)
    p = subprocess.run(["kcat", "-P", "-b", boot, "-t", "other", "-X", "acks=all",
                        "-X", "message.send.max.retries=0"], input=b"m\n", capture_output=True,
                       timeout=30 * harness.timeout_mult())
    assert b"Broker: Not enough in-sync replicas" in p.stderr, p.stderr
    assert _incremental_alter(conn, "other", [("min.insync.replicas", 1, None)]) == (0, None)

    # Refused with a sentence, nothing changed: compaction, unknown keys, bad values, the broker.
    err, msg = _incremental_alter(conn, "ret", [("cleanup.policy", 0, "compact")])
    assert err == 40 and "no log compaction" in msg
    err, msg = _incremental_alter(conn, "ret", [("max.message.bytes", 0, "10")])
    assert err == 40 and "unsupported topic config max.message.bytes" in msg
    err, msg = _alter(conn, 2, "ret", {"segment.bytes": "12"})
    assert err == 40 and "segment.bytes must be" in msg
    err, msg = _alter(conn, 4, "0", {"log.retention.ms": "1"})
    assert err == 42 and "configuration file" in msg
    assert _incremental_alter(conn, "nope", [("retention.ms", 0, "1")])[0] == 3
    assert _describe(conn, 2, "ret", ["retention.bytes"])[1]["retention.bytes"][0] == "123456"

    # The broker's own settings, read-only, from its config file.
    err, cfg = _describe(conn, 4, "0")
    assert err == 0
    assert cfg["log.segment.bytes"][:3] == ("4096", 1, 4)
    assert cfg["log.retention.check.interval.ms"][0] == "100"
    assert cfg["auto.create.topics.enable"][0] in ("true", "false")
    conn.close()

    # A restart keeps every topic's settings and the log start.
    proc.stop()
    _, boot, _ = _start(ctx, data=data, port=port, **opts)
    conn = _Conn(boot)
    err, cfg = _describe(conn, 2, "ret")
    assert cfg["retention.bytes"][:3] == ("123456", 0, 1)
    assert cfg["cleanup.policy"][2] == 1 and cfg["retention.ms"][2] == 4
    assert _low_high(conn, "ret") == (low, 200)
    conn.close()


# ---- DeleteRecords ----

def test_delete_records_moves_the_log_start_for_fetch_list_offsets_and_restarts():
    ctx = harness.ctx()
    port = harness.free_port()
    proc, boot, data = _start(ctx, port=port, segment_bytes=4096, topics="dr:1")
    _produce(boot, "dr", 100)
    conn = _Conn(boot)
    assert _delete_records(conn, "dr", 0, 40) == (0, 40)
    assert _low_high(conn, "dr") == (40, 100)
    assert _fetch_error(conn, "dr", 0, 39)[0] == 1, "below the log start: OFFSET_OUT_OF_RANGE"
    assert _fetch_error(conn, "dr", 0, 40)[0] == 0
    # Whole segments below the new start are gone from the disk.
    bases = sorted(int(os.path.basename(f)[:20])
                   for f in glob.glob(os.path.join(data, "dr-0", "*.log")))
    assert bases[0] > 0 and bases[0] <= 40, bases
    # A client reading from the beginning starts at 40 (kcat -o beginning = ListOffsets -2).
    out = harness.kcat(["-C", "-b", boot, "-t", "dr", "-o", "beginning", "-e", "-q",
                        "-f", "%o\\n"]).decode().split()
    assert [int(o) for o in out] == list(range(40, 100))
    # Going backwards changes nothing; past the end is refused; -1 means the high watermark.
    assert _delete_records(conn, "dr", 0, 10) == (0, 40)
    assert _delete_records(conn, "dr", 0, 101)[0] == 1
    assert _delete_records(conn, "dr", 0, 60) == (0, 60)
    assert _delete_records(conn, "dr", 5, 1)[0] == 3
    conn.close()
    proc.kill()  # the new start is durable before the answer
    proc, boot, _ = _start(ctx, data=data, port=port, segment_bytes=4096, topics="dr:1")
    conn = _Conn(boot)
    assert _low_high(conn, "dr") == (60, 100)
    assert _fetch_error(conn, "dr", 0, 59)[0] == 1
    # librdkafka's DeleteRecords (bus-kclient) reads the same answer.
    assert _kclient("delete-records", boot, "dr", 0, 80) == "LOW 80"
    assert _kclient("delete-records", boot, "dr", 0, 500).startswith("ERR OFFSET_OUT_OF_RANGE")
    assert _low_high(conn, "dr") == (80, 100)
    assert _delete_records(conn, "dr", 0, -1) == (0, 100)
    _produce(boot, "dr", 5)
    assert _low_high(conn, "dr") == (100, 105)
    conn.close()


# ---- groups and committed offsets ----

def _kclient(*args):
    """bus-kclient (librdkafka 2.0.2's Admin API): its first output line."""
    p = subprocess.run([harness.bin_path("bus-kclient")] + [str(a) for a in args],
                       capture_output=True, timeout=60 * harness.timeout_mult())
    return p.stdout.decode().strip().splitlines()[0] if p.stdout.strip() else p.stderr.decode()


def test_offset_commit_of_minus_one_and_minus_two_is_stored_and_groups_delete():
    ctx = harness.ctx()
    port = harness.free_port()
    proc, boot, data = _start(ctx, port=port, topics="g:2")
    _produce(boot, "g", 10)
    conn = _Conn(boot)
    # kafkajs's admin.resetOffsets commits -2 (earliest) / -1 (latest) and waits for success.
    assert _commit(conn, "reset", "g", 0, -2) == 0
    assert _commit(conn, "reset", "g", 1, 7) == 0
    assert _committed(conn, "reset", "g", 0) == -2
    assert _commit(conn, "latest", "g", 0, -1) == 0
    assert _committed(conn, "latest", "g", 0) == -1
    conn.close()
    proc.stop()
    proc, boot, _ = _start(ctx, data=data, port=port, topics="g:2")
    conn = _Conn(boot)
    assert _committed(conn, "reset", "g", 0) == -2, "kept across a restart"
    assert _committed(conn, "reset", "g", 1) == 7

    # DeleteGroups: an empty group goes with its offsets; an unknown one and a group with a
    # live member are refused with Kafka's codes.
    member = ctx.start("bus-kclient", args=["consume", boot, "live", "g", "60"], http=False,
                       name="member")
    harness.wait_for(lambda: "ASSIGNED" in member.log(), 20, what="member assigned")
    assert _delete_groups(conn, ["reset", "never-seen", "live"]) == \
        {"reset": 0, "never-seen": 69, "live": 68}
    assert _committed(conn, "reset", "g", 1) == -1
    assert _commit(conn, "rk", "g", 0, 1) == 0
    assert _kclient("delete-group", boot, "rk") == "OK", "librdkafka's DeleteGroups"
    assert _kclient("delete-group", boot, "live") == "ERR NON_EMPTY_GROUP"
    assert _committed(conn, "rk", "g", 0) == -1
    member.stop()
    # kafka-python's admin client (DeleteGroups v1, DescribeConfigs v0 of the broker and a
    # topic, AlterConfigs v0) reads the same answers.
    assert _commit(conn, "kp", "g", 0, 3) == 0
    out = json.loads(_py(KP_ADMIN, boot))
    assert out["deleted"] == [["kp", 0], ["never-seen", 69]], out
    assert out["broker"]["log.retention.ms"] == "604800000", out
    assert out["topic"]["retention.ms"] == "3600000", out
    assert _committed(conn, "kp", "g", 0) == -1
    conn.close()
    proc.kill()
    proc, boot, _ = _start(ctx, data=data, port=port, topics="g:2")
    conn = _Conn(boot)
    assert _committed(conn, "reset", "g", 1) == -1, "the deletion is durable"
    conn.close()


KP_ADMIN = r"""
import json, sys
try:
    from kafka.admin import KafkaAdminClient, ConfigResource, ConfigResourceType
except ImportError:
    sys.exit(3)
a = KafkaAdminClient(bootstrap_servers=sys.argv[1], api_version_auto_timeout_ms=10000)
deleted = [[g, e.errno] for g, e in a.delete_consumer_groups(["kp", "never-seen"])]
a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "g",
                                configs={"retention.ms": "3600000"})])
out = {"deleted": deleted}
for key, res in (("broker", ConfigResource(ConfigResourceType.BROKER, "0")),
                 ("topic", ConfigResource(ConfigResourceType.TOPIC, "g"))):
    r = a.describe_configs([res])[0].resources[0]
    assert r[0] == 0, r
    out[key] = {e[0]: e[1] for e in r[4]}
a.close()
print(json.dumps(out))
"""


# ---- ListOffsets by time ----

CK_TIMES = r"""
import json, sys
try:
    import confluent_kafka as ck
except ImportError:
    sys.exit(3)
boot, base, topic, codec = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
p = ck.Producer({"bootstrap.servers": boot, "linger.ms": 1000, "batch.num.messages": 100,
                 "compression.type": codec})
# The leader known and connected first: messages produced before that may leave in batches of
# one as the partition becomes known.
p.list_topics(topic, timeout=20)
# Values that compress (librdkafka sends a batch uncompressed when compressing does not pay).
for i in range(10):
    p.produce(topic, value=b"v%d" % i + b"x" * 200, partition=0, timestamp=base + 1000 * i)
assert p.flush(30) == 0
c = ck.Consumer({"bootstrap.servers": boot, "group.id": "t"})
out = []
for ts in (base - 5, base + 4500, base + 5000, base + 9000, base + 9001):
    r = c.offsets_for_times([ck.TopicPartition(topic, 0, ts)], 20)
    out.append(r[0].offset)
print(json.dumps(out))
"""


def _one_batch_codec(data, topic):
    """The codec (attributes bits 0-2) of the only batch in topic's partition 0 log."""
    logs = glob.glob(os.path.join(data, f"{topic}-0", "*.log"))
    with open(logs[0], "rb") as f:
        log = f.read()
    batches, pos = [], 0
    while pos + 61 <= len(log):
        batches.append(struct.unpack(">qi", log[pos:pos + 12]) +
                       struct.unpack(">i", log[pos + 57:pos + 61]))
        pos += 12 + batches[-1][1]
    assert len(batches) == 1, f"{topic}: one batch, not (base, length, count) {batches} {logs}"
    return struct.unpack(">h", log[21:23])[0] & 7


def test_list_offsets_by_time_answers_at_record_precision_and_minus_one_past_the_end():
    ctx = harness.ctx()
    _, boot, data = _start(ctx, topics="times:1,gz:1")
    base = 1700000000000
    got = json.loads(_py(CK_TIMES, boot, base, "times", "none"))
    # The ten records went as one batch (so batch precision would answer 0 throughout).
    assert _one_batch_codec(data, "times") == 0
    assert got == [0, 5, 5, 9, -1], got
    conn = _Conn(boot)
    assert _list_offset(conn, "times", 0, base + 4500) == (0, base + 5000, 5)
    assert _list_offset(conn, "times", 0, base + 20000) == (0, -1, -1)
    # The same in one gzip batch: the broker inflates it and answers the record, as Kafka does
    # (it answered the batch's first offset). librdkafka compresses at all only because the
    # broker advertises Produce and Fetch from v0 (test_old_produce_and_fetch_versions...).
    got = json.loads(_py(CK_TIMES, boot, base, "gz", "gzip"))
    codec = _one_batch_codec(data, "gz")
    assert codec == 1, f"a gzip batch, not codec {codec}"
    assert got == [0, 5, 5, 9, -1], got
    assert _list_offset(conn, "gz", 0, base + 4500) == (0, base + 5000, 5)
    # Records below the log start are never answered, inside a gzip batch too.
    assert _delete_records(conn, "gz", 0, 7) == (0, 7)
    assert _list_offset(conn, "gz", 0, base + 4500) == (0, base + 7000, 7)
    assert _list_offset(conn, "gz", 0, base + 20000) == (0, -1, -1)
    conn.close()


# ---- versions the broker does not serve ----

def test_old_produce_and_fetch_versions_get_unsupported_version_and_the_connection_lives():
    ctx = harness.ctx()
    proc, boot, _ = _start(ctx, topics="old:1")
    conn = _Conn(boot)
    msgset = b"\x00" * 26
    r = conn.call(0, 2, struct.pack(">hi", 1, 1000) +
                  _arr([_s("old") + _arr([struct.pack(">i", 0) + struct.pack(">i", 26) + msgset])]))
    assert r.i32() == 1 and r.s() == "old" and r.i32() == 1
    assert (r.i32(), r.i16(), r.i64(), r.i64(), r.i32()) == (0, 35, -1, -1, 0)
    r = conn.call(1, 3, struct.pack(">iiii", -1, 100, 1, 1 << 20) +
                  _arr([_s("old") + _arr([struct.pack(">iqi", 0, 0, 1 << 20)])]))
    assert r.i32() == 0 and r.i32() == 1 and r.s() == "old" and r.i32() == 1
    assert (r.i32(), r.i16(), r.i64(), r.i32()) == (0, 35, -1, 0)
    assert _list_offset(conn, "old", 0, -1) == (0, -1, 0), "the connection still serves"
    # ApiVersions advertises Produce and Fetch from v0 all the same (as Kafka 4.0 does for
    # Produce): librdkafka < 2.8 compresses nothing unless both ranges include v2.
    r = conn.call(18, 0, b"")
    assert r.i16() == 0
    apis = {k: (lo, hi) for k, lo, hi in ((r.i16(), r.i16(), r.i16()) for _ in range(r.i32()))}
    assert apis[0] == (0, 7) and apis[1] == (0, 11), apis
    conn.close()
    assert "unsupported Produce version 2" in proc.log()
    # acks=0 expects no answer at all: the connection is closed instead, as Kafka does.
    conn = _Conn(boot)
    req = struct.pack(">hhi", 0, 2, 9) + _s("t") + struct.pack(">hi", 0, 1000) + \
        struct.pack(">i", 0)
    conn.sock.sendall(struct.pack(">i", len(req)) + req)
    conn.sock.settimeout(10)
    assert conn.sock.recv(1) == b"", "closed without an answer"
    conn.close()
    # librdkafka told the broker is 0.9 (no ApiVersions): a clear error, not "might require
    # SASL".
    p = subprocess.run(["kcat", "-P", "-b", boot, "-t", "old", "-X", "api.version.request=false",
                        "-X", "broker.version.fallback=0.9.0", "-X", "message.timeout.ms=5000"],
                       input=b"x\n", capture_output=True, timeout=30 * harness.timeout_mult())
    err = p.stderr.decode()
    assert "Broker: API version not supported" in err and "SASL" not in err, err


def test_kip848_consumer_group_heartbeat_is_refused_with_a_sentence():
    ctx = harness.ctx()
    _, boot, _ = _start(ctx, topics="k:1")
    conn = _Conn(boot)
    r = conn.call(18, 0, b"")
    assert r.i16() == 0
    apis = {r.i16(): (r.i16(), r.i16()) for _ in range(r.i32())}
    assert apis[68] == (0, 1), "listed, as Kafka lists it with the new coordinator disabled"
    assert apis[44] == (0, 0) and apis[33] == (0, 1) and apis[42] == (0, 1)
    assert apis[21] == (0, 1)
    body = b"\x02g" + b"\x01" + struct.pack(">i", 0) + b"\x00\x00" + struct.pack(">i", 30000) + \
        b"\x02\x02k" + b"\x00\x00\x00"
    r = conn.call(68, 0, body, flexible=True)
    assert r.uvarint() == 0  # response header tags
    assert r.i32() == 0 and r.i16() == 35
    assert "group.protocol=classic" in r.cs()
    assert _list_offset(conn, "k", 0, -1)[0] == 0
    conn.close()
    # librdkafka 2.0.2 (Debian's) predates KIP-848: it refuses the setting itself, so no client
    # installed here can ask the broker for it.
    out = _py(r"""
import sys
try:
    import confluent_kafka as ck
except ImportError:
    sys.exit(3)
try:
    ck.Consumer({"bootstrap.servers": sys.argv[1], "group.id": "x", "group.protocol": "consumer"})
    print("accepted")
except ck.KafkaException as e:
    print("refused:", e)
""", boot)
    assert out.startswith("refused:") and "group.protocol" in out, out


# ---- ACLs govern the new calls ----

def _users(ctx, users):
    entries = {}
    for name, pw in users.items():
        p = subprocess.run([harness.bin_path("bus-broker"), "--scram-user", name, "4096"],
                           input=(pw + "\n").encode(), capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        entries.update(json.loads(p.stdout))
    return ctx.write_json("users.json", {"users": entries})


def test_acls_govern_alter_configs_delete_records_and_delete_groups():
    ctx = harness.ctx()
    pw = {"admin": "admin-password-1", "app": "app-password-1", "ops": "ops-password-1"}
    acls = {"super_users": ["User:admin"], "acls": [
        {"principal": "User:app", "resource": "topic", "name": "*", "operations": ["Read",
                                                                                  "Write"]},
        {"principal": "User:app", "resource": "group", "name": "*", "operations": ["Read"]},
        {"principal": "User:ops", "resource": "topic", "name": "t", "operations": ["Alter",
                                                                                  "Delete"]},
        {"principal": "User:ops", "resource": "group", "name": "g", "operations": ["Delete"]},
    ]}
    _, boot, _ = _start(ctx, topics="t:1,u:1", **{"sasl.users_file": _users(ctx, pw),
                                                  "sasl.required": True, "sasl.plain": True,
                                                  "acl.file": ctx.write_json("acl.json", acls)})
    admin = _Conn(boot)
    admin.sasl_plain("admin", pw["admin"])
    assert _commit(admin, "g", "t", 0, 0) == 0
    assert _commit(admin, "h", "t", 0, 0) == 0
    app = _Conn(boot)
    app.sasl_plain("app", pw["app"])
    assert _incremental_alter(app, "t", [("retention.ms", 0, "5000")])[0] == 29
    assert _alter(app, 2, "t", {"retention.ms": "5000"})[0] == 29
    assert _delete_records(app, "t", 0, -1)[0] == 29
    assert _delete_groups(app, ["g"]) == {"g": 30}
    assert _describe(app, 2, "t")[0] == 29
    assert _alter(app, 4, "0", {"x": "1"})[0] == 31
    ops = _Conn(boot)
    ops.sasl_plain("ops", pw["ops"])
    assert _incremental_alter(ops, "t", [("retention.ms", 0, "5000")]) == (0, None)
    assert _incremental_alter(ops, "u", [("retention.ms", 0, "5000")])[0] == 29
    assert _delete_records(ops, "t", 0, -1) == (0, 0)
    assert _delete_records(ops, "u", 0, -1)[0] == 29
    assert _delete_groups(ops, ["g", "h"]) == {"g": 0, "h": 30}
    assert _describe(admin, 2, "t", ["retention.ms"])[1]["retention.ms"][0] == "5000"
    for c in (admin, app, ops):
        c.close()
