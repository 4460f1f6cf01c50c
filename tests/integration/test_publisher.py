"""bus-publisher against a real broker: what is acknowledged is in Kafka with its headers, every
bad input gets its JSON error and leaves nothing behind, overload and a dead broker give 503 with
Retry-After and never a false 202, SIGTERM drains and exits 0."""
import json
import os
import re
import signal
import socket
import subprocess
import threading

import harness

BROKERS = ["mock", "embedded"]

TOKEN = "dev-login-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = harness.ROOT
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def login_event(account="acc-1", ip="203.0.113.7", **extra):
    ev = {"account_id": account, "ip": ip, "ts": "2026-11-25T04:18:31Z",
          "session_id": "s-1", "server": "login-1", "client": {"version": "1.2"}}
    ev.update(extra)
    return ev


def start(config=None, max_event_bytes=16384):
    """Broker plus publisher with the development topic `login` (token dev-login-token) and a
    second topic `other` whose producer has another token. Returns (broker, publisher)."""
    ctx = harness.ctx()
    broker = ctx.broker(topics={"login": 3, "other": 1})
    login = json.load(open(os.path.join(ROOT, "config", "bus", "login.json")))
    login["topics"][0]["max_event_bytes"] = max_event_bytes
    login["topics"].append({"name": "other", "partitions": 1, "producers": [
        {"name": "someone", "token_sha256": "0" * 64}]})
    ctx.write_json("bus/login.json", login)
    cfg = {"bootstrap": broker.bootstrap, "bus_config_dir": ctx.path("bus"),
           "bus_schema": os.path.join(ROOT, "config", "schema", "bus.schema.json"),
           "threads": 2}
    cfg.update(config or {})
    pub = ctx.start("bus-publisher", config=cfg, ready_path="/readyz")
    return broker, pub


def post(pub, body=None, topic="login", headers=None, raw=None, batch=False, timeout=20):
    h = dict(AUTH)
    h.update(headers or {})
    path = f"/v1/topics/{topic}/" + ("batch" if batch else "events")
    return harness.http("POST", pub.url + path, body, headers=h, raw=raw, timeout=timeout)


def consume(broker, topic, count):
    """Waits until `count` messages of topic are readable, returns them (exactly count)."""
    def enough():
        msgs = harness.kcat_consume(broker.bootstrap, topic, count, timeout=10)
        return msgs if len(msgs) >= count else None
    return harness.wait_for(enough, 20, what=f"{count} messages on {topic}")


def all_messages(broker, topic):
    """Everything currently in topic (reads until the end of every partition)."""
    return harness.kcat_consume(broker.bootstrap, topic, 1000000, timeout=15)


def metric(pub, name, labels=""):
    status, text, _ = harness.http("GET", pub.url + "/metrics")
    assert status == 200
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(lab in line for lab in labels.split(",") if lab):
            rest = line[len(name):]
            if rest[:1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_single_event_is_acknowledged_and_readable_with_headers():
    broker, pub = start()
    ev = login_event(account="alice")
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    status, body, _ = post(pub, ev, headers={"ce-id": "evt-123", "traceparent": tp})
    assert status == 202, (status, body)
    assert body["id"] == "evt-123" and body["topic"] == "login"
    assert isinstance(body["partition"], int) and isinstance(body["offset"], int)
    msgs = consume(broker, "login", 1)
    m = msgs[0]
    assert (m["partition"], m["offset"]) == (body["partition"], body["offset"])
    assert json.loads(m["value"]) == ev
    assert m["key"] == "alice"
    h = m["headers"]
    assert h["ce-id"] == "evt-123"
    assert h["ce-type"] == "login"
    assert h["ce-source"] == "login-servers"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", h["ce-time"]), h
    # Same trace, new span (the publisher's hop).
    assert h["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-"), h
    assert h["traceparent"] != tp

    # Without ce-id / traceparent: a generated UUIDv7 and a fresh trace.
    status, body2, _ = post(pub, login_event(account="bob"))
    assert status == 202, body2
    assert UUID7.match(body2["id"]), body2
    msgs = consume(broker, "login", 2)
    m2 = [x for x in msgs if x["headers"].get("ce-id") == body2["id"]]
    assert len(m2) == 1 and m2[0]["key"] == "bob"
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", m2[0]["headers"]["traceparent"])
    assert metric(pub, "bus_publisher_events_total", 'topic="login",result="accepted"') == 2
    assert metric(pub, "bus_publisher_produce_seconds_count") >= 2


def test_same_account_keeps_one_partition_in_order():
    broker, pub = start()
    for i in range(6):
        status, body, _ = post(pub, login_event(account="carol", session_id=f"s{i}"))
        assert status == 202, body
    msgs = consume(broker, "login", 6)
    assert len({m["partition"] for m in msgs}) == 1
    assert [json.loads(m["value"])["session_id"] for m in sorted(msgs, key=lambda m: m["offset"])] \
        == [f"s{i}" for i in range(6)]


def test_batch_is_acknowledged_as_a_whole_and_readable():
    broker, pub = start()
    events = [login_event(account=f"acc-{i}") for i in range(25)]
    status, body, _ = post(pub, events, batch=True)
    assert status == 202, body
    assert body["accepted"] == 25 and len(body["ids"]) == 25
    assert all(UUID7.match(i) for i in body["ids"])
    msgs = consume(broker, "login", 25)
    assert {m["headers"]["ce-id"] for m in msgs} == set(body["ids"])
    assert {m["key"] for m in msgs} == {f"acc-{i}" for i in range(25)}
    # Each event is stored byte for byte as written in the batch.
    e1 = b'{"account_id": "raw-1",  "ip": "10.0.0.1", "ts": "2026-11-25T04:18:31Z", "n": [1, "]"]}'
    e2 = b'{"ip":"10.0.0.2","ts":"2026-11-25T04:18:31Z","account_id":"raw-2","s":"a\\"},"}'
    status, b3, _ = post(pub, raw=b" [ " + e1 + b" ,\n\t" + e2 + b"\n]\n", batch=True)
    assert status == 202, b3
    msgs = consume(broker, "login", 27)
    values = {m["key"]: m["value"] for m in msgs}
    assert values["raw-1"] == e1 and values["raw-2"] == e2, values
    # A ce-id on the batch makes the ids deterministic, so a retried batch repeats them.
    status, b2, _ = post(pub, events[:2], batch=True, headers={"ce-id": "batch-7"})
    assert status == 202 and b2["ids"] == ["batch-7-0", "batch-7-1"], b2


def test_bad_inputs_get_json_errors_and_leave_nothing_behind():
    broker, pub = start()
    cases = [
        ("malformed JSON", dict(raw=b'{"account_id": "a", '), 400, "malformed_json"),
        ("not an object", dict(body=[1, 2]), 400, "not_object"),
        ("string body", dict(body="hello"), 400, "not_object"),
        ("unknown topic", dict(body=login_event(), topic="nope"), 404, "unknown_topic"),
        ("missing token", dict(body=login_event(), headers={"Authorization": ""}), 401,
         "unauthorized"),
        # RFC 6750: a token no producer holds, or one that is not a b64token, is 401; a
        # known token without the right for the topic is 403.
        ("unknown token", dict(body=login_event(), headers={"Authorization": "Bearer nope"}),
         401, "unauthorized"),
        ("unknown token, unknown topic",
         dict(body=login_event(), topic="nope", headers={"Authorization": "Bearer nope"}),
         401, "unauthorized"),
        ("malformed token", dict(body=login_event(), headers={"Authorization": "Bearer a\"b"}),
         401, "unauthorized"),
        ("token of another topic", dict(body=login_event(), topic="other"), 403, "forbidden"),
        ("token of another topic, batch", dict(body=[login_event()], topic="other", batch=True),
         403, "forbidden"),
        ("bad ce-id", dict(body=login_event(), headers={"ce-id": "has space"}), 400,
         "bad_event_id"),
        ("batch not an array", dict(body=login_event(), batch=True), 400, "not_array"),
        ("batch malformed", dict(raw=b"[{", batch=True), 400, "malformed_json"),
    ]
    for what, kw, want_status, want_code in cases:
        status, body, _ = post(pub, **kw)
        assert status == want_status, (what, status, body)
        assert isinstance(body, dict) and body["error"] == want_code and body["message"], \
            (what, body)

    # Schema violations name the failing JSON pointer.
    status, body, _ = post(pub, login_event(ip="not an ip"))
    assert status == 422 and body["error"] == "schema_violation" and body["pointer"] == "/ip", body
    status, body, _ = post(pub, {"account_id": "a", "ip": "10.0.0.1"})
    assert status == 422 and "ts" in body["message"], body
    status, body, _ = post(pub, login_event(account=5))
    assert status == 422 and body["pointer"] == "/account_id", body
    # Batch: a non-object element and a schema violation name their index.
    status, body, _ = post(pub, [login_event(), 7], batch=True)
    assert status == 400 and body["error"] == "not_object" and body["index"] == 1, body
    status, body, _ = post(pub, [login_event(), login_event(), login_event(ts="yesterday")],
                           batch=True)
    assert status == 422 and body["index"] == 2 and body["pointer"] == "/ts", body

    # Nothing of the above reached Kafka: one good event afterwards is the only one there.
    status, good, _ = post(pub, login_event(account="only"))
    assert status == 202, good
    consume(broker, "login", 1)
    msgs = all_messages(broker, "login")
    assert [m["headers"]["ce-id"] for m in msgs] == [good["id"]], msgs
    assert metric(pub, "bus_publisher_rejected_total", 'topic="login",reason="schema"') == 4
    assert metric(pub, "bus_publisher_rejected_total", 'reason="forbidden"') == 2
    assert metric(pub, "bus_publisher_rejected_total", 'reason="unauthorized"') == 4
    assert metric(pub, "bus_publisher_rejected_total", 'reason="unknown_topic"') == 1


def test_fast_and_jansson_paths_agree():
    """Events the fast path takes (plain ASCII) and events it leaves to jansson (escapes,
    non-ASCII, exponents) are accepted alike, stored byte for byte, keyed alike; and what only
    jansson can refuse (duplicate members, in any event of a batch) is still refused."""
    broker, pub = start(config={"batch_max_events": 10})
    fast = b'{"account_id":"k-fast","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z","n":-0}'
    slow = [
        '{"account_id":"k-esc","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z","s":"a\\u00e9\\n"}',
        '{"account_id":"k-utf8","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z","s":"\u00e9"}',
        '{"account_id":"k-exp","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z","n":1.5e3}',
        '{"account_id":"k\\u002dkey","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z"}',
    ]
    slow = [e.encode() for e in slow]
    for ev in [fast] + slow:
        status, body, _ = post(pub, raw=b"\n " + ev + b" \n")
        assert status == 202, (ev, status, body)
    # A batch mixing both kinds goes through whole, each event byte for byte.
    batch_evs = [e.replace(b'"k', b'"b') for e in [fast] + slow]
    status, body, _ = post(pub, raw=b"[" + b",".join(batch_evs) + b"]", batch=True)
    assert status == 202 and body["accepted"] == 5, body
    status, body, _ = post(pub, raw=b"[" + b", ".join([fast] * 3) + b"]", batch=True,
                           headers={"ce-id": "fast-batch"})
    assert status == 202 and body["ids"] == ["fast-batch-0", "fast-batch-1", "fast-batch-2"]
    msgs = consume(broker, "login", 13)
    by_key = {}
    for m in msgs:
        by_key.setdefault(m["key"], []).append(m["value"])
    # A single event is stored as the body was sent (whitespace included); batch events as
    # their slice of the array.
    ws = lambda e: b"\n " + e + b" \n"
    assert sorted(by_key["k-fast"]) == sorted([ws(fast)] + [fast] * 3), by_key["k-fast"]
    assert by_key["k-esc"] == [ws(slow[0])] and by_key["k-utf8"] == [ws(slow[1])]
    assert by_key["k-exp"] == [ws(slow[2])] and by_key["k-esc"] == [ws(slow[0])]
    assert by_key["b-fast"] == [batch_evs[0]] and by_key["b-esc"] == [batch_evs[1]]
    assert by_key["b-utf8"] == [batch_evs[2]] and by_key["b-exp"] == [batch_evs[3]]
    assert by_key["k-key"] == [ws(slow[3])] and by_key["b-key"] == [batch_evs[4]]  # unescaped
    # Duplicate members are malformed, in a single event or in any event of a batch.
    dup = b'{"account_id":"d","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z","ip":"10.0.0.2"}'
    status, body, _ = post(pub, raw=dup)
    assert status == 400 and body["error"] == "malformed_json", body
    assert "duplicate" in body["message"], body
    nested = b'{"account_id":"d","ip":"10.0.0.1","ts":"2026-11-25T04:18:31Z","client":{"a":1,"a":1}}'
    status, body, _ = post(pub, raw=b"[" + fast + b"," + nested + b"]", batch=True)
    assert status == 400 and body["error"] == "malformed_json", body
    # A valid batch with a bad ce-id; an empty batch; trailing garbage; too many events.
    status, body, _ = post(pub, raw=b"[" + fast + b"]", batch=True, headers={"ce-id": "a b"})
    assert status == 400 and body["error"] == "bad_event_id", body
    status, body, _ = post(pub, raw=b" [ ] ", batch=True)
    assert status == 400 and body["error"] == "not_array", body
    status, body, _ = post(pub, raw=b"[" + fast + b"] x", batch=True)
    assert status == 400 and body["error"] == "malformed_json", body
    status, body, _ = post(pub, raw=fast + b" x")
    assert status == 400 and body["error"] == "malformed_json", body
    status, body, _ = post(pub, raw=b"[" + b",".join([fast] * 11) + b"]", batch=True)
    assert status == 413 and body["error"] == "too_many_events", body
    # A schema violation in a batch of plain events names its index and pointer.
    bad = fast.replace(b'"10.0.0.1"', b'"10.0.0"')
    status, body, _ = post(pub, raw=b"[" + fast + b"," + fast + b"," + bad + b"]", batch=True)
    assert status == 422 and body["index"] == 2 and body["pointer"] == "/ip", body
    assert len(all_messages(broker, "login")) == 13


def test_oversized_events_and_batches_get_413():
    broker, pub = start(config={"batch_max_events": 10, "batch_max_bytes": 20000},
                        max_event_bytes=512)
    big = login_event(server="x" * 600)
    status, body, _ = post(pub, big)
    assert status == 413 and body["error"] == "too_large", body
    status, body, _ = post(pub, [login_event(), big], batch=True)
    assert status == 413 and body["error"] == "too_large" and body["index"] == 1, body
    status, body, _ = post(pub, [login_event()] * 11, batch=True)
    assert status == 413 and body["error"] == "too_many_events", body
    # Far above every cap: refused by the HTTP layer without reading it all into memory.
    status, body, _ = post(pub, raw=b"[" + b" " * 50000 + b"]", batch=True)
    assert status == 413, (status, body)
    status, good, _ = post(pub, login_event())
    assert status == 202
    consume(broker, "login", 1)
    assert len(all_messages(broker, "login")) == 1


def _vm(pid, field):
    """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@harness.one_broker
def test_hostile_8mb_batches_cost_bounded_memory():
    """Batches as large as batch_max_bytes (8 MiB) built to cost the most: 70,000 tiny events
    (the count limit), 800 events of 10 KB with escapes (the jansson path) whose last one is
    invalid, one 8 MB event. Each is refused after reading at most one event past the limit and
    parsing at most one event at a time: the peak stays near the body itself (it was ~200 MB),
    and the resident size comes back near where it started."""
    if harness.is_asan():
        raise harness.Skip("ASan keeps freed memory in quarantine: RSS is measured on the "
                           "release build")
    broker, pub = start()
    pid = pub.popen.pid
    for i in range(20):  # warm up allocator and threads
        assert post(pub, login_event(account=f"w{i}"))[0] == 202
    rss0 = _vm(pid, "VmRSS")
    tiny = json.dumps(login_event()).encode()
    count_attack = b"[" + b",".join([tiny] * ((8 * 1024 * 1024 - 2) // (len(tiny) + 1))) + b"]"
    assert len(count_attack) <= 8 * 1024 * 1024
    pad = "\\u00e9" * 1400  # 8,400 bytes of escapes: the fast path leaves them to jansson
    slow = [json.dumps(login_event(account=f"s{i}", note=pad)) for i in range(800)]
    slow[-1] = json.dumps(login_event(account="s-last", ip="not an ip", note=pad))
    slow_attack = ("[" + ",".join(slow) + "]").encode()
    assert len(slow_attack) <= 8 * 1024 * 1024
    one_big = json.dumps([login_event(note="x" * (8 * 1024 * 1024 - 300))]).encode()
    for _ in range(3):
        status, body, _ = post(pub, raw=count_attack, batch=True, timeout=60)
        assert status == 413 and body["error"] == "too_many_events", (status, body)
        status, body, _ = post(pub, raw=slow_attack, batch=True, timeout=60)
        assert status == 422 and body["index"] == 799, (status, body)
        status, body, _ = post(pub, raw=one_big, batch=True, timeout=60)
        assert status == 413 and body["error"] == "too_large" and body["index"] == 0, body
    peak = _vm(pid, "VmHWM") - rss0
    # The body (8 MiB, reserved once from Content-Length) plus one event's tree and the
    # allocator's slack; parsing a body whole cost 25 times the body.
    assert peak < 40 * 1024 * 1024, f"peak {peak >> 20} MiB above the start"

    def settled():
        post(pub, login_event())  # a little traffic lets the allocator return its pages
        grown = _vm(pid, "VmRSS") - rss0
        return grown if grown < 16 * 1024 * 1024 else None
    harness.wait_for(settled, 30, what="the publisher's RSS back within 16 MiB of its start")
    # Nothing of the refused batches reached Kafka.
    assert metric(pub, "bus_publisher_rejected_total", 'reason="too_large"') == 6


@harness.one_broker
def test_slow_client_is_timed_out_and_others_still_served():
    broker, pub = start(config={"client_timeout_s": 1})
    s = socket.create_connection(("127.0.0.1", pub.port))
    s.sendall(b"POST /v1/topics/login/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
              b"Authorization: Bearer dev-login-token\r\n\r\n{\"account_id\":")
    s.settimeout(10 * harness.timeout_mult())
    try:
        data = s.recv(4096)  # the server closes the connection (maybe after an error answer)
        while data:
            data = s.recv(4096)
    finally:
        s.close()
    status, body, _ = post(pub, login_event())
    assert status == 202, body
    consume(broker, "login", 1)
    assert len(all_messages(broker, "login")) == 1


class Slowloris:
    """n connections to port from the loopback addresses sources, each sending the request
    line of a publish and then one header line per second, never the blank line; a connection
    the server closes is opened again. Runs on its own thread until stop() (a few seconds in
    the tests: bounded, loopback only)."""

    def __init__(self, port, n, sources):
        self.port, self.n, self.sources = port, n, sources
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self.socks = []

    def _open(self, i):
        s = socket.socket()
        s.bind((self.sources[i % len(self.sources)], 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        s.setblocking(False)
        s.send(b"POST /v1/topics/login/events HTTP/1.1\r\nHost: x\r\n")
        return s

    def _run(self):
        self.socks = [self._open(i) for i in range(self.n)]
        self.opened = True
        k = 0
        while not self._stop.wait(1.0):  # one header line per connection per second
            for i, s in enumerate(self.socks):
                try:
                    is_closed = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    is_closed = False  # open, nothing to read
                except OSError:
                    is_closed = True
                if not is_closed:
                    try:
                        s.send(b"X-Slow-%d: 1\r\n" % k)
                    except OSError:
                        is_closed = True
                if is_closed:  # closed by the server: open it again, as an attacker would
                    s.close()
                    self.reopened += 1
                    try:
                        self.socks[i] = self._open(i)
                    except OSError:
                        pass
            k += 1

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        for s in self.socks:
            s.close()


@harness.one_broker
def test_slowloris_does_not_stop_legitimate_requests():
    """2,000 connections trickling their headers (from 127.0.0.2-5, 500 each) while a client at
    127.0.0.1 publishes: every legitimate request is answered 202, the trickling connections are
    closed at the head deadline (2 s here) however often they send, and the server's metrics
    count them. (On select() loops 1,100 such connections shut the publisher: 41 of 45
    requests failed.)"""
    broker, pub = start(config={"request_head_timeout_s": 2})
    attack = Slowloris(pub.port, 2000, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"])
    attack.start()
    try:
        harness.wait_for(lambda: metric(pub, "http_connections_open") >= 2000, 30,
                         what="2,000 trickling connections open")
        statuses = []
        for i in range(40):
            statuses.append(post(pub, login_event(account=f"legit-{i}"), timeout=10)[0])
        harness.wait_for(lambda: metric(pub, "http_connections_timed_out_total",
                                        'phase="head"') >= 2000, 30,
                         what="the trickling connections closed at the head deadline")
        harness.wait_for(lambda: attack.reopened >= 1000, 30,
                         what="the attacker reopening the closed connections")
        statuses.append(post(pub, login_event(account="legit-last"), timeout=10)[0])
    finally:
        attack.stop()
    assert statuses == [202] * 41, statuses
    msgs = consume(broker, "login", 41)
    assert {m["key"] for m in msgs} >= {f"legit-{i}" for i in range(40)}


def _burst(pub, n_threads, per_thread, make_body, batch=False):
    results = []
    lock = threading.Lock()

    def worker(t):
        for i in range(per_thread):
            try:
                r = post(pub, make_body(t, i), batch=batch, timeout=30)
            except Exception as e:  # connection refused or reset counts as "not accepted"
                r = (0, repr(e), {})
            with lock:
                results.append(r)
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def test_burst_above_capacity_gets_503_and_no_false_202():
    # A long linger keeps every event in flight for a while, so 16 concurrent clients exceed
    # max_inflight 4 for certain.
    broker, pub = start(config={"max_inflight": 4, "threads": 4, "kafka.linger.ms": 300})
    results = _burst(pub, 16, 4, lambda t, i: login_event(account=f"b{t}-{i}"))
    ok = [b for s, b, _ in results if s == 202]
    busy = [(b, h) for s, b, h in results if s == 503]
    assert len(ok) + len(busy) == len(results), [r[:2] for r in results if r[0] not in (202, 503)]
    assert ok and busy, (len(ok), len(busy))
    for b, h in busy:
        assert b["error"] == "overloaded" and int(h["retry-after"]) >= 1, (b, h)
    msgs = consume(broker, "login", len(ok))
    in_kafka = {m["headers"]["ce-id"] for m in msgs}
    assert {b["id"] for b in ok} <= in_kafka
    assert metric(pub, "bus_publisher_rejected_total", 'reason="overloaded"') == len(busy)


def test_full_local_queue_gets_503_and_no_false_202():
    # The Kafka client's own queue bound (queue_max_messages) is the second line of defence.
    broker, pub = start(config={"max_inflight": 10000, "queue_max_messages": 3, "threads": 4,
                                "kafka.linger.ms": 300})
    results = _burst(pub, 12, 3, lambda t, i: [login_event(account=f"q{t}-{i}")], batch=True)
    ok = [b for s, b, _ in results if s == 202]
    busy = [(b, h) for s, b, h in results if s == 503]
    assert len(ok) + len(busy) == len(results), [r[:2] for r in results if r[0] not in (202, 503)]
    assert ok and busy, (len(ok), len(busy))
    for b, h in busy:
        assert b["error"] == "overloaded" and int(h["retry-after"]) >= 1, (b, h)
    ids = [i for b in ok for i in b["ids"]]
    msgs = consume(broker, "login", len(ids))
    assert set(ids) <= {m["headers"]["ce-id"] for m in msgs}


def test_broker_down_gives_503_with_retry_after_then_recovers():
    broker, pub = start(config={"produce_timeout_ms": 1500})
    status, body, _ = post(pub, login_event())
    assert status == 202, body
    if broker.kind == "mock":
        # The mock takes its broker down in its main loop, after the signal: until it logs so,
        # a produce is still acknowledged, and a 202 then is honest (the event is in the log).
        # Publishing before that line was the flaky 202 this test once saw.
        downs = broker.proc.log().count("brokers set down")
        broker.proc.signal(signal.SIGUSR1)
        harness.wait_for(lambda: broker.proc.log().count("brokers set down") > downs, 10,
                         what="the mock reporting its broker down")
    else:
        broker.proc.kill()  # waits until the process is gone
    status, body, headers = post(pub, login_event(account="during-outage"))
    assert status == 503 and body["error"] == "broker_unavailable", (status, body)
    assert int(headers["retry-after"]) >= 1
    harness.wait_for(lambda: harness.http("GET", pub.url + "/readyz")[0] == 503, 10,
                     what="readyz reporting the broker down")
    if broker.kind != "mock":
        return
    broker.proc.signal(signal.SIGUSR2)
    harness.wait_for(lambda: post(pub, login_event(account="after"))[0] == 202, 20,
                     what="publishing again after the broker is back")
    assert harness.http("GET", pub.url + "/readyz")[0] == 200
    # No false 202: the event answered 503 may or may not be in Kafka (at-least-once), every
    # acknowledged one is.
    keys = {m["key"] for m in all_messages(broker, "login")}
    assert {"acc-1", "after"} <= keys, keys


def test_sigterm_stops_accepting_waits_for_acks_and_exits_0():
    broker, pub = start(config={"kafka.linger.ms": 500, "max_inflight": 1000})
    results = []
    started = threading.Event()

    def fire():
        def one(t, i):
            started.set()
            return login_event(account=f"t{t}-{i}")
        results.extend(_burst(pub, 8, 1, one))
    th = threading.Thread(target=fire)
    th.start()
    started.wait(10)
    harness.wait_for(lambda: metric(pub, "bus_publisher_in_flight") > 0, 10,
                     what="events in flight")
    pub.signal(signal.SIGTERM)
    th.join(60)
    assert pub.popen.wait(timeout=30 * harness.timeout_mult()) == 0, pub.log()[-2000:]
    ok = [b for s, b, _ in results if s == 202]
    assert ok, results
    assert all(s in (202, 503, 0) for s, _, _ in results), results
    msgs = consume(broker, "login", len(ok))
    assert {b["id"] for b in ok} <= {m["headers"]["ce-id"] for m in msgs}


@harness.one_broker
def test_config_doc_and_docs_cover_every_key_and_error_code():
    path = harness.bin_path("bus-publisher")
    if not os.path.exists(path):
        raise harness.Skip("bus-publisher not built")
    out = subprocess.run([path, "--config-doc"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    keys = re.findall(r"`([a-z_.]+)`", out.stdout)
    for k in ("listen", "bootstrap", "bus_config_dir", "bus_schema", "threads", "max_inflight",
              "queue_max_messages", "produce_timeout_ms"):
        assert k in keys, (k, out.stdout[:2000])
    doc = open(os.path.join(ROOT, "docs", "publisher.md")).read()
    for k in keys:
        assert f"`{k}`" in doc, f"config key {k} missing from docs/publisher.md"
    src = open(os.path.join(ROOT, "bus", "publisher", "ingest.c")).read()
    codes = set(re.findall(r'(?:reject|reject_retry)\([^;]*?"([a-z_]+)",', src, re.S))
    assert {"unauthorized", "forbidden", "malformed_json", "schema_violation"} <= codes, codes
    for c in codes:
        assert f"`{c}`" in doc, f"error code {c} missing from docs/publisher.md"
