"""An exactly-once streaming route (docs/bus.md "Exactly once") while its broker is killed
(SIGKILL) mid-stream and started again on the same data: the transactions that fail meanwhile
are aborted, the route reads again from its last committed offsets, and a read_committed
consumer of the output still sees every answer exactly once."""
import json
import os
import sys

import harness

sys.path.insert(0, os.path.join(harness.ROOT, "tests", "integration"))
import test_dispatcher as td  # noqa: E402  (its Sink, events, produce and readers)


def test_exactly_once_route_through_a_broker_kill_and_restart():
    if td.ck is None:
        raise harness.Skip("python3-confluent-kafka not importable by this Python")
    ctx = harness.ctx()
    port = harness.free_port()
    bcfg = {"listen": f"127.0.0.1:{port}", "data_dir": ctx.path("broker-data", "x")[:-2],
            "http.listen": f"127.0.0.1:{harness.free_port()}", "topics": "in:3,out:3"}
    broker = ctx.start("bus-broker", config=bcfg, http=False, name="broker-1")
    harness.wait_for(lambda: harness.tcp_open(port) or not broker.alive(), 10, what="broker")
    b = harness.Broker("embedded", f"127.0.0.1:{port}", broker)
    sink = td.Sink(lambda ev, h: (200, {"account_id": ev["account_id"], "from": ev["id"]},
                                  None), delay=lambda: 0.005)
    url, _ = ctx.serve(sink)
    d = td.bus_config([td.topic("in"), td.topic("out")],
                      [td.route("enrich", "in", url, mode="streaming", output="out",
                                concurrency=4, exactly_once=True)])
    disp = td.start_dispatcher(b, d, instance_id="node-1")
    evs = td.events(1200, keys=50)
    td.produce(b, "in", evs)
    harness.wait_for(lambda: sink.count() >= 200, 30, what="some delivered")
    at_kill = sink.count()
    assert at_kill < len(evs), "all delivered before the kill: the test proves nothing"
    broker.kill()
    # the answers to what the dispatcher had fetched cannot be committed: the transaction
    # fails (after its 5 s time-out), is aborted and the route rewinds. Known to fail now and
    # then under load: librdkafka's send_offsets_to_transaction ignores its time-out while the
    # group coordinator is away (librdkafka issue 5456), and the route then waits in it until the
    # broker is back. Starting the broker earlier is no cure: a commit that librdkafka resumes
    # after the route gave it up duplicates outputs (see docs/bus.md, "Exactly once").
    harness.wait_for(lambda: "transaction aborted" in disp.log(), 30,
                     what="a transaction aborted while the broker is down")
    broker = ctx.start("bus-broker", config=bcfg, http=False, name="broker-2")
    harness.wait_for(lambda: harness.tcp_open(port) or not broker.alive(), 10, what="broker")
    td.wait_all(sink, [e["id"] for e in evs], timeout=90)
    assert td.metric(disp, "bus_dispatcher_transactions_total", 'outcome="aborted"') >= 1
    outs = td.read_outputs(b.bootstrap, "out", len(evs), timeout=90)
    froms = [o["from"] for o in outs]
    dups = sorted({f for f in froms if froms.count(f) > 1})
    missing = sorted({e["id"] for e in evs} - set(froms))
    assert not dups and not missing, f"{len(dups)} duplicated {dups[:5]}, " \
        f"{len(missing)} missing {missing[:5]}"
    aborted = td.metric(disp, "bus_dispatcher_transactions_total", 'outcome="aborted"')
    print(f"deliveries: {sum(sink.seen.values())} for {len(evs)} events; "
          f"transactions aborted: {aborted:.0f}")
