"""guard: "was it you?" in every alert (a sealed one-time link, GET/POST /v1/answers/{token}) and
the player's language and zone on every message (docs/services/guard.md "Answers", "Language").

guard runs alone on a fresh database of the run's PostgreSQL cluster; its outbox relays to a
recording publisher (guard_api.Publisher), which stands in for the bus."""
import datetime
import json
import re
import uuid

import jsonschema

import guard_api
import harness
import pg
import sealed
from tokens import AUTH, BUS, auth, token

SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/account.action.json"))
PAGE = "https://play.example/account/"


def start(db_url, **cfg):
    pub = guard_api.Publisher()
    config = {"database_url": db_url, "home_countries": "KR", "publisher_url": pub.url,
              "answers.page_url": PAGE}
    config.update(cfg)
    svc = harness.ctx().start("guard", config=config,
                              env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                                   "GUARD_DATABASE_URL": db_url},
                              ready_path="/readyz")
    svc.publisher = pub
    return svc


def login(account, country="US", ts="2026-12-07T13:49:00Z"):
    return {"account_id": account, "ip": "11.2.3.4", "country": country, "ts": ts,
            "session_id": "s-1", "server": "kr-1", "login_id": str(uuid.uuid4())}


def deliver(svc, event):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(BUS, body, str(uuid.uuid4()), "login.checked",
                                       {"ce-source": "ipcheck"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.checked", raw=body,
                        headers=headers)


def put_policy(svc, account, body):
    return harness.http("PUT", f"{svc.url}/v1/accounts/{account}/policy", body,
                        headers=auth(token("player", account)))


def set_policy(svc, account, action, **extra):
    st, body, _ = put_policy(svc, account, dict({"action": action, "channels": ["ingame"]},
                                                **extra))
    assert st == 200, (st, body)
    return body


def alert(svc, account, country="US", **kw):
    st, body, _ = deliver(svc, login(account, country, **kw))
    assert st == 200, (st, body)
    jsonschema.validate(body, SCHEMA)
    return body


def get_answer(svc, tok):
    return harness.http("GET", f"{svc.url}/v1/answers/{tok}")


def post_answer(svc, tok, body):
    return harness.http("POST", f"{svc.url}/v1/answers/{tok}", body)


def status(svc, account):
    st, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/{account}/status",
                               headers=auth(token("staff", "st-sam")))
    assert st == 200, (st, body)
    return body


def dbname(url):
    return url.rsplit("/", 1)[1]


def test_every_alert_carries_a_sealed_link_the_language_and_the_local_time():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "ko1", "notify")  # no lang: default_lang ko, its zone Asia/Seoul
    set_policy(svc, "en1", "kick", lang="en", tz="America/New_York")
    ev = alert(svc, "ko1")
    assert ev["lang"] == "ko" and ev["tz"] == "Asia/Seoul"
    assert ev["local_time"] == "2026-12-07 22:49 (UTC+09:00)"
    link = sealed.answer_link(ev)
    assert re.fullmatch(re.escape(PAGE) + r"#answer=[0-9a-f]{64}", link), link
    assert sealed.answer_token(ev) not in json.dumps(ev)  # only sealed
    en = alert(svc, "en1")
    assert en["lang"] == "en" and en["tz"] == "America/New_York"
    assert en["local_time"] == "2026-12-07 08:49 (UTC-05:00)"
    # a redelivery answers the stored decision: the same link, not a second one
    ev2 = login("ko1")
    st1, b1, _ = deliver(svc, ev2)
    st2, b2, _ = deliver(svc, ev2)
    assert st1 == st2 == 200 and b1["sealed_answer"] == b2["sealed_answer"]
    n = pg.cluster().psql(dbname(url), "SELECT count(*) FROM guard.answers "
                          "WHERE account_id = 'ko1'")[0][0]
    assert n == "2", n
    # only the token's hash is kept
    hashes = pg.cluster().psql(dbname(url), "SELECT token_hash FROM guard.answers")
    assert sealed.answer_token(ev) not in json.dumps(hashes)


def test_language_and_zone_in_the_policy():
    svc = start(pg.fresh_db())
    body = set_policy(svc, "p1", "notify", lang="en")
    assert body["lang"] == "en" and body["tz"] is None
    body = set_policy(svc, "p1", "notify", tz="Europe/Berlin")  # lang kept when absent
    assert body["lang"] == "en" and body["tz"] == "Europe/Berlin"
    body = set_policy(svc, "p1", "notify", tz=None)
    assert body["tz"] is None
    for bad in ({"lang": "fr"}, {"lang": 3}, {"tz": "Mars/Olympus"}, {"tz": "a b"}, {"tz": ""}):
        st, err, _ = put_policy(svc, "p1", dict({"action": "notify"}, **bad))
        assert st == 400 and err["error"] == "bad_request", (bad, st, err)
    st, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/p1/policy",
                               headers=auth(token("player", "p1")))
    assert st == 200 and body["lang"] == "en"
    # guard's own notices carry the player's language
    ev = svc.publisher.wait("p1", "settings_changed", 3)[-1]
    assert ev["lang"] == "en"


def test_get_says_what_is_asked_and_nothing_secret():
    svc = start(pg.fresh_db())
    set_policy(svc, "g1", "notify", lang="en")
    ev = alert(svc, "g1", "JP")
    tok = sealed.answer_token(ev)
    st, body, _ = get_answer(svc, tok)
    assert st == 200, (st, body)
    assert body["account_id"] == "g1" and body["action"] == "notify" and body["lang"] == "en"
    assert body["login"]["country"] == "JP" and body["login"]["ip"] == "11.2.3.4"
    assert body["login"]["server"] == "kr-1" and body["login"]["ts"] == "2026-12-07T13:49:00Z"
    assert body["choices"]["secure"] == ["lock", "end_sessions"]
    assert tok not in json.dumps(body) and "hash" not in json.dumps(body)
    assert get_answer(svc, "0" * 64)[0] == 404
    st, err, _ = get_answer(svc, "not-a-token")
    assert st == 404 and err["error"] == "unknown_link"


def test_not_me_locks_ends_sessions_once_and_support_sees_it():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "n1", "notify")
    ev = alert(svc, "n1")
    tok = sealed.answer_token(ev)
    for bad in ({"answer": "maybe"}, {"answer": "not_me", "secure": "explode"}, {}):
        st, err, _ = post_answer(svc, tok, bad)
        assert st == 400 and err["error"] == "bad_request", (bad, st, err)
    st, body, _ = post_answer(svc, tok, {"answer": "not_me", "secure": "lock"})
    assert st == 200, (st, body)
    assert body["locked"] is True and body["secured"] == "lock" and body["sessions_ended"]
    assert status(svc, "n1")["locked"] is True
    # the lock reaches gamesim (every session ended) and notify (a new unlock code) as an
    # account.action event guard publishes itself
    act = harness.wait_for(lambda: svc.publisher.actions("n1"), 15, what="not_me action")[0]
    jsonschema.validate(act, SCHEMA)
    assert act["action"] == "lock" and act["answer"] == "not_me" and act["reasons"] == ["not_me"]
    assert act["login_id"] == ev["login_id"] and "session_id" not in act
    code = sealed.unlock_code(act)
    # once only: the link is used
    st, err, _ = post_answer(svc, tok, {"answer": "me"})
    assert st == 410 and err["error"] == "answered", (st, err)
    assert get_answer(svc, tok)[0] == 410
    # support sees the answer, in the audit trail and with the account's alerts
    staff = auth(token("staff", "st-sam"))
    st, body, _ = harness.http("GET", f"{svc.url}/v1/support/accounts/n1/answers", headers=staff)
    assert st == 200 and body["answers"][0]["answer"] == "not_me", body
    assert body["answers"][0]["secured"] == "lock" and body["answers"][0]["country"] == "US"
    assert harness.http("GET", f"{svc.url}/v1/support/accounts/n1/answers",
                        headers=auth(token("player", "n1")))[0] == 403
    st, audit, _ = harness.http("GET", f"{svc.url}/v1/support/audit?account_id=n1",
                                headers=staff)
    assert st == 200 and "answer_not_me" in json.dumps(audit), audit
    # the code the player was sent unlocks
    st, body, _ = harness.http("POST", f"{svc.url}/v1/accounts/n1/unlock", {"code": code},
                               headers=auth(token("player", "n1")))
    assert st == 200, (st, body)


def test_not_me_end_sessions_kicks_without_locking():
    svc = start(pg.fresh_db())
    set_policy(svc, "k1", "notify", lang="en")
    tok = sealed.answer_token(alert(svc, "k1"))
    st, body, _ = post_answer(svc, tok, {"answer": "not_me", "secure": "end_sessions"})
    assert st == 200 and body["locked"] is False, (st, body)
    act = harness.wait_for(lambda: svc.publisher.actions("k1"), 15, what="kick action")[0]
    assert act["action"] == "kick" and act["answer"] == "not_me" and "session_id" not in act
    assert act["lang"] == "en" and "sealed_code" not in act
    assert status(svc, "k1")["locked"] is False


def test_it_was_me_allows_the_country_until_it_expires():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "m1", "kick", lang="en")
    tok = sealed.answer_token(alert(svc, "m1"))
    st, err, _ = post_answer(svc, tok, {"answer": "me", "allow_days": 31})  # max 30
    assert st == 400 and err["allow_days_max"] == 30, (st, err)
    st, body, _ = post_answer(svc, tok, {"answer": "me", "allow_days": 2})
    assert st == 200 and body["allowed_days"] == 2 and body["country"] == "US", (st, body)
    allowed = status(svc, "m1")["allowed_countries"]
    assert [a["country"] for a in allowed] == ["US"] and allowed[0]["until"], allowed
    until = datetime.datetime.strptime(allowed[0]["until"], "%Y-%m-%dT%H:%M:%SZ")
    left = until - datetime.datetime.utcnow()
    assert datetime.timedelta(days=1, hours=23) < left <= datetime.timedelta(days=2), left
    assert deliver(svc, login("m1"))[0] == 204  # allowed now
    # the player is told, in their language
    ev = svc.publisher.wait("m1", "settings_changed", 2)[-1]
    assert ev["lang"] == "en" and "US allowed for 2 days" in ev["params"]["change"], ev
    # once the allowance has passed, the policy applies again
    pg.cluster().psql(dbname(url), "UPDATE guard.allowed SET until = now() - interval '1 s'")
    st, body, _ = deliver(svc, login("m1"))
    assert st == 200 and body["action"] == "kick", (st, body)
    assert post_answer(svc, tok, {"answer": "not_me"})[0] == 410


def test_expired_link_is_gone_and_a_locked_account_allows_nothing():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "x1", "notify")
    tok = sealed.answer_token(alert(svc, "x1"))
    pg.cluster().psql(dbname(url), "UPDATE guard.answers SET expires_at = now() - interval '1 s'")
    st, err, _ = get_answer(svc, tok)
    assert st == 410 and err["error"] == "link_expired", (st, err)
    assert post_answer(svc, tok, {"answer": "not_me"})[0] == 410
    assert status(svc, "x1")["locked"] is False
    set_policy(svc, "l1", "lock")
    tok = sealed.answer_token(alert(svc, "l1"))
    st, err, _ = post_answer(svc, tok, {"answer": "me", "allow_days": 3})
    assert st == 423 and err["error"] == "locked", (st, err)
    st, body, _ = post_answer(svc, tok, {"answer": "me"})  # recorded, nothing allowed
    assert st == 200 and body["allowed_days"] == 0 and body["locked"] is True, (st, body)
    assert status(svc, "l1")["allowed_countries"] == []
