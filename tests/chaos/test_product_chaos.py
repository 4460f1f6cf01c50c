"""The fault suite (issue 21): logins with unique ids through the whole product
(tests/lib/product.py: embedded broker, PostgreSQL, every service, the bus), one fault in the
middle of the load, then the product must come back by itself to: every login answered 202 in
history exactly once, every login from abroad kicked exactly once and its player messaged once
(guard's default policy here is "kick": a kick and an in-game message per foreign login), and
nothing in any dead-letter topic. The time from the end of the fault to that state is printed.

Faults: SIGKILL and SIGTERM of each process of the product (then started again, as a supervisor
would), the broker included; PostgreSQL's postmaster SIGKILLed, and PostgreSQL stopped; an
endpoint (notify) down for a while. gamesim, the stand-in for the game servers, is the outside
world here and is not killed (its kick memory is in memory). The broker's full disk has its own
test (test_disk_full.py).

`make test` runs a short form (four faults, a few seconds of outage); `make chaos` (CHAOS=full)
every fault, the endpoint down for two minutes and PostgreSQL for 30 s."""
import json
import os
import signal
import subprocess
import time

import harness
import pg
import product

ASAN = False  # whole-product load tests; the C paths run sanitized in the other tests
IS_FULL = os.environ.get("CHAOS") == "full"
LOGINS = 1500 if IS_FULL else 400
RATE = 150
ENDPOINT_DOWN_S = 120 if IS_FULL else 3
DATABASE_DOWN_S = 30 if IS_FULL else 0


# ---- the load and the checks --------------------------------------------------------------

def start(ctx):
    return product.start(ctx, retry_max_ms=1000,
                         service_config={"guard": {"default_policy": "kick"}})


def _loginsim_asks_guard():
    """Whether this loginsim asks guard before publishing (status_url): then it is told not to,
    so that every login is published and counted."""
    r = subprocess.run([harness.bin_path("loginsim"), "--config-doc"], capture_output=True,
                       text=True, timeout=10)
    return "status_url" in r.stdout


def start_load(p):
    ids = harness.ctx().path("ids.txt")
    cfg = {"publisher_url": p.publisher.url + "/v1/topics/login/events", "rate": RATE,
           "count": LOGINS, "accounts": 200, "abroad_share": 0.3, "threads": 8,
           "ids_file": ids, "timeout_ms": 5000}
    if _loginsim_asks_guard():
        cfg["status_url"] = ""
    sim = harness.ctx().start("loginsim", http=False, config=cfg)
    return sim, ids


def accepted(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split("\t")[0] for line in f.read().splitlines() if "\t" in line]


def received(p):
    st, body, _ = harness.http("GET", p.url("gamesim") + "/v1/received", timeout=5,
                               headers=getattr(product, "GAMESIM_AUTH", None))
    assert st == 200, (st, body)
    return body


def dead_letters(p):
    """Records in every dead-letter topic."""
    n = 0
    for topic in product.bus_topics():
        if topic.startswith("dead."):
            out = harness.kcat(["-C", "-b", p.broker.bootstrap, "-t", topic, "-o", "beginning",
                                "-e", "-q", "-f", "%o\\n"])
            n += len(out.split())
    return n


def settle(p, sim, ids_path, t_end):
    """Waits for the load to finish and the product to reach the state the suite wants; returns
    the time to recover: from t_end (the end of the fault) until every login accepted by then is
    in history and, if from abroad, kicked and messaged (the load goes on meanwhile)."""
    before = set(accepted(ids_path))
    harness.wait_for(lambda: before <= set(p.history_count_by_id()), 180,
                     what="the logins accepted before the fault's end in history", interval=0.2)
    foreign = {r[0] for r in p.psql("SELECT id FROM history.logins WHERE country <> 'KR'")}
    foreign &= before

    def acted_before():
        got = received(p)
        return foreign <= {k.get("login_id") for k in got["kicks"]} and \
            len(got["messages"]) >= len(foreign)
    harness.wait_for(acted_before, 180, what="the foreign logins accepted before the fault's "
                     "end kicked and messaged", interval=0.2)
    took = time.monotonic() - t_end
    harness.wait_for(lambda: sim.popen.poll() is not None, 300, what="loginsim finished")
    assert sim.popen.returncode == 0, sim.log()[-2000:]
    ids = accepted(ids_path)
    assert len(ids) == LOGINS and len(set(ids)) == LOGINS, (len(ids), len(set(ids)))
    want = set(ids)

    def in_history():
        return want <= set(p.history_count_by_id())
    harness.wait_for(in_history, 180, what=f"all {len(want)} accepted logins in history",
                     interval=0.5)
    abroad = {r[0] for r in p.psql("SELECT id FROM history.logins WHERE country <> 'KR'")}

    def acted():
        got = received(p)
        return abroad <= {k.get("login_id") for k in got["kicks"]} and \
            len(got["messages"]) >= len(abroad)
    harness.wait_for(acted, 180, what=f"a kick and a message for each of the {len(abroad)} "
                     "foreign logins", interval=0.5)
    # Everything taken in is finished and committed: a repeat would have come by now.
    harness.wait_for(lambda: p.route_lag() and not any(p.route_lag().values()), 60,
                     what=f"every route caught up ({p.route_lag()})", interval=0.5)
    counts = p.history_count_by_id()
    twice = {i: n for i, n in counts.items() if n != 1}
    assert not twice, f"logins stored more than once: {dict(list(twice.items())[:5])}"
    extra = set(counts) - want
    assert not extra, f"rows that no 202 accounts for: {sorted(extra)[:3]}"
    got = received(p)
    kick_ids = [k.get("login_id") for k in got["kicks"]]
    again = {i for i in kick_ids if kick_ids.count(i) > 1}
    assert not again, f"players kicked twice for one login: {sorted(again)[:3]}"
    # one in-game message per foreign login: notify sent nothing twice
    assert len(got["kicks"]) == len(abroad), (len(got["kicks"]), len(abroad))
    assert len(got["messages"]) == len(abroad), (len(got["messages"]), len(abroad))
    assert dead_letters(p) == 0, "dead letters"
    return took, len(abroad)


# ---- faults ---------------------------------------------------------------------------------

def restart_broker(p, kill):
    b = p.broker.proc
    cfg = json.load(open(b.popen.args[b.popen.args.index("--config") + 1]))
    if kill:
        b.kill()
    else:
        assert b.stop(timeout=15) == 0, b.log()[-2000:]
    proc = harness.ctx().start("bus-broker", config=cfg, http=False, name="bus-broker-again")
    port = int(cfg["listen"].rsplit(":", 1)[1])
    harness.wait_for(lambda: harness.tcp_open(port) or not proc.alive(), 15, what="broker back")
    p.broker.proc = proc


def process_fault(name, sig):
    def inject(p):
        if name == "bus-broker":
            restart_broker(p, kill=sig == signal.SIGKILL)
            return
        proc = p.svc[name]
        if sig == signal.SIGKILL:
            proc.kill()
        else:
            assert proc.stop(timeout=15) == 0, proc.log()[-2000:]
        p.start(name)
    return inject


def postgres_killed(p):
    cluster = pg.cluster()
    pid = int(open(os.path.join(cluster.dir, "data", "postmaster.pid")).readline())
    os.kill(pid, signal.SIGKILL)  # the postmaster; its backends notice and exit
    harness.wait_for(lambda: not cluster.running(), 15, what="PostgreSQL down")

    def started():
        try:
            cluster.start()  # crash recovery replays the WAL
            return True
        except AssertionError:
            return False  # backends of the killed postmaster still hold its shared memory
    harness.wait_for(started, 60, what="PostgreSQL started again", interval=0.5)


def postgres_stopped(p):
    cluster = pg.cluster()
    cluster.stop()
    deadline = time.monotonic() + DATABASE_DOWN_S
    try:
        # Down for its time, and seen down: the services say so in /readyz meanwhile.
        harness.wait_for(lambda: time.monotonic() >= deadline and
                         harness.http("GET", p.url("history") + "/readyz", timeout=2)[0] != 200,
                         DATABASE_DOWN_S + 30, what="history not ready while PostgreSQL is down",
                         interval=0.5)
    finally:
        cluster.start()


def endpoint_down(p):
    notify = p.svc["notify"]
    assert notify.stop(timeout=15) == 0
    deadline = time.monotonic() + ENDPOINT_DOWN_S
    # The dispatcher keeps retrying notify's routes meanwhile (breaker open, one probe at a
    # time); what is due is waited for, not slept: the routes' lag grows while it is down.
    harness.wait_for(lambda: time.monotonic() >= deadline and
                     p.route_lag().get("notify-actions", 0) > 0, ENDPOINT_DOWN_S + 60,
                     what="notify down for its time, with events waiting for it", interval=0.5)
    p.start("notify")


PROCESSES = ["ipcheck", "history", "guard", "notify", "campaign", "bus-publisher",
             "bus-dispatcher", "bus-broker"]
FAULTS = {}
for _name in PROCESSES:
    FAULTS[f"sigkill_{_name.replace('-', '_')}"] = process_fault(_name, signal.SIGKILL)
    FAULTS[f"sigterm_{_name.replace('-', '_')}"] = process_fault(_name, signal.SIGTERM)
FAULTS["postgres_killed"] = postgres_killed
FAULTS["postgres_stopped"] = postgres_stopped
FAULTS["endpoint_down"] = endpoint_down
SHORT = ["sigkill_guard", "sigterm_bus_broker", "postgres_killed", "endpoint_down"]


def run_fault(fault):
    ctx = harness.ctx()
    p = start(ctx)
    sim, ids_path = start_load(p)
    harness.wait_for(lambda: len(accepted(ids_path)) >= LOGINS // 4, 60,
                     what="a quarter of the logins accepted before the fault")
    t0 = time.monotonic()
    FAULTS[fault](p)
    t_end = time.monotonic()
    took, n_abroad = settle(p, sim, ids_path, t_end)
    print(f"chaos {fault}: fault {t_end - t0:.1f} s, recovered {took:.1f} s after its end "
          f"({LOGINS} logins once in history, {n_abroad} foreign kicked once, no dead letter)")


def _make(fault):
    def test():
        run_fault(fault)
    test.__name__ = f"test_{fault}_loses_nothing_and_acts_once"
    return test


for _fault in (FAULTS if IS_FULL else SHORT):
    _t = _make(_fault)
    globals()[_t.__name__] = _t
