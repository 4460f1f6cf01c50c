"""guard: policies applied to login.checked deliveries, status API, unlock by code and by support.

Deliveries are POSTed as the dispatcher would (harness.delivery_headers); each test gets a fresh
database in the run's private PostgreSQL cluster (tests/lib/pg.py)."""
import datetime
import hashlib
import json
import time
import uuid

import jsonschema

import guard_api
import harness
import pg
import sealed
from tokens import AUTH, BUS, auth, token

SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/account.action.json"))


def start(db_url, **cfg):
    """guard on db_url, its messages to a recording publisher (svc.publisher)."""
    pub = guard_api.Publisher()
    config = {"database_url": db_url, "home_countries": "KR", "publisher_url": pub.url}
    config.update(cfg)
    svc = harness.ctx().start("guard", config=config,
                              env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                                   "GUARD_DATABASE_URL": db_url},
                              ready_path="/readyz")
    svc.publisher = pub
    return svc


def set_contacts(svc, account, contacts):
    return guard_api.set_contacts(svc.url, account, token("player", account), contacts,
                                  lambda ch: svc.publisher.contact_code(account, ch))


def login(account, country, login_id=None):
    return {"account_id": account, "ip": "11.2.3.4", "country": country,
            "ts": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "session_id": "s-1", "server": "kr-1", "login_id": login_id or str(uuid.uuid4())}


def deliver(svc, event, secret=BUS):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(secret, body, str(uuid.uuid4()), "login.checked",
                                       {"ce-source": "ipcheck"})
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
        assert set_contacts(svc, acct, contacts)["contacts"] == contacts
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
    # JP then US a second later would be impossible travel (test_guard_signals.py): off here
    svc = start(url, **{"signals.impossible_travel": False})
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
    # newest first: the staff unlock, then the player's own policy change
    assert st == 200 and len(body["entries"]) == 2, body
    e, mine = body["entries"]
    assert (e["actor"], e["staff"], e["action"], e["account_id"], e["reason"]) == \
        ("staff", "alice", "unlock", "s1", "verified by phone call")
    assert (mine["actor"], mine["staff"], mine["action"]) == ("player", None, "policy_changed")
    # the player is told of the staff unlock, on every channel that reaches them
    told = svc.publisher.wait("s1", "staff_unlock")
    assert told[0]["channels"] == ["ingame"] and told[0]["params"] == {"staff": "alice"}, told
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


deliver_batch = guard_api.deliver_batch


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


def put_contacts(svc, account, body, tok=None):
    return harness.http("PUT", f"{svc.url}/v1/accounts/{account}/contacts", body,
                        headers=auth(tok or token("player", account)))


def confirm(svc, account, channel, code, tok=None):
    return harness.http("POST", f"{svc.url}/v1/accounts/{account}/contacts/confirm",
                        {"channel": channel, "code": code},
                        headers=auth(tok or token("player", account)))


def contacts_now(svc, account):
    st, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/{account}/policy",
                               headers=auth(token("player", account)))
    assert st == 200, (st, body)
    return body["contacts"]


def test_new_contact_takes_effect_only_once_confirmed():
    url = pg.fresh_db()
    svc = start(url, code_attempts=3)
    pub = svc.publisher
    st, body, _ = put_contacts(svc, "c1", {"email": "c1@example.com"})
    assert st == 202 and body["pending"] == ["email"], (st, body)
    assert contacts_now(svc, "c1") == {"email": None, "phone": None}
    code = pub.contact_code("c1", "email")
    ev = pub.of("c1", "contact_code")[0]
    assert ev["channels"] == ["email"] and ev["contacts"] == {"email": "c1@example.com"}
    assert code not in json.dumps(pub.events) and code not in svc.log()
    wrong = "00000000" if code != "00000000" else "11111111"
    st, body, _ = confirm(svc, "c1", "email", wrong)
    assert st == 403 and body["error"] == "wrong_code" and body["attempts_left"] == 2, body
    assert confirm(svc, "c1", "sms", code)[1]["error"] == "no_pending_change"
    assert confirm(svc, "c1", "email", code, tok=token("player", "other"))[0] == 403
    assert confirm(svc, "c1", "post", code)[0] == 400
    st, body, _ = confirm(svc, "c1", "email", code)
    assert st == 200 and body["contacts"]["email"] == "c1@example.com", (st, body)
    assert confirm(svc, "c1", "email", code)[1]["error"] == "no_pending_change"  # used up
    # a second change: the address in effect is told, with the new one masked
    assert put_contacts(svc, "c1", {"email": "new@evil.example"})[0] == 202
    told = pub.wait("c1", "contact_changed")[0]
    assert told["contacts"] == {"email": "c1@example.com"} and "email" in told["channels"]
    assert told["params"]["new_contact"] == "n***@evil.example", told
    assert contacts_now(svc, "c1")["email"] == "c1@example.com"
    # wrong codes run out: the change is void until asked again
    for _ in range(3):
        confirm(svc, "c1", "email", wrong)
    code2 = pub.contact_code("c1", "email", 2)
    assert confirm(svc, "c1", "email", code2)[1]["error"] == "attempts_exhausted"
    # an expired code
    assert put_contacts(svc, "c1", {"phone": "+821055554444"})[0] == 202
    pg.cluster().psql(dbname(url), "UPDATE guard.pending_contacts "
                                   "SET expires_at = now() - interval '1 s' WHERE channel = 'sms'")
    assert confirm(svc, "c1", "sms", pub.contact_code("c1", "sms"))[0] == 410
    # every step is in the audit trail support sees
    st, body, _ = harness.http("GET", f"{svc.url}/v1/support/audit?account_id=c1",
                               headers=auth(token("staff", "sam")))
    actions = [e["action"] for e in body["entries"] if e["actor"] == "player"]
    assert actions == ["contact_change_requested", "contact_change_requested",
                       "contact_confirmed", "contact_change_requested"], actions
    # bad input changes nothing
    for bad in ({"email": "no-at-sign"}, {"email": 5}, {"phone": "12ab"}, {"phone": "+"}):
        assert put_contacts(svc, "c1", bad)[0] == 400


def lock_account(svc, account, **policy):
    set_policy(svc, account, "lock", **policy)
    st, ev, _ = deliver(svc, login(account, "US"))
    assert st == 200 and ev["action"] == "lock", (st, ev)
    return ev


def test_locked_account_contacts_and_weaker_policy_refused_423():
    svc = start(pg.fresh_db())
    set_contacts(svc, "h1", {"email": "h1@example.com"})
    jp = {"country": "JP", "until": "2030-01-01T00:00:00Z"}
    lock_account(svc, "h1", channels=["email", "ingame"], allowed=[jp])
    before = contacts_now(svc, "h1")
    st, body, _ = put_contacts(svc, "h1", {"email": "attacker@evil.example"})
    assert st == 423 and body["error"] == "locked", (st, body)
    assert put_contacts(svc, "h1", {"email": None})[0] == 423
    weaker = [
        {"action": "none", "channels": ["email", "ingame"], "allowed_countries": [jp]},
        {"action": "block_abroad", "channels": ["email", "ingame"], "allowed_countries": [jp]},
        {"action": "lock", "channels": ["ingame"], "allowed_countries": [jp]},
        {"action": "lock", "channels": ["email", "ingame"], "allowed_countries": [jp, "US"]},
        {"action": "lock", "channels": ["email", "ingame"],
         "allowed_countries": [{"country": "JP", "until": "2099-01-01T00:00:00Z"}]},
        {"action": "lock", "channels": ["email", "ingame"], "allowed_countries": ["JP"]},
    ]
    for body in weaker:
        st, out, _ = harness.http("PUT", f"{svc.url}/v1/accounts/h1/policy", body,
                                  headers=auth(token("player", "h1")))
        assert st == 423 and out["error"] == "locked", (body, st, out)
    assert contacts_now(svc, "h1") == before
    # stricter is fine: fewer allowed countries, more channels
    st, out, _ = harness.http("PUT", f"{svc.url}/v1/accounts/h1/policy",
                              {"action": "lock", "channels": ["email", "ingame"]},
                              headers=auth(token("player", "h1")))
    assert st == 200 and out["allowed_countries"] == [], (st, out)
    # a change asked for before the lock cannot be confirmed while locked
    svc2 = start(pg.fresh_db())
    assert put_contacts(svc2, "h2", {"email": "h2@example.com"})[0] == 202
    code = svc2.publisher.contact_code("h2", "email")
    lock_account(svc2, "h2")
    st, body, _ = confirm(svc2, "h2", "email", code)
    assert st == 423 and contacts_now(svc2, "h2")["email"] is None, (st, body)


def test_policy_that_must_reach_the_player_needs_a_verified_channel_422():
    svc = start(pg.fresh_db())
    tok = auth(token("player", "v1"))
    for action, channels, missing in (("lock", ["email"], ["email"]),
                                      ("notify", ["email", "sms"], ["email", "sms"]),
                                      ("lock", [], ["ingame"])):
        st, body, _ = harness.http("PUT", f"{svc.url}/v1/accounts/v1/policy",
                                   {"action": action, "channels": channels}, headers=tok)
        assert st == 422 and body["error"] == "channel_unverified", (st, body)
        assert body["missing"] == missing and missing[0] in body["message"], body
    # an email asked for but not confirmed does not count
    assert put_contacts(svc, "v1", {"email": "v1@example.com"})[0] == 202
    st, body, _ = harness.http("PUT", f"{svc.url}/v1/accounts/v1/policy",
                               {"action": "lock", "channels": ["email"]}, headers=tok)
    assert st == 422, (st, body)
    assert confirm(svc, "v1", "email", svc.publisher.contact_code("v1", "email"))[0] == 200
    assert set_policy(svc, "v1", "lock", channels=["email"])["channels"] == ["email"]
    # kick needs no channel; removing the only channel of a lock policy is refused
    assert set_policy(svc, "v2", "kick", channels=[])["action"] == "kick"
    st, body, _ = put_contacts(svc, "v1", {"email": None})
    assert st == 422 and body["missing"] == ["email"], (st, body)
    # each change is told to the player and audited
    assert svc.publisher.wait("v1", "settings_changed", 2)


def test_messages_wait_for_the_publisher():
    svc = start(pg.fresh_db())
    svc.publisher.fail = 3
    assert put_contacts(svc, "w1", {"email": "w1@example.com"})[0] == 202
    code = svc.publisher.contact_code("w1", "email")  # published once the publisher is back
    assert confirm(svc, "w1", "email", code)[0] == 200
    # one warning for the failing streak, one line when it is over
    assert svc.log().count("messages wait and are retried") == 1, svc.log()
    assert "publishing messages again" in svc.log()
    # messages to the player, and the account's events for its timeline in history
    assert all(e["auth"] == "Bearer dev-only-guard-producer-token" and
               e["path"] in ("/v1/topics/notification/events", "/v1/topics/account.event/events")
               for e in svc.publisher.events)
    ids = [e["ce_id"] for e in svc.publisher.events]
    assert len(ids) == len(set(ids))
    assert all(e["event"]["dedupe_key"] == e["ce_id"] for e in svc.publisher.events
               if e["path"] == "/v1/topics/notification/events")
