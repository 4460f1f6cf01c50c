"""bus-dispatcher against a real broker and real HTTP endpoints: every event reaches every route
(counted by id at the receiving end; any loss fails), per-key order under concurrency, retries
of failing and unreachable endpoints with nothing skipped, streaming with 204, dead letters,
crashes (SIGKILL) and rebalancing between two dispatchers, live route changes."""
import json
import os
import random
import signal
import threading
import time
from http.server import ThreadingHTTPServer

import harness

BROKERS = ["mock", "embedded"]
ROOT = harness.ROOT
SCHEMA = os.path.join(ROOT, "config", "schema", "bus.schema.json")
# The admin API wants the admin token (the development default here).
ADMIN = {"Authorization": "Bearer dev-admin-token"}


# ---- helpers --------------------------------------------------------------------------------

class Sink:
    """A recording endpoint: counts events by their "id" field, keeps per-key arrival order,
    and answers through `answer(event, headers)` -> (status, body, headers)."""

    def __init__(self, answer=None, delay=None):
        self.lock = threading.Lock()
        self.seen = {}          # id -> deliveries
        self.order = {}         # key -> [seq, ...] in arrival order
        self.headers = []       # headers of every delivery
        self.bodies = []        # its body, as received
        self.in_flight_keys = set()
        self.overlap = []       # keys seen twice at once
        self.answer = answer or (lambda ev, h: (200, None, None))
        self.delay = delay

    def __call__(self, method, path, headers, body):
        ev = json.loads(body)
        key = ev.get("account_id")
        with self.lock:
            if key in self.in_flight_keys:
                self.overlap.append(key)
            self.in_flight_keys.add(key)
        try:
            if self.delay:
                time.sleep(self.delay())
            status, out, out_h = self.answer(ev, headers)
        finally:
            with self.lock:
                self.in_flight_keys.discard(key)
        if 200 <= status < 300:
            with self.lock:
                self.seen[ev["id"]] = self.seen.get(ev["id"], 0) + 1
                self.order.setdefault(key, []).append(ev["seq"])
                self.headers.append(headers)
                self.bodies.append(body)
        return status, out, out_h

    def count(self):
        with self.lock:
            return len(self.seen)

    def missing(self, ids):
        with self.lock:
            return [i for i in ids if i not in self.seen]


def serve_on(port, handler):
    """An endpoint on a chosen port (to bring an endpoint up after the dispatcher tried it):
    harness._serve's handler class, bound to port."""
    base = harness._serve(handler)
    cls = base.RequestHandlerClass
    base.shutdown()
    base.server_close()
    srv = ThreadingHTTPServer(("127.0.0.1", port), cls)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    harness.ctx().servers.append(srv)
    return srv


def events(n, keys=10, prefix="e"):
    return [{"id": f"{prefix}{i}", "seq": i, "account_id": f"acc-{i % keys}",
             "ip": "203.0.113.7", "ts": "2026-11-25T04:18:31Z"} for i in range(n)]


def produce(broker, topic, evs):
    """Produces evs keyed by account_id, with CloudEvents headers, through kcat."""
    lines = b"".join(f"{e['account_id']}\t{json.dumps(e)}\n".encode() for e in evs)
    harness.kcat(["-P", "-b", broker.bootstrap, "-t", topic, "-K", "\t", "-H",
                  f"ce-type={topic}", "-H", "ce-source=test", "-H",
                  "ce-id=kcat", "-H",
                  "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
                 input_bytes=lines)


def broker_with(topics):
    """The test's broker with topics {name: partitions} created: the mock creates them at start,
    the embedded broker through `busctl apply` (CreateTopics)."""
    ctx = harness.ctx()
    broker = ctx.broker(topics=topics)
    if broker.kind != "mock":
        path = harness.bin_path("busctl")
        if not os.path.exists(path):
            raise harness.Skip("busctl not built")
        ctx.write_json("topics-only/t.json", {"topics": [
            {"name": n, "partitions": p} for n, p in topics.items()]})
        env = dict(os.environ, BUS_BOOTSTRAP=broker.bootstrap, DISPATCHER_URLS="",
                   BUS_SCHEMA=SCHEMA)
        import subprocess
        p = subprocess.run([path, "apply", ctx.path("topics-only")], capture_output=True,
                           text=True, cwd=ROOT, env=env, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
    return broker


def bus_config(topics, routes):
    ctx = harness.ctx()
    ctx.write_json("bus/test.json", {"topics": topics, "routes": routes})
    return ctx.path("bus")


def topic(name, partitions=3, key="/account_id"):
    t = {"name": name, "partitions": partitions}
    if key:
        t["key"] = key
    return t


def route(name, topic_name, endpoint, **kw):
    r = {"name": name, "topic": topic_name, "endpoint": endpoint,
         "retry": {"initial_ms": 20, "max_ms": 200, "max_attempts": 0}}
    r.update(kw)
    return r


def start_dispatcher(broker, bus_dir, name="bus-dispatcher", **cfg):
    c = {"bootstrap": broker.bootstrap, "bus_config_dir": bus_dir, "bus_schema": SCHEMA,
         "shutdown_timeout_ms": 5000}
    c.update(cfg)
    return harness.ctx().start("bus-dispatcher", config=c, ready_path="/readyz", name=name)


def wait_all(sink, ids, timeout=30, what="events delivered"):
    harness.wait_for(lambda: not sink.missing(ids), timeout,
                     what=f"{what} (missing {len(sink.missing(ids))} of {len(ids)})")


def metric(proc, name, labels=""):
    _, body, _ = harness.http("GET", proc.url + "/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            rest = line[len(name):]
            if rest[:1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
    return total


# ---- tests ----------------------------------------------------------------------------------

def test_fan_out_to_three_routes():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    sinks = [Sink() for _ in range(3)]
    urls = [ctx.serve(s)[0] for s in sinks]
    d = bus_config([topic("t")], [route(f"r{i}", "t", urls[i] + "/in", concurrency=8)
                                 for i in range(3)])
    disp = start_dispatcher(broker, d)
    evs = events(300)
    produce(broker, "t", evs)
    ids = [e["id"] for e in evs]
    for s in sinks:
        wait_all(s, ids)
    h = sinks[0].headers[0]
    assert h["ce-specversion"] == "1.0" and h["ce-type"] == "t"
    assert h["x-bus-route"] == "r0" and h["x-bus-topic"] == "t"
    assert h["x-bus-attempt"] == "1" and h["x-bus-offset"].isdigit()
    tp = h["traceparent"].split("-")
    assert tp[1] == "0af7651916cd43dd8448eb211c80319c" and tp[2] != "b7ad6b7169203331"
    # every route is signed: without its own secret, with the dispatcher's signing_secret
    assert h["webhook-id"] == h["ce-id"] and "x-bus-signature" not in h
    assert harness.delivery_verified(os.environ["BUS_SIGNING_SECRET"], h, sinks[0].bodies[0])
    _, body, _ = harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)
    routes = {r["name"]: r for r in body["routes"]}
    assert set(routes) == {"r0", "r1", "r2"}
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_delivered_total", 'route="r1"') >= 300,
                     10, what="delivered metric")


def test_signature_when_route_has_secret():
    ctx = harness.ctx()
    broker = broker_with({"t": 1})
    attempts = {}  # event id -> [(webhook-id, webhook-timestamp), ...]
    lock = threading.Lock()

    def answer(ev, headers):
        # The first three attempts of every event fail at once: the retries come within the
        # same second, and each must be signed with a timestamp of its own.
        with lock:
            pairs = attempts.setdefault(ev["id"], [])
            pairs.append((headers.get("webhook-id"), headers.get("webhook-timestamp")))
            return (503, None, None) if len(pairs) <= 3 else (200, None, None)

    sink = Sink(answer)
    url, _ = ctx.serve(sink)
    # a list of two keys, as while keys rotate: one signature per key
    d = bus_config([topic("t", 1)], [route("signed", "t", url, secret="s3cret-new s3cret-old")])
    start_dispatcher(broker, d)
    evs = events(3)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs])
    for h, body in zip(sink.headers, sink.bodies):
        assert h["webhook-id"] == h["ce-id"], h
        assert len(h["webhook-signature"].split()) == 2, h
        assert harness.delivery_verified("s3cret-old", h, body), h
        assert harness.delivery_verified("s3cret-new", h, body), h
        assert not harness.delivery_verified("s3cret", h, body), h
    for pairs in attempts.values():
        assert len(pairs) == 4 and len(set(pairs)) == 4, pairs


def test_key_order_under_concurrency_16():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    rnd = random.Random(7)
    sink = Sink(delay=lambda: rnd.random() * 0.01)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t")], [route("ordered", "t", url, concurrency=16, ordering="key")])
    start_dispatcher(broker, d)
    evs = events(400, keys=20)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    assert not sink.overlap, f"two events of one key at once: {sink.overlap[:5]}"
    for key, seqs in sink.order.items():
        assert seqs == sorted(seqs), f"key {key} out of order: {seqs[:20]}"


def test_500_then_200_retried():
    ctx = harness.ctx()
    broker = broker_with({"t": 1})
    tries = {}

    def answer(ev, h):
        tries[ev["id"]] = tries.get(ev["id"], 0) + 1
        return (500, {"error": "boom"}, None) if tries[ev["id"]] <= 2 else (200, None, None)
    sink = Sink(answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 1)], [route("flaky", "t", url, concurrency=4)])
    disp = start_dispatcher(broker, d)
    evs = events(20)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs])
    assert all(v == 1 for v in sink.seen.values())
    assert all(h["x-bus-attempt"] == "3" for h in sink.headers)
    assert metric(disp, "bus_dispatcher_retried_total", 'route="flaky"') >= 40


def test_endpoint_down_then_back_nothing_skipped():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    port = harness.free_port()
    d = bus_config([topic("t")], [route("down", "t", f"http://127.0.0.1:{port}/in",
                                        concurrency=8, timeout_ms=1000)])
    disp = start_dispatcher(broker, d)
    evs = events(200)
    produce(broker, "t", evs)
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_retried_total") >= 10, 20,
                     what="refused deliveries retried")
    harness.wait_for(lambda: any(r["state"] in ("retrying", "breaker-open") for r in
                                 harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)[1]["routes"]),
                     10, what="route shows retrying or breaker-open")
    sink = Sink()
    serve_on(port, sink)
    wait_all(sink, [e["id"] for e in evs], timeout=40)
    harness.wait_for(lambda: harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)[1]["routes"][0]
                     ["state"] == "running", 10, what="route running again")


def test_streaming_outputs_and_204():
    ctx = harness.ctx()
    broker = broker_with({"in": 3, "out": 3})

    def answer(ev, h):
        if ev["seq"] % 2:
            return 204, None, None
        return 200, [{"account_id": ev["account_id"], "from": ev["id"], "n": 1},
                     {"account_id": ev["account_id"], "from": ev["id"], "n": 2}], None
    sink = Sink(answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("in"), topic("out")],
                   [route("enrich", "in", url, mode="streaming", output="out", concurrency=8)])
    disp = start_dispatcher(broker, d)
    evs = events(50)
    produce(broker, "in", evs)
    wait_all(sink, [e["id"] for e in evs])
    msgs = harness.wait_for(lambda: (lambda m: m if len(m) >= 50 else None)(
        harness.kcat_consume(broker.bootstrap, "out", 50, timeout=10)), 20,
        what="50 outputs")
    froms = sorted((json.loads(m["value"])["from"], json.loads(m["value"])["n"]) for m in msgs)
    want = sorted((e["id"], n) for e in evs if e["seq"] % 2 == 0 for n in (1, 2))
    assert froms == want
    m = msgs[0]
    assert m["headers"]["ce-type"] == "out" and m["headers"]["ce-source"] == "enrich"
    assert m["headers"]["causation-id"] == "kcat"
    assert m["headers"]["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert m["key"] == json.loads(m["value"])["account_id"]
    assert metric(disp, "bus_dispatcher_no_content_total", 'route="enrich"') == 25


def test_400_goes_to_dead_letter():
    ctx = harness.ctx()
    broker = broker_with({"t": 1, "t.dlq": 1})

    def answer(ev, h):
        return (400, {"error": "bad", "why": "seq " + str(ev["seq"])}, None) \
            if ev["seq"] % 5 == 0 else (200, None, None)
    sink = Sink(answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 1), topic("t.dlq", 1)],
                   [route("picky", "t", url, dead_letter="t.dlq")])
    disp = start_dispatcher(broker, d)
    evs = events(25)
    produce(broker, "t", evs)
    good = [e["id"] for e in evs if e["seq"] % 5]
    wait_all(sink, good)
    dl = harness.wait_for(lambda: (lambda m: m if len(m) >= 5 else None)(
        harness.kcat_consume(broker.bootstrap, "t.dlq", 5, timeout=10)), 20,
        what="5 dead letters")
    assert sorted(json.loads(m["value"])["id"] for m in dl) == \
        sorted(e["id"] for e in evs if e["seq"] % 5 == 0)
    h = dl[0]["headers"]
    assert h["x-bus-status"] == "400" and h["x-bus-attempts"] == "1"
    assert h["x-bus-route"] == "picky" and h["x-bus-topic"] == "t"
    assert "bad" in h["x-bus-answer"]
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_dead_lettered_total") == 5, 10,
                     what="dead-lettered metric")


def test_sigkill_mid_stream_then_restart_at_least_once():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    sink = Sink(delay=lambda: 0.002)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t")], [route("crashy", "t", url, concurrency=8)])
    disp = start_dispatcher(broker, d)
    evs = events(1000)
    produce(broker, "t", evs)
    harness.wait_for(lambda: sink.count() >= 100, 20, what="some delivered")
    disp.signal(signal.SIGKILL)
    disp.popen.wait()
    start_dispatcher(broker, d)
    wait_all(sink, [e["id"] for e in evs], timeout=60)


def test_two_dispatchers_one_killed():
    ctx = harness.ctx()
    broker = broker_with({"t": 4})
    sink = Sink(delay=lambda: 0.002)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 4)], [route("shared", "t", url, concurrency=4)])
    a = start_dispatcher(broker, d, name="disp-a")
    b = start_dispatcher(broker, d, name="disp-b")

    def owned(p):
        _, body, _ = harness.http("GET", p.url + "/v1/routes", headers=ADMIN)
        return len(body["routes"][0]["partitions"])
    harness.wait_for(lambda: owned(a) > 0 and owned(b) > 0 and owned(a) + owned(b) == 4, 30,
                     what="partitions split between both dispatchers")
    evs = events(800)
    produce(broker, "t", evs)
    harness.wait_for(lambda: sink.count() >= 100, 20, what="some delivered")
    a.signal(signal.SIGKILL)
    a.popen.wait()
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    harness.wait_for(lambda: owned(b) == 4, 30, what="survivor owns every partition")


def test_sigterm_finishes_and_commits():
    ctx = harness.ctx()
    broker = broker_with({"t": 1})
    sink = Sink()
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 1)], [route("calm", "t", url)])
    disp = start_dispatcher(broker, d)
    evs = events(50)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs])
    disp.signal(signal.SIGTERM)
    assert disp.popen.wait(timeout=15) == 0
    # restarted: everything was committed, nothing comes again
    again = start_dispatcher(broker, d)
    more = events(5, prefix="late")
    produce(broker, "t", more)
    wait_all(sink, [e["id"] for e in more])
    assert all(v == 1 for v in sink.seen.values()), "events delivered twice after SIGTERM"
    assert again.alive()


def test_live_route_change_under_load():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    s1, s2, s3, s4 = Sink(), Sink(), Sink(), Sink()
    u1, u2, u3, u4 = (ctx.serve(s)[0] for s in (s1, s2, s3, s4))
    d = bus_config([topic("t")], [route("keep", "t", u1, concurrency=4),
                                  route("moving", "t", u2, concurrency=4)])
    disp = start_dispatcher(broker, d)
    first = events(300, prefix="a")
    produce(broker, "t", first)
    harness.wait_for(lambda: s2.count() >= 20, 20, what="moving route started")
    # change the endpoint of "moving", add "added"; "keep" must not restart
    bus_config([topic("t")], [route("keep", "t", u1, concurrency=4),
                              route("moving", "t", u3, concurrency=8),
                              route("added", "t", u4, concurrency=4)])
    status, body, _ = harness.http("POST", disp.url + "/v1/reload", headers=ADMIN)
    assert status == 200, body
    assert sorted(body["routes"]) == ["added", "keep", "moving"]
    second = events(300, prefix="b")
    produce(broker, "t", second)
    ids = [e["id"] for e in first + second]
    wait_all(s1, ids)
    wait_all(s4, [e["id"] for e in first + second])  # a new group starts at the beginning
    # every event reached "moving" at its old or new endpoint: nothing skipped at the switch
    harness.wait_for(lambda: all(i in s2.seen or i in s3.seen for i in ids), 30,
                     what="moving route delivered everything across the change")
    log = disp.log()
    assert log.count('route keep: started') == 1, "unchanged route was restarted"
    # an invalid config is refused and changes nothing
    bus_config([topic("t")], [route("keep", "t", "ftp://nope")])
    status, body, _ = harness.http("POST", disp.url + "/v1/reload", headers=ADMIN)
    assert status == 422
    _, body, _ = harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)
    assert len(body["routes"]) == 3


def test_backpressure_pause_resume_skips_nothing():
    """A tiny bound on unfinished events per partition: the partition is paused and resumed
    over and over (librdkafka drops prefetched records on pause); every event still arrives
    exactly once and the committed offset reaches the end."""
    ctx = harness.ctx()
    broker = broker_with({"t": 2})
    sink = Sink()
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 2)], [route("tight", "t", url, concurrency=16)])
    disp = start_dispatcher(broker, d, max_pending_per_partition=16)
    evs = events(1500, keys=50)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    assert all(v == 1 for v in sink.seen.values())

    def committed_to_end():
        parts = harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)[1]["routes"][0]["partitions"]
        return parts and all(p["committed"] == p["high_watermark"] for p in parts) and \
            sum(p["committed"] for p in parts) >= 1500
    harness.wait_for(committed_to_end, 10, what="committed up to the end of each partition")


def test_tracker_full_behind_a_retried_event_resumes():
    """One event is answered 503 while the events after it (other keys) are delivered: their
    finished offsets wait behind it in the partition's offset tracker (max_pending_per_partition
    + 2,048 offsets). Fed in small steps, so that the partition is never paused for too many
    unfinished events, the tracker fills exactly and the partition pauses with nothing in
    flight. Once the endpoint takes the held event the partition must fetch again and every
    event arrive, each once. (Before the fix it paused again for good: the tracker was emptied
    only at the next commit tick, after the resumed fetch had found it still full.)"""
    ctx = harness.ctx()
    broker = broker_with({"t": 1})
    release = threading.Event()

    def answer(ev, h):
        if ev["id"] == "e0" and not release.is_set():
            return 503, None, None
        return 200, None, None
    sink = Sink(answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 1)], [route("held", "t", url, concurrency=16,
                                           retry={"initial_ms": 1000, "max_ms": 1000,
                                                  "max_attempts": 0})])
    disp = start_dispatcher(broker, d, max_pending_per_partition=256)
    cap = 256 + 2048
    evs = events(cap + 300, keys=1000)
    evs[0]["account_id"] = "acc-held"
    for lo in range(0, cap, 200):  # never 256 unfinished at once
        hi = min(lo + 200, cap)
        produce(broker, "t", evs[lo:hi])
        wait_all(sink, [e["id"] for e in evs[max(lo, 1):hi]], timeout=30)
    produce(broker, "t", evs[cap:])  # no room for these: the partition pauses

    def paused():
        st = harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)[1]["routes"][0]
        return st["partitions"] and st["partitions"][0]["paused"]
    harness.wait_for(paused, 30, what="the partition paused on a full tracker")
    assert sink.count() == cap - 1
    release.set()
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    assert all(v == 1 for v in sink.seen.values())


def test_partitions_take_free_slots_in_turn():
    """Two partitions with a backlog each and one delivery slot: the route serves them in turn
    instead of draining the first partition in its list while the other waits.

    Judged only from the moment both partitions have events in the dispatcher's hands: the
    consumer starts fetching a partition once its start offset is known, and under load one
    partition's first fetch can come a few hundred deliveries after the other's (the flaky
    failures). Until then the one slot rightly serves the only partition that has events. A
    slow endpoint (3 ms per event) keeps that head start small against the backlog."""
    ctx = harness.ctx()
    broker = broker_with({"t": 2})
    sink = Sink(delay=lambda: 0.003)
    url, _ = ctx.serve(sink)
    evs = events(1000, keys=200)
    produce(broker, "t", evs)  # the backlog is there before the route starts
    d = bus_config([topic("t", 2)], [route("one-slot", "t", url, concurrency=1)])
    start_dispatcher(broker, d)
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    with sink.lock:
        order = [h.get("X-Bus-Partition") or h.get("x-bus-partition") for h in sink.headers]
    counts = {p: order.count(p) for p in set(order)}
    assert len(counts) == 2, counts
    both = max(order.index(p) for p in counts)  # the later partition's first delivery
    rest = order[both:]
    m = min(rest.count(p) for p in counts)
    assert m >= 100, f"one partition was drained before the other started ({both} deliveries)"
    head = rest[:m]  # while both partitions still have events waiting
    assert all(head.count(p) >= m // 4 for p in counts), \
        f"{m} deliveries from delivery {both} on, by partition: { {p: head.count(p) for p in counts} }"


@harness.one_broker
def test_warns_when_routes_outgrow_the_connection_pool():
    """Every delivery in flight holds a connection: routes whose concurrency adds up to more
    than http_connections get a warning naming both numbers (under load the pool would close
    one endpoint's connections to open another's). Deliveries still work."""
    ctx = harness.ctx()
    broker = broker_with({"t": 1})
    sink = Sink()
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 1)], [route("a", "t", url, concurrency=8),
                                     route("b", "t", url, concurrency=8)])
    disp = start_dispatcher(broker, d, http_connections=10)
    harness.wait_for(lambda: any("adds up to 16, above http_connections (10)" in l.get("msg", "")
                                 for l in disp.log_lines()), 10, what="the pool warning")
    evs = events(50)
    produce(broker, "t", evs)
    harness.wait_for(lambda: sink.count() == 50 and
                     all(v == 2 for v in sink.seen.values()), 30, what="both routes delivered")


# ---- batched delivery (route "batch" > 1: CloudEvents batched content mode) ------------------

BATCH_TYPE = "application/cloudevents-batch+json"


class BatchSink(Sink):
    """A recording endpoint that takes single and batched deliveries. `answer(event, headers)`
    decides each event; a batch is answered as the bus expects (docs/bus.md): the first
    retryable status for all, else 422 when any event is refused, else 204 or an array of the
    events' outputs. Keeps the size of every request and the elements of every batch."""

    def __init__(self, answer=None, batch_answer=None, secret=None):
        super().__init__(answer)
        self.sizes = []         # events per request, in arrival order
        self.elements = []      # every batch element (attributes), as received
        self.batch_answer = batch_answer  # (events) -> (status, body, headers) or None
        self.secret = secret
        self.bad_signatures = 0
        self.bad_counts = 0     # batches whose X-Bus-Batch did not match their length

    def __call__(self, method, path, headers, body):
        if self.secret:
            if not harness.delivery_verified(self.secret, headers, body):
                with self.lock:
                    self.bad_signatures += 1
                return 401, {"error": "bad_signature"}, None
        if headers.get("content-type", "").split(";")[0] != BATCH_TYPE:
            with self.lock:
                self.sizes.append(1)
            return super().__call__(method, path, headers, body)
        elements = json.loads(body)
        with self.lock:
            self.bad_counts += headers.get("x-bus-batch") != str(len(elements))
            self.sizes.append(len(elements))
            self.elements.extend(elements)
        evs = [el["data"] for el in elements]
        forced = self.batch_answer(evs) if self.batch_answer else None
        if forced:
            return forced
        answers = [self.answer(ev, headers) for ev in evs]
        retry = [a for a in answers if a[0] in (408, 429) or a[0] >= 500]
        if retry:
            return retry[0]
        if any(not 200 <= a[0] < 300 for a in answers):
            return 422, {"error": "batch_refused"}, None
        with self.lock:
            for ev in evs:
                self.seen[ev["id"]] = self.seen.get(ev["id"], 0) + 1
                self.order.setdefault(ev.get("account_id"), []).append(ev["seq"])
        outs = [a[1] if a[0] != 204 else None for a in answers]
        if all(o is None for o in outs):
            return 204, None, None
        return 200, outs, None

    def batched(self):
        with self.lock:
            return sum(1 for n in self.sizes if n > 1), max(self.sizes or [0])


def test_batch_route_gathers_events_in_key_order_signed():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    sink = BatchSink(secret="batch-secret")
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t")], [route("gather", "t", url, concurrency=2, batch=50,
                                        secret="batch-secret")])
    disp = start_dispatcher(broker, d)
    evs = events(3000, keys=400)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    assert sink.bad_signatures == 0 and sink.bad_counts == 0
    assert all(n == 1 for n in sink.seen.values()), "an event delivered twice without a failure"
    for key, seqs in sink.order.items():
        assert seqs == sorted(seqs), f"key {key} out of order"
    n_batched, biggest = sink.batched()
    assert n_batched > 0 and 1 < biggest <= 50, (n_batched, biggest, sink.sizes[:20])
    el = sink.elements[0]
    assert el["specversion"] == "1.0" and el["type"] == "t" and el["source"] == "test"
    assert el["datacontenttype"] == "application/json" and el["busattempt"] == 1
    assert el["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert isinstance(el["buspartition"], int) and isinstance(el["busoffset"], int)
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_lag", 'route="gather"') == 0, 20,
                     what="lag 0 (offsets committed)")
    _, st, _ = harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)
    assert [r["batch"] for r in st["routes"] if r["name"] == "gather"] == [50]


def test_batch_streaming_answers_event_by_event():
    ctx = harness.ctx()
    broker = broker_with({"in": 3, "out": 3})

    def answer(ev, h):
        if ev["seq"] % 2:
            return 204, None, None
        return 200, {"account_id": ev["account_id"], "from": ev["id"]}, None
    sink = BatchSink(answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("in"), topic("out")],
                   [route("enrich", "in", url, mode="streaming", output="out", concurrency=2,
                          batch=20)])
    disp = start_dispatcher(broker, d)
    evs = events(400, keys=100)
    produce(broker, "in", evs)
    wait_all(sink, [e["id"] for e in evs])
    msgs = harness.wait_for(lambda: (lambda m: m if len(m) >= 200 else None)(
        harness.kcat_consume(broker.bootstrap, "out", 200, timeout=10)), 30,
        what="200 outputs")
    assert sorted(json.loads(m["value"])["from"] for m in msgs) == \
        sorted(e["id"] for e in evs if e["seq"] % 2 == 0)
    m = msgs[0]
    assert m["headers"]["ce-source"] == "enrich" and m["headers"]["causation-id"] == "kcat"
    assert m["key"] == json.loads(m["value"])["account_id"]
    assert sink.batched()[0] > 0
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_no_content_total",
                                    'route="enrich"') == 200, 10, what="200 answers of 204")


def test_batch_refused_goes_one_by_one_and_only_the_bad_event_is_dead_lettered():
    ctx = harness.ctx()
    broker = broker_with({"t": 1, "t.dlq": 1})

    def answer(ev, h):
        return (422, {"error": "bad"}, None) if ev["seq"] % 50 == 7 else (200, None, None)
    sink = BatchSink(answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t", 1), topic("t.dlq", 1)],
                   [route("picky", "t", url, dead_letter="t.dlq", concurrency=1, batch=25)])
    start_dispatcher(broker, d)
    evs = events(500, keys=200)
    produce(broker, "t", evs)
    bad = sorted(e["id"] for e in evs if e["seq"] % 50 == 7)
    wait_all(sink, [e["id"] for e in evs if e["seq"] % 50 != 7], timeout=60)
    dl = harness.wait_for(lambda: (lambda m: m if len(m) >= len(bad) else None)(
        harness.kcat_consume(broker.bootstrap, "t.dlq", len(bad), timeout=10)), 30,
        what=f"{len(bad)} dead letters")
    assert sorted(json.loads(m["value"])["id"] for m in dl) == bad
    # the refused batch was not an answer about each event: one attempt, the single one
    assert {m["headers"]["x-bus-attempts"] for m in dl} == {"1"}
    assert sink.batched()[0] > 0


def test_batch_retried_when_the_endpoint_fails_then_recovers():
    ctx = harness.ctx()
    broker = broker_with({"t": 3})
    failures = {"left": 5}
    lock = threading.Lock()

    def batch_answer(evs):
        with lock:
            if failures["left"] > 0:
                failures["left"] -= 1
                return 503, {"error": "busy"}, {"Retry-After": "0"}
        return None
    sink = BatchSink(batch_answer=batch_answer)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("t")], [route("flaky", "t", url, concurrency=2, batch=100)])
    disp = start_dispatcher(broker, d)
    evs = events(1000, keys=300)
    produce(broker, "t", evs)
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    assert failures["left"] == 0
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_retried_total", 'route="flaky"') > 0,
                     10, what="retries counted")


# ---- exactly once (docs/bus.md "Exactly once") ------------------------------------------------

try:
    import confluent_kafka as ck
except ImportError:  # run by a Python without Debian's python3-confluent-kafka
    ck = None


def read_outputs(bootstrap, topic, want, isolation="read_committed", timeout=60):
    """The values of topic read from the beginning by a fresh consumer with the given
    isolation.level: until `want` arrived and then 2 s more without a new one (to catch any
    duplicate), or until timeout."""
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time_ns()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "isolation.level": isolation, "enable.partition.eof": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout * harness.timeout_mult()
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(json.loads(m.value()))
                last = time.monotonic()
            elif len(out) >= want and time.monotonic() - last > 2:
                break
    finally:
        c.close()
    return out


def _sigkill_streaming(exactly_once, n=600):
    """A streaming route (answer: one output per event) killed with SIGKILL mid-stream and
    started again: returns (events, outputs read with read_committed, the restarted
    dispatcher)."""
    if ck is None:
        raise harness.Skip("python3-confluent-kafka not importable by this Python")
    ctx = harness.ctx()
    broker = broker_with({"in": 3, "out": 3})
    sink = Sink(lambda ev, h: (200, {"account_id": ev["account_id"], "from": ev["id"]}, None),
                delay=lambda: 0.003)
    url, _ = ctx.serve(sink)
    extra = {"exactly_once": True} if exactly_once else {}
    d = bus_config([topic("in"), topic("out")],
                   [route("enrich", "in", url, mode="streaming", output="out", concurrency=8,
                          **extra)])
    disp = start_dispatcher(broker, d, instance_id="node-1")
    evs = events(n, keys=50)
    produce(broker, "in", evs)
    harness.wait_for(lambda: sink.count() >= n // 4, 30, what="a quarter delivered")
    assert sink.count() < n, "all delivered before the kill: the test proves nothing"
    disp.signal(signal.SIGKILL)
    disp.popen.wait()
    disp = start_dispatcher(broker, d, name="bus-dispatcher-2", instance_id="node-1")
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    return evs, read_outputs(broker.bootstrap, "out", n), disp, sink


# Embedded broker only: librdkafka's mock cluster (2.0.2) accepts the transactional calls but its
# TxnOffsetCommit stores no offset and its EndTxn writes no commit/abort marker, so a
# read_committed consumer sees the killed dispatcher's aborted outputs and the restarted one
# starts over from the beginning of the input: the guarantee cannot hold there.
@harness.one_broker
def test_exactly_once_streaming_sigkill_mid_stream_then_restart():
    evs, outs, disp, sink = _sigkill_streaming(True)
    froms = [o["from"] for o in outs]
    dups = sorted({f for f in froms if froms.count(f) > 1})
    missing = sorted({e["id"] for e in evs} - set(froms))
    assert not dups and not missing, f"{len(dups)} duplicated {dups[:5]}, " \
        f"{len(missing)} missing {missing[:5]}"
    assert len(outs) == len(evs)
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_transactions_total",
                                    'outcome="committed"') > 0, 10,
                     what="committed transactions counted")
    _, body, _ = harness.http("GET", disp.url + "/v1/routes", headers=ADMIN)
    st = [r for r in body["routes"] if r["name"] == "enrich"][0]
    assert st["exactly_once"] is True and st["transactions"]["committed"] > 0
    # the endpoint saw some events twice (the killed dispatcher's last transaction was
    # aborted and its inputs delivered again): exactly once is about the output topic
    print(f"deliveries: {sum(sink.seen.values())} for {len(evs)} events")


def test_streaming_without_exactly_once_sigkill_is_at_least_once():
    """The same crash without the option: nothing lost; duplicates may appear (not asserted:
    whether the kill lands between a produce and its commit is luck)."""
    evs, outs, _, _ = _sigkill_streaming(False)
    froms = [o["from"] for o in outs]
    assert not {e["id"] for e in evs} - set(froms)
    print(f"outputs: {len(froms)} for {len(evs)} events "
          f"({len(froms) - len(set(froms))} duplicates)")


@harness.one_broker
def test_exactly_once_route_fenced_mid_stream_aborts_rewinds_and_stays_exactly_once():
    """Another producer takes the route's transactional.id (InitTransactions fences the
    dispatcher's producer and aborts its open transaction) twice while events stream: the
    route counts aborted transactions, makes a new producer, reads again from its last
    committed offsets, and read_committed still sees every answer once. Embedded broker only
    (see above)."""
    if ck is None:
        raise harness.Skip("python3-confluent-kafka not importable by this Python")
    ctx = harness.ctx()
    broker = broker_with({"in": 3, "out": 3})
    sink = Sink(lambda ev, h: (200, {"account_id": ev["account_id"], "from": ev["id"]}, None),
                delay=lambda: 0.003)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("in"), topic("out")],
                   [route("enrich", "in", url, mode="streaming", output="out", concurrency=8,
                          exactly_once=True)])
    disp = start_dispatcher(broker, d, instance_id="node-1")
    evs = events(900, keys=50)
    produce(broker, "in", evs[:300])
    for fence in range(2):
        harness.wait_for(lambda: sink.count() >= 100 + 300 * fence, 30, what="some delivered")
        intruder = ck.Producer({"bootstrap.servers": broker.bootstrap,
                                "transactional.id": "bus.route.enrich.node-1"})
        intruder.init_transactions(20 * harness.timeout_mult())
        intruder.flush(1)
        produce(broker, "in", evs[300 * (fence + 1):300 * (fence + 2)])
    wait_all(sink, [e["id"] for e in evs], timeout=60)
    harness.wait_for(lambda: metric(disp, "bus_dispatcher_transactions_total",
                                    'outcome="aborted"') >= 1, 20,
                     what="an aborted transaction counted")
    outs = read_outputs(broker.bootstrap, "out", len(evs))
    froms = [o["from"] for o in outs]
    dups = sorted({f for f in froms if froms.count(f) > 1})
    missing = sorted({e["id"] for e in evs} - set(froms))
    assert not dups and not missing, f"{len(dups)} duplicated {dups[:5]}, " \
        f"{len(missing)} missing {missing[:5]}"
    assert "transaction aborted" in disp.log()


@harness.one_broker
def test_exactly_once_two_dispatchers_rebalance_then_one_killed():
    """Two dispatchers (instance ids node-a, node-b) share an exactly-once route: the second
    one joins mid-stream (the first commits its finished prefix in a transaction when its
    partitions are revoked), then the first is killed (its open transaction is aborted by the
    broker's transaction time-out, its partitions move to the survivor, which reads them again
    from their last committed offsets). A read_committed consumer sees every answer once.
    Embedded broker only (see above)."""
    if ck is None:
        raise harness.Skip("python3-confluent-kafka not importable by this Python")
    ctx = harness.ctx()
    broker = broker_with({"in": 4, "out": 3})
    sink = Sink(lambda ev, h: (200, {"account_id": ev["account_id"], "from": ev["id"]}, None),
                delay=lambda: 0.004)
    url, _ = ctx.serve(sink)
    d = bus_config([topic("in", 4), topic("out")],
                   [route("shared", "in", url, mode="streaming", output="out", concurrency=4,
                          exactly_once=True)])
    a = start_dispatcher(broker, d, name="disp-a", instance_id="node-a")
    evs = events(1200, keys=60)
    produce(broker, "in", evs)
    harness.wait_for(lambda: sink.count() >= 150, 30, what="some delivered by the first")
    b = start_dispatcher(broker, d, name="disp-b", instance_id="node-b")

    def owned(p):
        _, body, _ = harness.http("GET", p.url + "/v1/routes", headers=ADMIN)
        return len(body["routes"][0]["partitions"])
    harness.wait_for(lambda: owned(a) > 0 and owned(b) > 0, 30,
                     what="partitions split between both dispatchers")
    assert sink.count() < len(evs), "all delivered before the kill: the test proves nothing"
    a.signal(signal.SIGKILL)
    a.popen.wait()
    wait_all(sink, [e["id"] for e in evs], timeout=90)
    outs = read_outputs(broker.bootstrap, "out", len(evs), timeout=90)
    froms = [o["from"] for o in outs]
    dups = sorted({f for f in froms if froms.count(f) > 1})
    missing = sorted({e["id"] for e in evs} - set(froms))
    assert not dups and not missing, f"{len(dups)} duplicated {dups[:5]}, " \
        f"{len(missing)} missing {missing[:5]}"
    assert "partition" in a.log() and "revoked" in a.log(), "the first never gave a partition up"
