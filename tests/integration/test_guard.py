"""guard: policies applied to login.checked deliveries, status API, unlock by code and by support.

Deliveries are POSTed as the dispatcher would (ce-id, X-Bus-Signature); each test gets a fresh
database in the run's private PostgreSQL cluster (tests/lib/pg.py)."""
import datetime
import hashlib
import hmac
import json
import subprocess
import time
import uuid

import jsonschema

import harness
import pg
import sealed

SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/account.action.json"))

AUTH = "test-auth-secret"
BUS = "test-bus-secret"


def start(db_url, **cfg):
    config = {"database_url": db_url, "home_countries": "KR"}
    config.update(cfg)
    return harness.ctx().start("guard", config=config,
                               env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                                    "GUARD_DATABASE_URL": db_url},
                               ready_path="/readyz")


def token(role, subject):
    r = subprocess.run([harness.bin_path("mktoken"), role, subject], capture_output=True,
                       text=True, env={"AUTH_SECRET": AUTH}, timeout=10)
    if r.returncode != 0:
        raise harness.Skip("mktoken not built")
    return r.stdout.strip()


def auth(tok):
    return {"Authorization": "Bearer " + tok}


def login(account, country, login_id=None):
    return {"account_id": account, "ip": "11.2.3.4", "country": country,
            "ts": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "session_id": "s-1", "server": "kr-1", "login_id": login_id or str(uuid.uuid4())}


def deliver(svc, event, secret=BUS):
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "ce-id": str(uuid.uuid4()),
               "ce-type": "login.checked", "ce-source": "ipcheck"}
    if secret:
        headers["X-Bus-Signature"] = "sha256=" + hmac.new(secret.encode(), body,
                                                          hashlib.sha256).hexdigest()
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.checked", raw=body,
                        headers=headers)


def set_policy(svc, account, action, channels=("ingame",), allowed=()):
    st, body, _ = harness.http("PUT", f"{svc.url}/v1/accounts/{account}/policy",
                               {"action": action, "channels": list(channels),
                                "allowed_countries": list(allowed)},
                               headers=auth(token("player", account)))
    assert st == 200, (st, body)
    return body


def status(svc, account):
    st, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/{account}/status",
                               headers=auth(token("staff", "st-sam")))
    assert st == 200, (st, body)
    return body


# The development service token of the status API (guard's default status_tokens).
STATUS_AUTH = {"Authorization": "Bearer dev-status-token"}


def dbname(url):
    return url.rsplit("/", 1)[1]


def test_home_and_policy_none_need_nothing():
    url = pg.fresh_db()
    svc = start(url)
    assert deliver(svc, login("a1", "KR"))[0] == 204
    assert deliver(svc, login("a1", "US"))[0] == 204  # default policy none
    set_policy(svc, "a1", "lock")
    assert deliver(svc, login("a1", "KR"))[0] == 204
    assert deliver(svc, login("a1", "ZZ"))[0] == 204  # unknown country ignored by default
    assert status(svc, "a1")["locked"] is False


def test_signature_and_validation():
    url = pg.fresh_db()
    svc = start(url)
    assert deliver(svc, login("a1", "US"), secret=None)[0] == 401
    assert deliver(svc, login("a1", "US"), secret="wrong")[0] == 401
    bad = login("a1", "US")
    del bad["country"]
    assert deliver(svc, bad)[0] == 422


def test_each_policy_effect():
    url = pg.fresh_db()
    svc = start(url)
    contacts = {"email": "p@example.com", "phone": "+821012345678"}
    for action in ["notify", "kick", "block_abroad", "lock"]:
        acct = "acct-" + action
        st, _, _ = harness.http("PUT", f"{svc.url}/v1/accounts/{acct}/contacts", contacts,
                                headers=auth(token("player", acct)))
        assert st == 200
        set_policy(svc, acct, action, channels=["email", "sms", "ingame"])
        assert status(svc, acct)["locked"] is False  # cached before the login
        ev = login(acct, "US")
        st, body, _ = deliver(svc, ev)
        assert st == 200, (st, body)
        assert body["action"] == action and body["account_id"] == acct
        assert body["login_id"] == ev["login_id"] and body["country"] == "US"
        assert body["session_id"] == "s-1" and body["channels"] == ["email", "sms", "ingame"]
        assert body["contacts"] == contacts
        assert ("sealed_code" in body) == (action == "lock") and "code" not in body
        if action == "lock":
            code = sealed.unlock_code(body)
        jsonschema.validate(body, SCHEMA)
        s = status(svc, acct)
        assert s["locked"] is (action == "lock"), s
        assert s["blocked_abroad"] is (action == "block_abroad"), s
    # the code is never stored in clear
    rows = pg.cluster().psql(dbname(url), "SELECT event, hash FROM guard.decisions d "
                             "JOIN guard.codes c USING (account_id)")
    assert len(rows) == 1 and code not in rows[0][0] and code not in rows[0][1]


def test_allowed_country_and_travel_until():
    url = pg.fresh_db()
    svc = start(url)
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    body = set_policy(svc, "t1", "kick", allowed=["JP", {"country": "US", "until": future},
                                                  {"country": "DE", "until": past}])
    assert sorted(a["country"] for a in body["allowed_countries"]) == ["JP", "US"]
    assert deliver(svc, login("t1", "JP"))[0] == 204
    assert deliver(svc, login("t1", "US"))[0] == 204
    st, ev, _ = deliver(svc, login("t1", "DE"))  # the trip to Germany is over
    assert st == 200 and ev["action"] == "kick"
    st, _, _ = harness.http("PUT", f"{svc.url}/v1/accounts/t1/policy", {"action": "boom"},
                            headers=auth(token("player", "t1")))
    assert st == 400
    st, _, _ = harness.http("PUT", f"{svc.url}/v1/accounts/t1/policy", {"action": "none"},
                            headers=auth(token("player", "someone-else")))
    assert st == 403
    st, _, _ = harness.http("PUT", f"{svc.url}/v1/accounts/t1/policy", {"action": "none"})
    assert st == 401


def test_redelivery_same_answer_no_second_code():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "r1", "lock")
    ev = login("r1", "US")
    st1, b1, _ = deliver(svc, ev)
    st2, b2, _ = deliver(svc, ev)
    assert st1 == st2 == 200 and b1 == b2
    rows = pg.cluster().psql(dbname(url), "SELECT count(*) FROM guard.decisions")
    assert rows[0][0] == "1"
    # a second login from abroad makes a new code; the old one is void
    st3, b3, _ = deliver(svc, login("r1", "US"))
    assert st3 == 200 and sealed.unlock_code(b3) != sealed.unlock_code(b1)


def unlock(svc, account, code, tok=None):
    return harness.http("POST", f"{svc.url}/v1/accounts/{account}/unlock", {"code": code},
                        headers=auth(tok or token("player", account)))


def test_unlock_with_code_and_wrong_codes():
    url = pg.fresh_db()
    svc = start(url, code_attempts=3)
    set_policy(svc, "u1", "lock")
    st, ev, _ = deliver(svc, login("u1", "CN"))
    assert st == 200 and status(svc, "u1")["locked"] is True
    code = sealed.unlock_code(ev)
    wrong = "00000000" if code != "00000000" else "11111111"
    st, body, _ = unlock(svc, "u1", wrong)
    assert st == 403 and body["attempts_left"] == 2
    assert unlock(svc, "u1", code, tok=token("player", "other"))[0] == 403
    st, body, _ = unlock(svc, "u1", code)
    assert st == 200 and body["locked"] is False
    assert status(svc, "u1")["locked"] is False
    assert unlock(svc, "u1", code)[0] == 409  # used up

    # attempts run out: even the right code is refused afterwards
    st, ev, _ = deliver(svc, login("u1", "CN"))
    code = sealed.unlock_code(ev)
    wrong = "00000000" if code != "00000000" else "11111111"
    assert unlock(svc, "u1", wrong)[0] == 403
    assert unlock(svc, "u1", wrong)[0] == 403
    assert unlock(svc, "u1", wrong)[0] == 423
    assert unlock(svc, "u1", code)[0] == 423
    assert status(svc, "u1")["locked"] is True


def test_code_expires():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "e1", "lock")
    st, ev, _ = deliver(svc, login("e1", "CN"))
    pg.cluster().psql(dbname(url), "UPDATE guard.codes SET expires_at = now() - interval '1 s'")
    assert unlock(svc, "e1", sealed.unlock_code(ev))[0] == 410
    assert status(svc, "e1")["locked"] is True


def test_support_unlock_and_audit():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "s1", "lock")
    deliver(svc, login("s1", "BR"))
    assert status(svc, "s1")["locked"] is True
    staff = token("staff", "alice")
    path = f"{svc.url}/v1/support/accounts/s1/unlock"
    assert harness.http("POST", path, {"reason": ""}, headers=auth(staff))[0] == 400
    assert harness.http("POST", path, {"reason": "x"},
                        headers=auth(token("player", "s1")))[0] == 403
    st, body, _ = harness.http("POST", path, {"reason": "verified by phone call"},
                               headers=auth(staff))
    assert st == 200 and body["unlocked_by"] == "alice"
    assert status(svc, "s1")["locked"] is False
    st, body, _ = harness.http("GET", f"{svc.url}/v1/support/audit?account_id=s1",
                               headers=auth(staff))
    assert st == 200 and len(body["entries"]) == 1
    e = body["entries"][0]
    assert (e["staff"], e["action"], e["account_id"], e["reason"]) == \
        ("alice", "unlock", "s1", "verified by phone call")
    assert harness.http("GET", f"{svc.url}/v1/support/audit",
                        headers=auth(token("player", "s1")))[0] == 403


def test_status_fast_from_cache():
    url = pg.fresh_db()
    svc = start(url)
    status(svc, "fast")
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        conn.request("GET", "/v1/accounts/fast/status?ip=8.8.8.8", headers=STATUS_AUTH)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    per = (time.perf_counter() - t0) / n
    conn.close()
    # the round trip includes python's HTTP client; the service's own share is far smaller
    limit = 0.005 * harness.timeout_mult() * (10 if harness.is_asan() else 1)
    assert per < limit, per


BATCH_TYPE = "application/cloudevents-batch+json"


def deliver_batch(svc, events, secret=BUS):
    """POSTs events as one signed batch (CloudEvents batched content mode), as a route with
    "batch" > 1 does."""
    body = json.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "type": "login.checked",
                        "source": "ipcheck", "time": "2026-11-25T06:00:00Z",
                        "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "data": e}
                       for e in events]).encode()
    headers = {"Content-Type": BATCH_TYPE,
               "X-Bus-Signature": "sha256=" + hmac.new(secret.encode(), body,
                                                       hashlib.sha256).hexdigest()}
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.checked", raw=body,
                        headers=headers)


def test_batch_decides_each_login_and_redelivery_same_answer():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "b1", "lock")
    home, abroad = login("b1", "KR"), login("b1", "US")
    st, body, _ = deliver_batch(svc, [home, abroad])
    assert st == 200, (st, body)
    assert isinstance(body, list) and len(body) == 2 and body[0] is None, body
    action = body[1]
    assert action["action"] == "lock" and action["account_id"] == "b1", action
    assert action["login_id"] == abroad["login_id"] and action["country"] == "US"
    assert len(sealed.unlock_code(action)) == 8
    jsonschema.validate(action, SCHEMA)
    assert status(svc, "b1")["locked"] is True
    # the same batch again (new batch element ids, as a redelivery by the bus may have): the same
    # decision, not a second lock or code
    assert deliver_batch(svc, [home, abroad])[:2] == (200, body)
    assert deliver(svc, abroad)[:2] == (200, action)
    rows = pg.cluster().psql(dbname(url), "SELECT count(*) FROM guard.decisions")
    assert rows[0][0] == "1"
    # a batch of logins that need nothing: 204
    assert deliver_batch(svc, [login("b1", "KR"), login("b2", "US")])[0] == 204


def test_batch_with_an_invalid_event_is_refused_whole():
    url = pg.fresh_db()
    svc = start(url)
    bad = login("a1", "US")
    del bad["ts"]
    st, body, _ = deliver_batch(svc, [login("a1", "KR"), bad])
    assert st == 422 and body["error"] == "batch_refused", (st, body)
    assert deliver_batch(svc, [login("a1", "KR")], secret="wrong")[0] == 401


def status_as(svc, account, headers, ip=None):
    q = f"?ip={ip}" if ip else ""
    return harness.http("GET", f"{svc.url}/v1/accounts/{account}/status{q}", headers=headers)


def test_status_api_tokens():
    """Service tokens (hashed in config, per client), the player's own and staff tokens read a
    status; nothing else does."""
    ours = "a-login-server-token-of-our-own"
    digest = hashlib.sha256(ours.encode()).hexdigest()
    svc = start(pg.fresh_db(), status_tokens=f"eu-login:{'0' * 64},kr-login:{digest}")
    st, body, _ = status_as(svc, "t1", auth(ours), ip="8.8.8.8")
    assert st == 200 and body["admit"] is True, (st, body)
    # a login server sees the verdict, not the player's settings or trips
    assert set(body) == {"account_id", "locked", "blocked_abroad", "admit", "reason",
                         "retry_after", "ip", "country"}, body
    for headers in ({}, auth(""), auth("dev-status-token"), auth(ours + "x"), auth(digest),
                    {"Authorization": "Basic " + ours}, auth(token("player", "t1")[:-2] + "xx")):
        st, body, _ = status_as(svc, "t1", headers)
        assert st == 401 and body["error"] == "unauthorized", (headers, st, body)
    st, body, _ = status_as(svc, "t1", auth(token("player", "someone-else")))
    assert st == 403 and body["error"] == "forbidden", (st, body)
    assert status_as(svc, "t1", auth(token("player", "t1")))[0] == 200
    assert "policy" in status_as(svc, "t1", auth(token("staff", "sam")))[1]
    st, body, _ = status_as(svc, "t1", auth(ours), ip="not-an-ip")
    assert st == 400 and body["error"] == "bad_ip", (st, body)
    # a malformed client list refuses the start, naming the setting
    bad = harness.ctx().start("guard", config={"database_url": pg.fresh_db(),
                                               "status_tokens": "kr-login:abc"},
                              env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS}, wait=False)
    harness.wait_for(lambda: not bad.alive(), 10, what="guard refusing its config")
    assert "status_tokens" in bad.log()


def test_status_api_admits_or_refuses_a_login():
    svc = start(pg.fresh_db())
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    set_policy(svc, "ba", "block_abroad", allowed=[{"country": "JP", "until": until}])
    set_policy(svc, "lk", "lock")
    cases = [  # account, ip, admit, reason
        ("ba", "211.234.10.20", True, None),        # home (KR)
        ("ba", "126.0.0.77", True, None),           # JP: allowed for the trip
        ("ba", "8.8.8.8", False, "blocked_abroad"),  # US
        ("ba", "10.1.2.3", True, None),             # ZZ, ignore_unknown_country
        ("nobody", "8.8.8.8", True, None),          # default policy none
        ("lk", "8.8.8.8", True, None),              # lock: nothing until a lock happens
    ]
    for acct, ip, admit, reason in cases:
        st, body, _ = status_as(svc, acct, STATUS_AUTH, ip=ip)
        assert st == 200, (st, body)
        assert (body["admit"], body["reason"], body["retry_after"]) == (admit, reason, None), \
            (acct, ip, body)
    assert deliver(svc, login("lk", "US"))[0] == 200  # locked now
    for ip in ("211.234.10.20", "8.8.8.8"):
        body = status_as(svc, "lk", STATUS_AUTH, ip=ip)[1]
        assert (body["admit"], body["reason"], body["locked"]) == (False, "locked", True), body
