"""The embedded broker (bin/bus-broker) through real clients only: kcat and bus-kclient
(librdkafka 2.0.2). Covers produce/consume round trips, idempotent acks=all producing, consumer
groups rebalancing, committed offsets across a restart, admin calls, retention, a SIGKILL crash
while producing, and hostile connections."""
import os
import re
import socket
import struct
import subprocess
import time

import harness


def _start(ctx, data_dir, port=None, name="bus-broker", **extra):
    """Starts bus-broker on port (free when None) with its log in data_dir; returns
    (proc, bootstrap)."""
    port = port or harness.free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "data_dir": data_dir,
           "http.listen": f"127.0.0.1:{harness.free_port()}"}
    cfg.update(extra)
    proc = ctx.start("bus-broker", config=cfg, http=False, name=name)

    def up():
        if not proc.alive():
            raise AssertionError("broker exited:\n" + proc.log()[-3000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    harness.wait_for(up, 10, what="broker port")
    return proc, f"127.0.0.1:{port}"


def _kclient(*args, timeout=60):
    path = harness.bin_path("bus-kclient")
    if not os.path.exists(path):
        raise harness.Skip("bus-kclient not built")
    p = subprocess.run([path] + [str(a) for a in args], capture_output=True,
                       timeout=timeout * harness.timeout_mult())
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def _ok(*args, timeout=60):
    """Runs bus-kclient and asserts it succeeded; returns its stdout."""
    rc, out, err = _kclient(*args, timeout=timeout)
    assert rc == 0, f"bus-kclient {args[0]} failed ({rc}): {out[-1000:]} {err[-2000:]}"
    return out


def _consume_all(boot, topic, count, timeout=60):
    """Reads count messages of topic from the beginning with kcat (values without newlines):
    a list of (partition, offset, value str). Linear in size, unlike harness.kcat_consume."""
    out = harness.kcat(["-C", "-b", boot, "-t", topic, "-o", "beginning", "-c", str(count), "-e",
                        "-q", "-f", "%p %o %s\\n"], timeout=timeout).decode()
    msgs = []
    for ln in out.splitlines():
        p, o, v = ln.split(" ", 2)
        msgs.append((int(p), int(o), v))
    return msgs


def _lines(proc, prefix):
    return [ln.split(" ", 3) for ln in proc.log().splitlines() if ln.startswith(prefix + " ")]


def test_kcat_round_trip_with_keys_headers_and_partitions():
    ctx = harness.ctx()
    _, boot = _start(ctx, ctx.path("data", "x")[:-2])
    rc, out, err = _kclient("create", boot, "rt", 3)
    assert rc == 0 and out.strip() == "OK", out + err
    n = 3000
    lines = "".join(f"key{i % 7}\tvalue-{i}\n" for i in range(n)).encode()
    harness.kcat(["-P", "-b", boot, "-t", "rt", "-K", "\t", "-H", "ce-type=rt",
                  "-H", "trace=abc", "-X", "acks=all"], input_bytes=lines)
    msgs = harness.kcat_consume(boot, "rt", n)
    assert len(msgs) == n
    values = sorted(int(m["value"].split(b"-")[1]) for m in msgs)
    assert values == list(range(n))
    key_part = {}
    per_part = {}
    for m in msgs:
        assert m["headers"] == {"ce-type": "rt", "trace": "abc"}
        i = int(m["value"].split(b"-")[1])
        assert m["key"] == f"key{i % 7}"
        assert key_part.setdefault(m["key"], m["partition"]) == m["partition"]
        per_part.setdefault(m["partition"], []).append((m["offset"], i))
    assert len(per_part) > 1, "keys spread over partitions"
    for part, items in per_part.items():
        offs = [o for o, _ in items]
        assert sorted(offs) == list(range(len(offs))), f"partition {part}: contiguous offsets"
        seq = [i for _, i in sorted(items)]
        assert seq == sorted(seq), f"partition {part}: producer order kept"


def test_idempotent_producer_acks_all_offsets_match_consumed():
    ctx = harness.ctx()
    _, boot = _start(ctx, ctx.path("data", "x")[:-2], default_partitions=4)
    rc, out, err = _kclient("produce", boot, "idem", 5000, 200)
    assert rc == 0, err
    acks = [ln.split(" ") for ln in out.splitlines() if ln.startswith("ACK ")]
    assert len(acks) == 5000
    acked = {(int(p), int(o)): v for _, p, o, v in acks}
    assert len(acked) == 5000, "every ack has its own offset"
    got = {(p, o): v for p, o, v in _consume_all(boot, "idem", 5000)}
    assert got == acked


def test_consumer_group_rebalances_on_join_and_leave():
    ctx = harness.ctx()
    bproc, boot = _start(ctx, ctx.path("data", "x")[:-2])
    _ok("create", boot, "grp", 4)
    _ok("produce", boot, "grp", 400)
    a = ctx.start("bus-kclient", args=["consume", boot, "g1", "grp", "60"], http=False, name="a")
    harness.wait_for(lambda: ["ASSIGNED", "4"] in [ln.split() for ln in a.log().splitlines()],
                     20, what="member a assigned all 4 partitions")
    harness.wait_for(lambda: len(_lines(a, "MSG")) >= 400, 20, what="a consumed everything")
    b = ctx.start("bus-kclient", args=["consume", boot, "g1", "grp", "60"], http=False, name="b")
    harness.wait_for(lambda: ["ASSIGNED", "2"] in [ln.split() for ln in b.log().splitlines()],
                     30, what="member b assigned 2 partitions")
    harness.wait_for(lambda: ["ASSIGNED", "2"] in [ln.split() for ln in a.log().splitlines()],
                     30, what="member a down to 2 partitions")
    harness.wait_for(lambda: "GROUP g1 Stable 2 range" in _ok("groups", boot), 15,
                     what="ListGroups/DescribeGroups show g1 stable with 2 members")
    # b joined after a committed: nothing is delivered twice.
    assert len(_lines(b, "MSG")) == 0
    _ok("produce", boot, "grp", 200, 0, "late")
    harness.wait_for(lambda: len([m for m in _lines(a, "MSG") + _lines(b, "MSG")
                                  if m[3].startswith("late")]) == 200, 20,
                     what="new messages split between a and b")
    assert any(m[3].startswith("late") for m in _lines(b, "MSG"))
    b.stop()  # consumer close: LeaveGroup
    harness.wait_for(lambda: [ln.split() for ln in a.log().splitlines()].count(["ASSIGNED", "4"])
                     >= 2, 30, what="a takes all partitions back after b left")
    assert "member left" in bproc.log() or " left" in bproc.log()


def test_consumer_group_rebalances_when_a_member_session_times_out():
    ctx = harness.ctx()
    bproc, boot = _start(ctx, ctx.path("data", "x")[:-2])
    _ok("create", boot, "sess", 4)
    a = ctx.start("bus-kclient", args=["consume", boot, "g2", "sess", "60"], http=False, name="a")
    harness.wait_for(lambda: "ASSIGNED 4" in a.log(), 20, what="a assigned")
    b = ctx.start("bus-kclient", args=["consume", boot, "g2", "sess", "60"], http=False, name="b")
    harness.wait_for(lambda: "ASSIGNED 2" in b.log() and "ASSIGNED 2" in a.log(), 30,
                     what="a and b share the partitions")
    b.kill()  # no LeaveGroup: only the 6 s session time-out can notice
    harness.wait_for(lambda: a.log().count("ASSIGNED 4") >= 2, 30,
                     what="a gets all partitions back after b's session timed out")
    assert "session timed out" in bproc.log()


def test_committed_offsets_survive_a_broker_restart():
    ctx = harness.ctx()
    data = ctx.path("data", "x")[:-2]
    port = harness.free_port()
    proc, boot = _start(ctx, data, port)
    _ok("create", boot, "keep", 2)
    _ok("produce", boot, "keep", 100, 0, "first")
    c = ctx.start("bus-kclient", args=["consume", boot, "gk", "keep", "60"], http=False,
                  name="c1")
    harness.wait_for(lambda: len(_lines(c, "MSG")) == 100, 20, what="first 100 consumed")
    c.stop()
    harness.wait_for(lambda: "CLOSED" in c.log(), 10, what="consumer closed (final commit)")
    assert proc.stop() == 0
    proc, boot = _start(ctx, data, port, name="bus-broker-2")
    _ok("produce", boot, "keep", 10, 0, "second")
    c = ctx.start("bus-kclient", args=["consume", boot, "gk", "keep", "60"], http=False,
                  name="c2")
    harness.wait_for(lambda: len(_lines(c, "MSG")) >= 10, 20, what="the 10 new messages")
    vals = [m[3] for m in _lines(c, "MSG")]
    assert sorted(vals) == sorted(f"second{i}" for i in range(10)), vals[:20]
    # The topic and its data survived too.
    assert len(harness.kcat_consume(boot, "keep", 110)) == 110


def test_admin_create_partitions_describe_delete():
    ctx = harness.ctx()
    _, boot = _start(ctx, ctx.path("data", "x")[:-2], auto_create_topics=False)
    assert _kclient("create", boot, "adm", 2, "retention.ms=3600000")[1].strip() == "OK"
    rc, out, _ = _kclient("create", boot, "adm", 2)
    assert rc == 1 and "TOPIC_ALREADY_EXISTS" in out
    rc, out, _ = _kclient("create", boot, "bad/name", 1)
    assert rc == 1 and "TOPIC_EXCEPTION" in out
    rc, out, _ = _kclient("describe", boot, "adm")
    assert rc == 0 and "retention.ms=3600000" in out.splitlines()
    assert _kclient("partitions", boot, "adm", 5)[1].strip() == "OK"
    rc, out, _ = _kclient("partitions", boot, "adm", 3)
    assert rc == 1 and "INVALID_PARTITIONS" in out
    md = harness.kcat(["-L", "-b", boot, "-t", "adm"]).decode()
    assert 'topic "adm" with 5 partitions' in md
    assert _kclient("delete", boot, "adm")[1].strip() == "OK"
    md = harness.kcat(["-L", "-b", boot]).decode()
    assert '"adm"' not in md
    rc, out, _ = _kclient("delete", boot, "adm")
    assert rc == 1 and "UNKNOWN_TOPIC" in out


def _segments(data, topic, part=0):
    d = os.path.join(data, f"{topic}-{part}")
    return sorted(f for f in os.listdir(d) if f.endswith(".log"))


def test_retention_deletes_whole_old_segments():
    ctx = harness.ctx()
    data = ctx.path("data", "x")[:-2]
    _, boot = _start(ctx, data, retention_check_ms=100)
    assert _kclient("create", boot, "ret", 1, "segment.bytes=4096",
                    "retention.bytes=8192")[0] == 0
    for i in range(10):  # separate producers: at least 10 separate batches of ~2.4 KB
        _ok("produce", boot, "ret", 10, 200, f"r{i}-")
    harness.wait_for(lambda: len(_segments(data, "ret")) <= 4, 10, what="old segments deleted")
    first = int(_segments(data, "ret")[0][:20])
    assert first > 0
    msgs = harness.kcat_consume(boot, "ret", 1)
    assert msgs[0]["offset"] == first, "consumers start at the first kept offset"
    # Age: a topic with 1 s retention loses its closed segments.
    _ok("create", boot, "age", 1, "segment.bytes=4096", "retention.ms=1000")
    for i in range(4):
        _ok("produce", boot, "age", 10, 200, f"a{i}-")
    # (the closed segments may be gone already on a slow machine: the 1 s passes while producing)
    harness.wait_for(lambda: len(_segments(data, "age")) == 1, 15, what="aged segments deleted")
    assert int(_segments(data, "age")[0][:20]) > 0, "the kept segment is not the first one"


def test_sigkill_while_producing_keeps_every_acked_message_once_in_order():
    ctx = harness.ctx()
    data = ctx.path("data", "x")[:-2]
    port = harness.free_port()
    broker, boot = _start(ctx, data, port)
    _ok("create", boot, "crash", 4)
    prod = ctx.start("bus-kclient", args=["produce", boot, "crash", "60000", "100", "m", "20000"], http=False,
                     name="producer")
    harness.wait_for(lambda: len(_lines(prod, "ACK")) >= 5000, 30, what="5000 acks")
    broker.kill()
    acked_before = len(_lines(prod, "ACK"))
    broker, boot = _start(ctx, data, port, name="bus-broker-2")
    harness.wait_for(lambda: not prod.alive(), 120, what="producer finished")
    acks = _lines(prod, "ACK")
    assert "delivered 60000 failed 0" in prod.log(), prod.log()[-2000:]
    assert len(acks) == 60000
    assert acked_before < 55000, "the broker was killed mid-stream"
    msgs = _consume_all(boot, "crash", 60000)
    assert len(msgs) == 60000
    seen = {}
    for p, o, v in msgs:
        v = v.rstrip("x")
        assert v not in seen, f"{v} stored twice"
        seen[v] = (p, o)
    for _, p, o, v in acks:
        v = v.rstrip("x")
        assert seen.get(v) == (int(p), int(o)), f"acked {v} at {p}/{o}, stored at {seen.get(v)}"
    per_part = {}
    for p, o, v in msgs:
        per_part.setdefault(p, []).append((o, int(v[1:].rstrip("x"))))
    for part, items in per_part.items():
        seq = [i for _, i in sorted(items)]
        assert seq == sorted(seq), f"partition {part} out of order"


def _frame(api_key, version, corr, body=b"", client=b"t"):
    hdr = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    return struct.pack(">i", len(hdr) + len(body)) + hdr + body


def _closed(sock, timeout=5.0):
    sock.settimeout(timeout * harness.timeout_mult())
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_hostile_connections_are_closed_and_the_broker_keeps_serving():
    ctx = harness.ctx()
    proc, boot = _start(ctx, ctx.path("data", "x")[:-2], request_timeout_ms=500,
                        max_request_bytes=1 << 20)
    port = int(boot.rsplit(":", 1)[1])
    cases = [
        struct.pack(">i", 0x7fffffff) + b"x" * 16,         # absurd size
        struct.pack(">i", -5),                              # negative size
        _frame(999, 0, 1),                                  # unknown API key
        _frame(0, 99, 2),                                   # unsupported version
        _frame(3, 1, 3, b"\xff\xff\xff\x7f"),               # Metadata with a huge array count
        _frame(0, 3, 4, b"\xff\xff\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00"),  # truncated
    ]
    for data in cases:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(data)
            assert _closed(s), f"connection closed after {data[:16]!r}"
    # A client that stalls mid-request is dropped after request_timeout_ms.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(_frame(18, 0, 5)[:7])
        assert _closed(s, 5)
    # A good ApiVersions v0 on a raw socket is answered.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(_frame(18, 0, 42))
        s.settimeout(5)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        body = s.recv(size, socket.MSG_WAITALL)
        corr, err = struct.unpack(">ih", body[:6])
        assert (corr, err) == (42, 0)
    assert proc.alive()
    log = proc.log()
    assert "unknown API key" in log and "stalled" in log
    harness.kcat(["-L", "-b", boot])


def test_default_frame_limit_bounds_a_connections_buffer():
    """With the defaults a connection buffers at most max_request_bytes (16 MiB) of a request:
    a frame announcing one byte more is refused at once, before anything is buffered, and the
    broker keeps serving."""
    ctx = harness.ctx()
    proc, boot = _start(ctx, ctx.path("data", "x")[:-2])
    port = int(boot.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(struct.pack(">i", (16 << 20) + 1) + b"\x00" * 64)
        assert _closed(s), "a frame over 16 MiB is refused"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(_frame(18, 0, 7))
        s.settimeout(5)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        assert struct.unpack(">i", s.recv(size, socket.MSG_WAITALL)[:4])[0] == 7
    assert proc.alive() and "out of bounds (10..16777216)" in proc.log()


@harness.release_only  # the fuzz target is sanitizer-instrumented already
def test_fuzz_target_runs_briefly():
    exe = os.path.join(harness.ROOT, os.environ.get("FUZZ_BIN", "build/fuzz/fuzz_broker_decode"))
    if not os.path.exists(exe):
        raise harness.Skip("fuzz target not built (make fuzz)")
    ctx = harness.ctx()
    corpus = ctx.path("corpus", "x")[:-2]
    os.makedirs(corpus, exist_ok=True)
    seeds = os.path.join(harness.ROOT, "tests", "fuzz", "corpus_broker")  # real client traffic
    for name in os.listdir(seeds):
        with open(os.path.join(seeds, name), "rb") as src, \
                open(os.path.join(corpus, name), "wb") as dst:
            dst.write(src.read())
    p = subprocess.run([exe, "-max_total_time=15", "-rss_limit_mb=1024", corpus],
                       capture_output=True, timeout=120)
    out = p.stderr.decode(errors="replace")
    assert p.returncode == 0, out[-3000:]
    assert re.search(r"Done \d+ runs", out), out[-2000:]


def test_torn_tail_is_truncated_on_restart_and_offsets_continue():
    ctx = harness.ctx()
    data = ctx.path("data", "x")[:-2]
    port = harness.free_port()
    proc, boot = _start(ctx, data, port)
    _ok("create", boot, "torn", 1)
    for i in range(3):  # three producers: at least three batches
        _ok("produce", boot, "torn", 5, 50, f"b{i}-")
    assert proc.stop() == 0
    seg = os.path.join(data, "torn-0", _segments(data, "torn")[-1])
    size = os.path.getsize(seg)
    with open(seg, "rb") as f:
        blob = f.read()
    # Find the last batch's start by walking the batch lengths.
    pos, last = 0, 0
    while pos < size:
        last = pos
        pos += 12 + struct.unpack(">i", blob[pos + 8:pos + 12])[0]
    # Crash halfway through writing a fourth batch, and flip a bit of the third one's records.
    with open(seg, "r+b") as f:
        f.seek(size - 3)
        f.write(bytes([blob[size - 3] ^ 0x01]))
        f.seek(size)
        f.write(blob[last:last + 40])
    proc, boot = _start(ctx, data, port, name="bus-broker-2")
    harness.wait_for(lambda: "truncating" in proc.log(), 5, what="truncation logged")
    assert os.path.getsize(seg) == last
    msgs = _consume_all(boot, "torn", 10)
    assert [v for _, _, v in msgs] == [f"b{i}-{k}".ljust(50, "x") for i in range(2)
                                       for k in range(5)]
    out = _ok("produce", boot, "torn", 1, 0, "after")
    assert out.split()[:3] == ["ACK", "0", "10"], out


def _check_index(data, topic, part=0):
    """Every .index entry of the partition points at the batch holding its offset; returns the
    number of entries checked."""
    d = os.path.join(data, f"{topic}-{part}")
    n = 0
    for seg in _segments(data, topic, part):
        base = int(seg[:20])
        with open(os.path.join(d, seg), "rb") as f:
            log = f.read()
        with open(os.path.join(d, seg[:20] + ".index"), "rb") as f:
            idx = f.read()
        assert len(idx) % 8 == 0 and len(idx) > 0, f"{seg}: index of {len(idx)} bytes"
        prev = -1
        for k in range(0, len(idx), 8):
            rel, pos = struct.unpack(">II", idx[k:k + 8])
            assert pos > prev and pos + 61 <= len(log), f"{seg}: entry {k // 8} at {pos}"
            assert struct.unpack(">q", log[pos:pos + 8])[0] == base + rel, f"{seg}: entry {k // 8}"
            prev = pos
            n += 1
    return n


def test_index_files_match_the_log_and_reads_from_any_offset_survive_a_restart():
    ctx = harness.ctx()
    data = ctx.path("data", "x")[:-2]
    port = harness.free_port()
    proc, boot = _start(ctx, data, port)
    _ok("create", boot, "idx", 1, "segment.bytes=65536")
    n = 3000  # ~150 batches of 20 messages (~4.4 KB each) over ~10 segments
    lines = "".join(f"v{i}".ljust(200, "x") + "\n" for i in range(n)).encode()
    harness.kcat(["-P", "-b", boot, "-t", "idx", "-X", "acks=all", "-X", "batch.num.messages=20"],
                 input_bytes=lines)
    assert proc.stop() == 0
    assert len(_segments(data, "idx")) >= 5
    assert _check_index(data, "idx") >= 100, "about one entry per 4 KiB batch"
    proc, boot = _start(ctx, data, port, name="bus-broker-2")
    for off in (0, 1, 777, 1500, 2222, n - 1):
        out = harness.kcat(["-C", "-b", boot, "-t", "idx", "-o", str(off), "-c", "1", "-e", "-q",
                            "-f", "%o %s\n"]).decode().split()
        assert out == [str(off), f"v{off}".ljust(200, "x")], (off, out[:1])
    out = _ok("produce", boot, "idx", 1, 0, "after")
    assert out.split()[:3] == ["ACK", "0", str(n)], out


@harness.release_only
def test_every_config_key_and_metric_is_documented():
    with open(os.path.join(harness.ROOT, "bus", "broker", "main.c")) as f:
        keys = re.findall(r'^\s*\{"([a-z_.]+)", CONFIG_', f.read(), re.M)
    src = ""
    bdir = os.path.join(harness.ROOT, "bus", "broker")
    for name in sorted(os.listdir(bdir)):
        if name.endswith(".c"):
            with open(os.path.join(bdir, name)) as f:
                src += f.read()
    metrics = set(re.findall(r'"(bus_broker_[a-z_]+)"', src))
    with open(os.path.join(harness.ROOT, "docs", "broker.md")) as f:
        doc = f.read()
    assert len(keys) > 10 and metrics
    missing = [k for k in keys if f"`{k}`" not in doc] + [m for m in metrics if m not in doc]
    assert not missing, f"not in docs/broker.md: {missing}"
