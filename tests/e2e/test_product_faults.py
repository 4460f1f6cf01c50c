"""Faults under load through the whole product (issue 5): loginsim publishes a few hundred logins
through the publisher while a part of the product fails and comes back; afterwards every login
the publisher accepted (every 202, recorded by loginsim's ids_file) is in history exactly once
(counted by event id straight in PostgreSQL).

(a) history SIGKILLed under load, restarted later; (b) the PostgreSQL cluster stopped under load
(every service loses its database) and started again; (c) the dispatcher SIGKILLed mid-flow
(offsets not committed, deliveries in flight lost) and restarted: every event is delivered at
least once (also down the guard → account.action → gamesim chain) and history holds each once.

Each test starts its own product (a fault leaves state behind), with the routes' retry back-off
capped at 1 s instead of 30 s so that the recovery is not a wait for the next attempt."""
import os

import harness
import pg
import product

ASAN = False  # a load test: the C paths are covered by the ASan pass of test_product
LOGINS = 600
RATE = 200  # logins/s: the load lasts about 3 s, the faults happen inside it


def start_product(**kw):
    return product.start(harness.ctx(), retry_max_ms=1000, **kw)


def start_load(p, accounts=50, abroad_share=0.0):
    ids = harness.ctx().path("ids.txt")
    sim = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": p.publisher.url + "/v1/topics/login/events", "rate": RATE,
        "count": LOGINS, "accounts": accounts, "abroad_share": abroad_share, "threads": 8,
        "ids_file": ids, "timeout_ms": 5000,
        "status_url": "", "game_url": ""})  # every login published: this test counts them
    return sim, ids


def accepted_ids(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split("\t")[0] for line in f.read().splitlines() if "\t" in line]


def wait_accepted(path, n, what):
    harness.wait_for(lambda: len(accepted_ids(path)) >= n, 60, what=f"{n} logins accepted ({what})")


def finish_load(sim, path):
    harness.wait_for(lambda: sim.popen.poll() is not None, 120, what="loginsim finished")
    assert sim.popen.returncode == 0, sim.log()[-2000:]
    ids = accepted_ids(path)
    assert len(ids) == LOGINS and len(set(ids)) == LOGINS, (len(ids), len(set(ids)))
    return ids


def assert_history_exactly_once(p, ids):
    """Waits until every id is in history.logins, then checks each is there exactly once."""
    want = set(ids)

    def stored():
        return len(set(p.history_count_by_id()) & want) >= len(want)
    try:
        harness.wait_for(stored, 90, what=f"all {len(want)} accepted logins in history")
    finally:
        counts = p.history_count_by_id()
    missing = want - set(counts)
    assert not missing, f"{len(missing)} accepted logins missing from history, e.g. " \
                        f"{sorted(missing)[:3]}"
    dup = {i: n for i, n in counts.items() if i in want and n != 1}
    assert not dup, f"logins stored more than once: {dict(list(dup.items())[:5])}"
    extra = set(counts) - want
    assert not extra, f"rows in history that no 202 accounts for: {sorted(extra)[:3]}"


def test_history_killed_under_load_records_every_login_once():
    p = start_product()
    sim, path = start_load(p)
    wait_accepted(path, LOGINS // 6, "before the kill")
    p.svc["history"].kill()  # SIGKILL: batches in flight are lost, never answered
    wait_accepted(path, LOGINS // 2, "while history is down")
    # While it is down, the history route's deliveries fail and are retried.
    harness.wait_for(lambda: p.route_lag().get("history", 0) > 0, 30,
                     what="the history route lagging while history is down")
    p.start("history")
    ids = finish_load(sim, path)
    assert_history_exactly_once(p, ids)


def test_database_restarted_under_load_loses_nothing():
    p = start_product()
    cluster = pg.cluster()
    sim, path = start_load(p)
    wait_accepted(path, LOGINS // 6, "before the database stops")
    try:
        cluster.stop()
        harness.wait_for(lambda: harness.http("GET", p.url("history") + "/readyz",
                                              timeout=2)[0] != 200, 30,
                         what="history not ready while PostgreSQL is down")
        wait_accepted(path, LOGINS // 2, "while PostgreSQL is down")
    finally:
        cluster.start()
    harness.wait_for(lambda: harness.http("GET", p.url("history") + "/readyz",
                                          timeout=2)[0] == 200, 60,
                     what="history ready again once PostgreSQL is back")
    ids = finish_load(sim, path)
    assert_history_exactly_once(p, ids)
    # history saw the outage (answered 503 to the bus) rather than the test missing it
    st, text, _ = harness.http("GET", p.url("history") + "/metrics")
    unavailable = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("history_unavailable_total")]
    assert unavailable and sum(unavailable) > 0, "history never reported the database down"


def test_dispatcher_killed_mid_flow_delivers_every_event():
    # Every login from abroad is kicked (default policy), so the guard -> account.action ->
    # gamesim chain carries events too.
    p = start_product(service_config={"guard": {"default_policy": "kick"}})
    sim, path = start_load(p, abroad_share=0.2)
    wait_accepted(path, LOGINS // 4, "before the kill")
    p.dispatcher.kill()  # SIGKILL: nothing committed on the way out
    p.start("bus-dispatcher")
    ids = finish_load(sim, path)
    assert_history_exactly_once(p, ids)
    abroad = {r[0] for r in p.psql("SELECT id FROM history.logins WHERE country <> 'KR'")}
    assert len(abroad) > LOGINS * 0.1, len(abroad)

    def kicked():
        st, body, _ = harness.http("GET", p.url("gamesim") + "/v1/received",
                                   headers=product.GAMESIM_AUTH)
        return st == 200 and abroad <= {k.get("login_id") for k in body["kicks"]}
    harness.wait_for(kicked, 90, what=f"a kick for each of the {len(abroad)} logins from abroad")
