"""history: login.checked / account.action deliveries into PostgreSQL, the login history API.

Deliveries are POSTed as the dispatcher would (harness.delivery_headers, retry until 2xx); the
database is a fresh one per test in the run's shared private cluster (tests/lib/pg.py)."""
import base64
import datetime
import json
import os
import threading
import uuid

import harness
import pg
from tokens import AUTH, BUS, token

MIGRATIONS = sorted(f for f in os.listdir(os.path.join(harness.ROOT, "sql", "history"))
                    if f.endswith(".sql"))


def start(db_url, **cfg):
    config = {"database_url": db_url, "batch_wait_ms": 5, "maintenance_interval_s": 3600}
    config.update(cfg)
    return harness.ctx().start("history", config=config,
                               env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                                    "HISTORY_DATABASE_URL": db_url},
                               ready_path="/readyz")


def iso(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def login(account="acct-1", ts=None, ip="11.2.3.4", country="DE", login_id=None):
    return {"account_id": account, "ip": ip, "ts": ts or iso(datetime.datetime.now(
        datetime.timezone.utc)), "session_id": "s-" + uuid.uuid4().hex[:6], "server": "eu-1",
        "client": "pc", "login_id": login_id or str(uuid.uuid4()), "country": country}


def deliver(svc, topic, event, secret=BUS, ce_id=None):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(secret, body, ce_id or str(uuid.uuid4()), topic,
                                       {"ce-source": "test"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/{topic}", raw=body, headers=headers)


def batch_of(topic, events):
    """CloudEvents batched mode: one element per event, its id in "id" and the event in "data"."""
    return [{"specversion": "1.0", "id": str(uuid.uuid4()), "type": topic, "source": "test",
             "time": ev.get("ts"), "data": ev} for ev in events]


def deliver_batch(svc, topic, elements, secret=BUS):
    body = json.dumps(elements).encode()
    first = elements[0].get("id") if elements and isinstance(elements[0], dict) else None
    headers = harness.delivery_headers(secret, body, first or str(uuid.uuid4()), batch=True)
    return harness.http("POST", f"{svc.url}/v1/deliveries/{topic}", raw=body, headers=headers)


def get_logins(svc, account, tok, **query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return harness.http("GET", f"{svc.url}/v1/accounts/{account}/logins" + ("?" + qs if qs else ""),
                        headers={"Authorization": "Bearer " + tok} if tok else {})


def dbname(url):
    return url.rsplit("/", 1)[1]


def count(url, where="true"):
    return int(pg.cluster().psql(dbname(url), f"SELECT count(*) FROM history.logins WHERE {where}")
               [0][0])


def test_stored_once_and_read_back():
    url = pg.fresh_db()
    svc = start(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    evs = [login(ts=iso(now - datetime.timedelta(minutes=i)), country=c)
           for i, c in enumerate(["DE", "FR", "ZZ"])]
    for ev in evs:
        assert deliver(svc, "login.checked", ev)[0] == 200
    # duplicates: sequential and concurrent redeliveries of the same event
    assert deliver(svc, "login.checked", evs[0])[0] == 200
    threads = [threading.Thread(target=deliver, args=(svc, "login.checked", evs[1]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(url) == 3
    status, body, _ = get_logins(svc, "acct-1", token("player", "acct-1"))
    assert status == 200, body
    assert [r["id"] for r in body["logins"]] == [e["login_id"] for e in evs]
    first = body["logins"][0]
    assert first == {"id": evs[0]["login_id"], "ts": evs[0]["ts"], "ip": "11.2.3.4",
                     "country": "DE", "server": "eu-1", "action": None, "reasons": [],
                     "unlocked_at": None}, first
    assert body["next_cursor"] is None
    # a restart applies no migration twice and keeps the data
    svc.stop()
    svc = start(url)
    assert get_logins(svc, "acct-1", token("staff", "alice"))[1]["logins"][0]["id"] == \
        evs[0]["login_id"]
    rows = pg.cluster().psql(dbname(url), "SELECT count(*) FROM history.schema_migrations")
    assert rows == [[str(len(MIGRATIONS))]], rows


def test_batches_concurrent_deliveries():
    url = pg.fresh_db()
    svc = start(url, batch_wait_ms=20)
    evs = [login(account="acct-b") for _ in range(40)]
    threads = [threading.Thread(target=lambda e=e: results.append(
        deliver(svc, "login.checked", e)[0])) for e in evs]
    results = []
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 40
    assert count(url) == 40
    status, metrics, _ = harness.http("GET", svc.url + "/metrics")
    batches = [line for line in metrics.splitlines() if line.startswith("history_batches_total")]
    assert batches and float(batches[0].split()[-1]) < 40, batches


def test_validation_and_signature():
    url = pg.fresh_db()
    svc = start(url)
    ev = login()
    assert deliver(svc, "login.checked", ev, secret=None)[0] == 401
    assert deliver(svc, "login.checked", ev, secret="wrong")[0] == 401
    for bad in [dict(ev, ts="yesterday"), dict(ev, ts=None), dict(ev, account_id=""),
                dict(ev, ip=None), dict(ev, country=5)]:
        status, body, _ = deliver(svc, "login.checked", bad)
        assert status == 422 and body["error"], (bad, status, body)
    no_id = dict(ev)
    del no_id["login_id"]
    assert deliver(svc, "login.checked", no_id, ce_id="from-header")[0] == 200
    assert count(url, "id = 'from-header'") == 1
    assert deliver(svc, "account.action", {"login_id": "x", "account_id": "a",
                                           "action": "explode"})[0] == 422
    assert deliver(svc, "account.action", {"login_id": "x", "account_id": "a",
                                           "action": "kick"}, secret=None)[0] == 401


def test_pagination_newest_first():
    url = pg.fresh_db()
    svc = start(url)
    base = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    evs = []
    for i in range(45):
        # pairs share a timestamp: the id breaks the tie
        evs.append(login(account="acct-p", ts=iso(base - datetime.timedelta(seconds=i // 2))))
    evs.append(login(account="someone-else"))
    for ev in evs:
        assert deliver(svc, "login.checked", ev)[0] == 200
    tok = token("player", "acct-p")
    seen, cursor, pages = [], None, 0
    while True:
        q = {"limit": 20}
        if cursor:
            q["cursor"] = cursor
        status, body, _ = get_logins(svc, "acct-p", tok, **q)
        assert status == 200, body
        pages += 1
        seen += body["logins"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))  # opaque but base64
    assert pages == 3 and len(seen) == 45
    want = sorted(evs[:45], key=lambda e: (e["ts"], e["login_id"]), reverse=True)
    assert [r["id"] for r in seen] == [e["login_id"] for e in want]
    assert len(get_logins(svc, "acct-p", tok)[1]["logins"]) == 20  # default limit
    def b64(raw):
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    # Cursors that decode but name what PostgreSQL cannot hold (a timestamp past int64 or past
    # year 9999, an id that is not UTF-8) are refused 400 before the query, never 500.
    for bad in [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "%21%21"},
                {"cursor": "bm9jb21tYQ"}, {"cursor": b64(b"99999999999999999999,x")},
                {"cursor": b64(b"-99999999999999999,x")},
                {"cursor": b64(b"253402300800000000,x")}, {"cursor": b64(b"1,\xff")}]:
        status, body, _ = get_logins(svc, "acct-p", tok, **bad)
        assert status == 400 and body["error"], (bad, status, body)
    # A cursor at the edge of the range is a valid, empty page.
    status, body, _ = get_logins(svc, "acct-p", tok, cursor=b64(b"-62135596800000000,x"))
    assert status == 200 and body["logins"] == [], body
    # An account id that is not UTF-8 or carries an encoded NUL: 400 from the HTTP layer.
    for raw in ["%FF", "a%00b", "%zz"]:
        status, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/{raw}/logins",
                                       headers={"Authorization": f"Bearer {tok}"})
        assert status == 400 and body["error"] == "bad_path", (raw, status, body)


def test_tokens_and_permissions():
    url = pg.fresh_db()
    svc = start(url)
    assert deliver(svc, "login.checked", login(account="acct-x"))[0] == 200
    status, body, headers = get_logins(svc, "acct-x", None)
    assert status == 401 and body["error"] == "unauthorized", body
    assert get_logins(svc, "acct-x", "garbage")[0] == 401
    assert get_logins(svc, "acct-x", token("player", "acct-x", secret="other"))[0] == 401
    status, body, _ = get_logins(svc, "acct-x", token("player", "acct-y"))
    assert status == 403 and body["error"] == "forbidden", body
    status, body, _ = get_logins(svc, "acct-x", token("staff", "support-1"))
    assert status == 200 and len(body["logins"]) == 1


def test_actions_before_and_after_login():
    url = pg.fresh_db()
    svc = start(url)
    early = login(account="acct-a")
    late = login(account="acct-a")
    # the action overtakes its login (different routes)
    assert deliver(svc, "account.action", {"login_id": early["login_id"], "account_id": "acct-a",
                                           "action": "kick", "country": "FR", "ip": "1.2.3.4",
                                           "ts": early["ts"]})[0] == 200
    assert deliver(svc, "login.checked", early)[0] == 200
    assert deliver(svc, "login.checked", late)[0] == 200
    assert deliver(svc, "account.action", {"login_id": late["login_id"], "account_id": "acct-a",
                                           "action": "notify"})[0] == 200
    assert deliver(svc, "account.action", {"login_id": late["login_id"], "account_id": "acct-a",
                                           "action": "lock"})[0] == 200
    body = get_logins(svc, "acct-a", token("player", "acct-a"))[1]
    actions = {r["id"]: r["action"] for r in body["logins"]}
    assert actions == {early["login_id"]: "kick", late["login_id"]: "lock"}, actions
    assert count(url) == 2


def test_retention_drops_old_partitions():
    url = pg.fresh_db()
    svc = start(url, retention_days=5, partitions_ahead_days=2, maintenance_interval_s=1)
    now = datetime.datetime.now(datetime.timezone.utc)
    old = login(account="acct-r", ts=iso(now - datetime.timedelta(days=10)))
    new = login(account="acct-r")
    assert deliver(svc, "login.checked", old)[0] == 200
    assert deliver(svc, "login.checked", new)[0] == 200
    harness.wait_for(lambda: count(url) == 1, timeout=15, what="old partition dropped")
    assert count(url, f"id = '{new['login_id']}'") == 1
    parts = {r[0] for r in pg.cluster().psql(dbname(url), (
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'history.logins'::regclass"))}
    ahead = (now + datetime.timedelta(days=2)).strftime("logins_p%Y%m%d")
    assert ahead in parts, parts
    assert (now - datetime.timedelta(days=10)).strftime("logins_p%Y%m%d") not in parts
    # the account's events are forgotten as old as the logins
    for days in (10, 0):
        assert deliver(svc, "account.event", {"account_id": "acct-r", "kind": "unlocked",
                                              "by": "player", "ts": iso(
                                                  now - datetime.timedelta(days=days))})[0] == 200

    def events():
        return int(pg.cluster().psql(dbname(url), "SELECT count(*) FROM history.events")[0][0])
    harness.wait_for(lambda: events() == 1, timeout=15, what="old event forgotten")
    # This process had ensured that day's partition before retention dropped it: the insert
    # that skips ensuring fails, and the batch is retried with the partition ensured again.
    late = login(account="acct-r", ts=iso(now - datetime.timedelta(days=10)))
    assert deliver(svc, "login.checked", late)[0] == 200
    assert "retrying" in svc.log()


def test_database_down_under_load_stores_everything_once():
    url = pg.fresh_db()
    cluster = pg.cluster()
    svc = start(url)
    n = 240
    evs = [login(account=f"acct-{i % 7}") for i in range(n)]
    statuses = []
    lock = threading.Lock()
    stopped = threading.Event()

    def sender(part):
        for ev in part:
            while True:  # as the dispatcher: retry until 2xx
                try:
                    status = deliver(svc, "login.checked", ev)[0]
                except OSError:
                    status = 0
                with lock:
                    statuses.append(status)
                if status == 200:
                    break
                harness.wait_for(lambda: True, timeout=1)  # yield between retries

    threads = [threading.Thread(target=sender, args=(evs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        harness.wait_for(lambda: statuses.count(200) > 30, timeout=30, what="some stored")
        cluster.stop()
        stopped.set()
        harness.wait_for(lambda: 503 in statuses, timeout=30, what="503 while the db is down")
        assert harness.http("GET", svc.url + "/readyz")[0] == 503
        cluster.start()
        harness.wait_for(lambda: statuses.count(200) > 120, timeout=60, what="progress after")
        cluster.restart()  # and a plain restart under load
    finally:
        if not cluster.running():
            cluster.start()
        for t in threads:
            t.join(timeout=120)
    assert statuses.count(200) == n
    assert set(statuses) <= {200, 503, 0}, set(statuses)
    assert count(url) == n
    rows = cluster.psql(dbname(url), "SELECT count(DISTINCT id) FROM history.logins")
    assert rows == [[str(n)]]


def test_concurrent_starts_migrate_once():
    url = pg.fresh_db()
    ctx = harness.ctx()
    env = {"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS, "HISTORY_DATABASE_URL": url}
    procs = [ctx.start("history", config={"database_url": url}, env=env, wait=False)
             for _ in range(3)]
    for p in procs:
        ctx.wait_http(p, "/readyz")
    rows = pg.cluster().psql(dbname(url),
                             "SELECT version FROM history.schema_migrations ORDER BY version")
    assert rows == [[m] for m in MIGRATIONS], rows
    ev = login(account="acct-c")
    for p in procs:  # all three serve the same table; the login is stored once
        assert deliver(p, "login.checked", ev)[0] == 200
    assert count(url) == 1


def test_batch_of_logins_stored_once_answered_204():
    url = pg.fresh_db()
    svc = start(url, batch_max=2)  # the batch's rows are split across two INSERTs
    evs = [login(account="acct-bt") for _ in range(3)]
    elements = batch_of("login.checked", evs)
    status, body, _ = deliver_batch(svc, "login.checked", elements)
    assert (status, body) == (204, None), (status, body)
    assert count(url) == 3
    status, body, _ = get_logins(svc, "acct-bt", token("player", "acct-bt"))
    assert status == 200, body
    assert {r["id"] for r in body["logins"]} == {e["login_id"] for e in evs}, body
    # the bus retries a batch whole: storing it again changes nothing
    assert deliver_batch(svc, "login.checked", elements)[0] == 204
    assert count(url) == 3
    # login_id falls back to the element's id, as to ce-id for a single delivery
    no_id = login(account="acct-bt")
    del no_id["login_id"]
    element = batch_of("login.checked", [no_id])
    assert deliver_batch(svc, "login.checked", element)[0] == 204
    assert count(url, f"id = '{element[0]['id']}'") == 1


def test_batch_with_invalid_login_refused_whole():
    url = pg.fresh_db()
    svc = start(url)
    evs = [login(account="acct-br") for _ in range(3)]
    del evs[1]["ts"]
    status, body, _ = deliver_batch(svc, "login.checked", batch_of("login.checked", evs))
    assert status == 422 and body["error"] == "batch_refused", (status, body)
    assert "event 1" in body["message"], body
    assert count(url) == 0
    # the bus then delivers the events one by one: the valid ones are stored
    assert [deliver(svc, "login.checked", ev)[0] for ev in evs] == [200, 422, 200]
    assert count(url) == 2


def test_batch_with_bad_signature_stores_nothing():
    url = pg.fresh_db()
    svc = start(url)
    elements = batch_of("login.checked", [login(account="acct-bs") for _ in range(3)])
    for secret in ["wrong", None]:
        status, body, _ = deliver_batch(svc, "login.checked", elements, secret=secret)
        assert status == 401 and body["error"] == "bad_signature", (status, body)
    assert count(url) == 0


def test_batch_of_actions():
    url = pg.fresh_db()
    svc = start(url)
    evs = [login(account="acct-ba") for _ in range(2)]
    assert deliver_batch(svc, "login.checked", batch_of("login.checked", evs))[0] == 204
    actions = [{"login_id": evs[0]["login_id"], "account_id": "acct-ba", "action": "notify"},
               {"login_id": evs[1]["login_id"], "account_id": "acct-ba", "action": "kick"},
               {"login_id": evs[0]["login_id"], "account_id": "acct-ba", "action": "lock"}]
    status, body, _ = deliver_batch(svc, "account.action", batch_of("account.action", actions))
    assert (status, body) == (204, None), (status, body)
    body = get_logins(svc, "acct-ba", token("player", "acct-ba"))[1]
    got = {r["id"]: r["action"] for r in body["logins"]}
    assert got == {evs[0]["login_id"]: "lock", evs[1]["login_id"]: "kick"}, got
    bad = actions[:1] + [dict(actions[1], action="explode")]
    status, body, _ = deliver_batch(svc, "account.action", batch_of("account.action", bad))
    assert status == 422 and body["error"] == "batch_refused", (status, body)
    body = get_logins(svc, "acct-ba", token("player", "acct-ba"))[1]
    assert {r["id"]: r["action"] for r in body["logins"]} == got  # nothing of it applied


def get_events(svc, account, tok, **query):
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return harness.http("GET", f"{svc.url}/v1/accounts/{account}/events" + ("?" + qs if qs else ""),
                        headers={"Authorization": "Bearer " + tok} if tok else {})


def test_reasons_per_login():
    url = pg.fresh_db()
    svc = start(url)
    old, new, quiet = login(account="acct-w"), login(account="acct-w"), login(account="acct-w")
    for ev in (old, new, quiet):
        assert deliver(svc, "login.checked", ev)[0] == 200
    # an action from guard before reasons: its one signal was "not a home country"
    assert deliver(svc, "account.action", {"login_id": old["login_id"], "account_id": "acct-w",
                                           "action": "notify"})[0] == 200
    assert deliver(svc, "account.action", {"login_id": new["login_id"], "account_id": "acct-w",
                                           "action": "kick",
                                           "reasons": ["new_country", "impossible_travel"]})[0] == 200
    status, body, _ = deliver(svc, "account.action", {"login_id": new["login_id"],
                                                      "account_id": "acct-w", "action": "kick",
                                                      "reasons": "abroad"})
    assert status == 422 and body["error"] == "invalid_event", (status, body)
    rows = {r["id"]: r for r in get_logins(svc, "acct-w", token("player", "acct-w"))[1]["logins"]}
    assert rows[old["login_id"]]["reasons"] == ["abroad"]
    assert rows[new["login_id"]]["reasons"] == ["new_country", "impossible_travel"]
    assert rows[quiet["login_id"]]["reasons"] == [] and rows[quiet["login_id"]]["action"] is None


def test_lock_unlock_and_settings_events_in_the_timeline():
    url = pg.fresh_db()
    svc = start(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    lk = login(account="acct-t", ts=iso(now - datetime.timedelta(minutes=5)))
    assert deliver(svc, "login.checked", lk)[0] == 200
    assert deliver(svc, "account.action", {"login_id": lk["login_id"], "account_id": "acct-t",
                                           "action": "lock", "reasons": ["abroad"]})[0] == 200
    row = get_logins(svc, "acct-t", token("player", "acct-t"))[1]["logins"][0]
    assert row["action"] == "lock" and row["unlocked_at"] is None, row
    locked = {"account_id": "acct-t", "ts": lk["ts"], "kind": "locked", "by": "policy",
              "login_id": lk["login_id"]}
    unlocked = {"account_id": "acct-t", "ts": iso(now - datetime.timedelta(minutes=1)),
                "kind": "unlocked", "by": "support"}
    changed = {"account_id": "acct-t", "ts": iso(now), "kind": "settings_changed", "by": "player",
               "change": "policy_changed"}
    unlock_id = str(uuid.uuid4())
    for ev, ce in ((locked, None), (unlocked, unlock_id), (unlocked, unlock_id), (changed, None)):
        assert deliver(svc, "account.event", ev, ce_id=ce)[0] == 200
    # the lock's login now says when it was lifted
    row = get_logins(svc, "acct-t", token("player", "acct-t"))[1]["logins"][0]
    assert row["unlocked_at"] == unlocked["ts"], row
    status, body, _ = get_events(svc, "acct-t", token("player", "acct-t"))
    assert status == 200, body
    assert [(e["kind"], e["by"]) for e in body["events"]] == [
        ("settings_changed", "player"), ("unlocked", "support"), ("locked", "policy")], body
    assert body["events"][0]["change"] == "policy_changed"
    assert body["events"][2]["login_id"] == lk["login_id"]
    assert get_events(svc, "acct-t", token("player", "other"))[0] == 403
    assert get_events(svc, "acct-t", None)[0] == 401
    assert get_events(svc, "acct-t", token("staff", "s1"), limit=1)[1]["events"][0]["kind"] == \
        "settings_changed"
    assert get_events(svc, "acct-t", token("staff", "s1"), limit=0)[0] == 400
    status, body, _ = deliver(svc, "account.event", dict(changed, kind="deleted"))
    assert status == 422 and body["error"] == "invalid_event", (status, body)
    status, body, _ = deliver(svc, "account.event", dict(changed, by="someone"))
    assert status == 422, (status, body)
