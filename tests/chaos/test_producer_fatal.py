"""The publisher's Kafka producer fails fatally and is replaced by a fresh one, without a
restart (issue 21: after its idempotent producer failed, every login got 503 until the publisher
was restarted).

The fatal error is made the way the issue met it: the broker lost the tail of a partition that
the producer had written (as a crash of a broker syncing lazily does; here its last batch is cut
off while it is down), so the producer's next sequence number leaves a gap for the broker, which
answers OUT_OF_ORDER_SEQUENCE_NUMBER: for librdkafka's idempotent producer, a fatal error."""
import glob
import os
import struct

import harness
import product


def _publish(pub, account):
    return harness.http("POST", pub.url + "/v1/topics/login/events",
                        product.login(account, "8.8.8.8"),
                        headers={"Authorization": "Bearer " + product.LOGIN_TOKEN}, timeout=60)


def _cut_last_batch(path):
    """Truncates a segment file before its last record batch; returns the batches left."""
    data = open(path, "rb").read()
    starts, pos = [], 0
    while pos + 12 <= len(data):
        starts.append(pos)
        pos += 12 + struct.unpack(">i", data[pos + 8:pos + 12])[0]
    os.truncate(path, starts[-1])
    return len(starts) - 1


def test_fatal_producer_error_gets_a_fresh_producer_without_restart():
    ctx = harness.ctx()
    port = harness.free_port()
    data = ctx.path("broker-data", "x")[:-2]
    topics = ",".join(f"{n}:{p}" for n, p in product.bus_topics().items())
    bcfg = {"listen": f"127.0.0.1:{port}", "data_dir": data, "topics": topics,
            "http.listen": f"127.0.0.1:{harness.free_port()}"}
    broker = ctx.start("bus-broker", config=bcfg, http=False, name="broker-1")
    harness.wait_for(lambda: harness.tcp_open(port) or not broker.alive(), 10, what="broker")
    pub = ctx.start("bus-publisher", config={"bootstrap": f"127.0.0.1:{port}",
                                             "produce_timeout_ms": 3000}, ready_path="/readyz")
    answers = []
    for _ in range(4):  # one account: one partition, one batch per request
        st, body, _ = _publish(pub, "fatal-1")
        assert st == 202, (st, body)
        answers.append(body)
    partition = answers[-1]["partition"]
    broker.kill()
    segs = sorted(glob.glob(os.path.join(data, f"login-{partition}", "*.log")))
    assert _cut_last_batch(segs[-1]) == 3
    broker = ctx.start("bus-broker", config=bcfg, http=False, name="broker-2")
    harness.wait_for(lambda: harness.tcp_open(port) or not broker.alive(), 10, what="broker")

    # The next event of that partition meets the gap: the producer fails fatally, the request
    # gets 503, and a fresh producer takes over by itself.
    st, body, _ = _publish(pub, "fatal-1")
    assert st == 503, (st, body)
    harness.wait_for(lambda: "a fresh producer replaces" in pub.log(), 15,
                     what="the fatal error and a fresh producer")
    assert "OUT_OF_ORDER_SEQUENCE_NUMBER" in pub.log()
    harness.wait_for(lambda: _publish(pub, "fatal-1")[0] == 202, 30,
                     what="events accepted again by the same publisher", interval=0.3)
    harness.wait_for(lambda: harness.http("GET", pub.url + "/readyz")[0] == 200, 15,
                     what="the publisher ready again")
    for i in range(5):
        st, body, _ = _publish(pub, f"fatal-{i}")
        assert st == 202, (st, body)
    assert pub.alive()
