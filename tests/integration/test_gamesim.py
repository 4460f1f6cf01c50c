"""gamesim: the game server stub records kicks (from account.action deliveries), in-game
messages and SMS, and serves them at GET /v1/received."""
import json
import uuid

import harness
from tokens import BUS


GS_AUTH = {"Authorization": "Bearer dev-only-gamesim-admin-token"}  # the development token


def kick(gs, action, ce_id=None, secret=BUS):
    body = json.dumps({"account_id": "g1", "action": action, "login_id": "l1", "country": "US",
                       "ip": "1.2.3.4", "ts": "2026-11-25T06:00:00Z", "session_id": "s9",
                       "sealed_code": "v1.dev." + "A" * 48}).encode()
    headers = harness.delivery_headers(secret, body, ce_id or str(uuid.uuid4()))
    return harness.http("POST", f"{gs.url}/v1/kick", raw=body, headers=headers)[0]


def test_records_kicks_messages_sms():
    gs = harness.ctx().start("gamesim", config={"keep": 3}, env={"BUS_SIGNING_SECRET": BUS})
    assert kick(gs, "notify") == 204
    ce = str(uuid.uuid4())
    for action in ["kick", "block_abroad", "lock"]:
        assert kick(gs, action, ce_id=ce if action == "kick" else None) == 200
    assert kick(gs, "kick", ce_id=ce) == 200  # redelivery: not a second kick
    assert kick(gs, "kick", secret=None) == 401
    assert harness.http("POST", f"{gs.url}/v1/messages", {"account_id": "g1", "text": "hi"})[0] \
        == 200
    assert harness.http("POST", f"{gs.url}/v1/sms", {"to": "+8210", "text": "yo"})[0] == 200
    assert harness.http("POST", f"{gs.url}/v1/sms", {"text": "no to"})[0] == 422
    st, body, _ = harness.http("GET", f"{gs.url}/v1/received", headers=GS_AUTH)
    assert st == 200
    assert [k["action"] for k in body["kicks"]] == ["kick", "block_abroad", "lock"]
    assert all("sealed_code" not in k for k in body["kicks"])
    assert body["messages"][0]["text"] == "hi" and body["sms"][0]["to"] == "+8210"
    for _ in range(4):  # bounded: the newest `keep` entries remain
        harness.http("POST", f"{gs.url}/v1/messages", {"account_id": "g1", "text": "x"})
    assert len(harness.http("GET", f"{gs.url}/v1/received",
                            headers=GS_AUTH)[1]["messages"]) == 3
    assert harness.http("POST", f"{gs.url}/v1/fail", {"count": 1},
                        headers=GS_AUTH)[0] == 204
    assert harness.http("POST", f"{gs.url}/v1/messages", {"account_id": "g1", "text": "x"})[0] \
        == 503
    assert harness.http("DELETE", f"{gs.url}/v1/received", headers=GS_AUTH)[0] == 204
    assert harness.http("GET", f"{gs.url}/v1/received", headers=GS_AUTH)[1]["kicks"] == []


def test_loginsim_posts_at_rate_and_backs_off():
    """loginsim against a recording publisher that first answers 503 + Retry-After."""
    import threading
    got, lock = [], threading.Lock()
    state = {"refuse": 1}

    def publisher(method, path, headers, body):
        with lock:
            if state["refuse"] > 0:
                state["refuse"] -= 1
                return 503, {"error": "overloaded"}, {"Retry-After": "1"}
            got.append((path, headers.get("authorization"), json.loads(body)))
        return 202, {"id": str(uuid.uuid4())}, {}

    url, _ = harness.ctx().serve(publisher)
    p = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": url + "/v1/topics/login/events", "rate": 200, "count": 40,
        "accounts": 5, "abroad_share": 0.5, "threads": 2, "status_url": "", "game_url": ""})
    harness.wait_for(lambda: p.popen.poll() is not None, timeout=30, what="loginsim exit")
    assert p.popen.returncode == 0, p.log()
    assert len(got) == 40
    assert all(a == "Bearer dev-login-token" and path == "/v1/topics/login/events"
               for path, a, _ in got)
    accounts = {e["account_id"] for _, _, e in got}
    assert accounts <= {f"user-{i:05d}" for i in range(1, 6)}
    countries = [e["client"]["sim_country"] for _, _, e in got]
    assert "KR" in countries and any(c != "KR" for c in countries)
    assert '"retried": 1' in p.log() or '"retried": 2' in p.log()


def test_loginsim_batches_gather_logins_under_one_id():
    """batch > 1: the logins go to /batch in arrays of at most `batch`, each request with its
    own ce-id, and ids_file names event i of a batch "<ce-id>-<i>" (the publisher's ids)."""
    import threading
    got, lock = [], threading.Lock()

    def publisher(method, path, headers, body):
        with lock:
            got.append((path, headers.get("ce-id"), json.loads(body)))
        return 202, {"accepted": len(json.loads(body))}, {}

    url, _ = harness.ctx().serve(publisher)
    ids = harness.ctx().path("ids.txt")
    p = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": url + "/v1/topics/login/events", "rate": 500, "count": 30,
        "batch": 7, "threads": 2, "ids_file": ids, "status_url": "",
        "game_url": ""})
    harness.wait_for(lambda: p.popen.poll() is not None, timeout=30, what="loginsim exit")
    assert p.popen.returncode == 0, p.log()
    assert all(path == "/v1/topics/login/batch" for path, _, _ in got)
    assert sorted(len(b) for _, _, b in got) == [2, 7, 7, 7, 7]
    assert all(isinstance(e, dict) and "account_id" in e for _, _, b in got for e in b)
    want = {f"{cid}-{i}" for _, cid, b in got for i in range(len(b))}
    lines = [line.split("\t")[0] for line in open(ids).read().splitlines()]
    assert len(lines) == 30 and set(lines) == want
    assert '"accepted": 30' in p.log()

    bad = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": url + "/v1/topics/login", "rate": 10, "count": 1, "batch": 5,
        "game_url": ""})
    harness.wait_for(lambda: bad.popen.poll() is not None, timeout=10, what="loginsim exit")
    assert bad.popen.returncode == 2 and "ending in /events" in bad.log()


def test_recordings_need_the_admin_token():
    """The recordings hold what players were sent (unlock codes): only the admin token reads,
    empties them or switches failures on."""
    gs = harness.ctx().start("gamesim", config={"admin_token": "a-test-admin-token"},
                             env={"BUS_SIGNING_SECRET": BUS})
    good = {"Authorization": "Bearer a-test-admin-token"}
    for headers in ({}, GS_AUTH, {"Authorization": "Bearer a-test-admin-tokem"},
                    {"Authorization": "Basic a-test-admin-token"}):
        st, body, _ = harness.http("GET", f"{gs.url}/v1/received", headers=headers)
        assert st == 401 and body["error"] == "unauthorized", (headers, st, body)
        assert harness.http("DELETE", f"{gs.url}/v1/received", headers=headers)[0] == 401
        assert harness.http("POST", f"{gs.url}/v1/fail", {"count": 5}, headers=headers)[0] == 401
    assert kick(gs, "kick") == 200  # no failure was switched on
    st, body, _ = harness.http("GET", f"{gs.url}/v1/received", headers=good)
    assert st == 200 and len(body["kicks"]) == 1, body


def kick_session(gs, account, action, session_id=None, lang=None, country="US"):
    ev = {"account_id": account, "action": action, "login_id": str(uuid.uuid4()),
          "country": country, "ip": "8.8.8.8", "ts": "2026-11-25T06:00:00Z"}
    if session_id:
        ev["session_id"] = session_id
    if lang:
        ev["lang"] = lang
    body = json.dumps(ev).encode()
    headers = harness.delivery_headers(BUS, body, str(uuid.uuid4()))
    return harness.http("POST", f"{gs.url}/v1/kick", raw=body, headers=headers)


def sessions_of(gs, account):
    st, body, _ = harness.http("GET", f"{gs.url}/v1/sessions?account_id={account}",
                               headers=GS_AUTH)
    assert st == 200, (st, body)
    return {s["session_id"]: s for s in body["sessions"]}


def test_a_kick_ends_the_live_session_and_says_why():
    """Sessions opened by a login server: in-game messages reach the live ones, a kick ends the
    session it names, a lock every session of the account, each with the sentence the player
    sees; other accounts' sessions stay."""
    gs = harness.ctx().start("gamesim", env={"BUS_SIGNING_SECRET": BUS})
    url = f"{gs.url}/v1/sessions"
    opened = [{"session_id": "s1", "account_id": "p1", "server": "login-1"},
              {"session_id": "s2", "account_id": "p1"},
              {"session_id": "s3", "account_id": "p2"}]
    assert harness.http("POST", url, opened)[0] == 401  # opening sessions takes the token
    st, body, _ = harness.http("POST", url, opened, headers=GS_AUTH)
    assert st == 201 and [s["session_id"] for s in body["sessions"]] == ["s1", "s2", "s3"], body
    assert all(s["ended_at"] is None and s["started_at"].endswith("Z") for s in body["sessions"])
    for bad in ([{"session_id": "s4"}], {"account_id": "p1"}, [], [{"session_id": "",
                                                                    "account_id": "p1"}]):
        st, body, _ = harness.http("POST", url, bad, headers=GS_AUTH)
        assert st == 422 and body["error"] == "invalid_session", (bad, st, body)
    assert harness.http("POST", url, raw=b"{no", headers=GS_AUTH)[0] == 400
    assert set(sessions_of(gs, "p1")) == {"s1", "s2"}  # the bad batch opened nothing
    assert harness.http("GET", url + "?account_id=p1")[0] == 401

    st, body, _ = harness.http("POST", f"{gs.url}/v1/messages",
                               {"account_id": "p1", "text": "hello"})
    assert st == 200 and sorted(body["sessions"]) == ["s1", "s2"], body

    st, body, _ = kick_session(gs, "p1", "kick", session_id="s1")
    assert st == 200 and body["ended_sessions"] == ["s1"], body
    p1 = sessions_of(gs, "p1")
    assert p1["s1"]["end_reason"] == "kick" and p1["s1"]["ended_at"] is not None
    assert "US" in p1["s1"]["end_message"] and "연결이 끊어졌습니다" in p1["s1"]["end_message"]
    assert [m["text"] for m in p1["s1"]["messages"]] == ["hello"]
    assert p1["s2"]["ended_at"] is None  # a kick ends the session of that login only

    st, body, _ = kick_session(gs, "p1", "lock", session_id="s-other", lang="en")
    assert st == 200 and body["ended_sessions"] == ["s2"], body  # a lock ends all of them
    s2 = sessions_of(gs, "p1")["s2"]
    assert s2["end_reason"] == "lock" and "Your account was locked" in s2["end_message"], s2
    assert sessions_of(gs, "p1")["s1"]["end_reason"] == "kick"  # an ended session stays ended

    st, body, _ = harness.http("POST", f"{gs.url}/v1/messages",
                               {"account_id": "p1", "text": "anyone?"})
    assert st == 200 and body["sessions"] == [], body  # nobody is in the game any more
    assert sessions_of(gs, "p2")["s3"]["ended_at"] is None

    # A kick that overtakes the session's open: the session ends as soon as it opens.
    st, body, _ = kick_session(gs, "p3", "block_abroad", session_id="s5", country="JP")
    assert st == 200 and body["ended_sessions"] == [], body
    st, body, _ = harness.http("POST", url, {"session_id": "s5", "account_id": "p3"},
                               headers=GS_AUTH)
    assert st == 201 and body["sessions"][0]["end_reason"] == "block_abroad", body
    assert "JP" in body["sessions"][0]["end_message"]
    # Opening again (a retried open) changes nothing; the recording names the ended sessions.
    st, body, _ = harness.http("POST", url, {"session_id": "s1", "account_id": "p1"},
                               headers=GS_AUTH)
    assert st == 201 and body["sessions"][0]["end_reason"] == "kick", body
    kicks = harness.http("GET", f"{gs.url}/v1/received", headers=GS_AUTH)[1]["kicks"]
    assert [k["ended_sessions"] for k in kicks] == [["s1"], ["s2"], []], kicks
    assert all(k["received_at"].endswith("Z") for k in kicks)  # when it reached the game
    # The game client's language, given at the open, is the message's when the event has none.
    st, body, _ = harness.http("POST", url, [{"session_id": "e1", "account_id": "p4", "lang": "en"},
                                             {"session_id": "k1", "account_id": "p4"}],
                               headers=GS_AUTH)
    assert st == 201 and body["sessions"][0]["lang"] == "en", body
    assert kick_session(gs, "p4", "lock")[1]["ended_sessions"] == ["e1", "k1"]
    p4 = sessions_of(gs, "p4")
    assert p4["e1"]["end_message"].startswith("Your account was locked"), p4
    assert "잠겼습니다" in p4["k1"]["end_message"], p4
    st, body, _ = harness.http("POST", url, {"session_id": "x", "account_id": "p4", "lang": "fr"},
                               headers=GS_AUTH)
    assert st == 422 and "lang" in body["message"], body
    assert harness.http("DELETE", f"{gs.url}/v1/received", headers=GS_AUTH)[0] == 204
    assert sessions_of(gs, "p1") == {}


def test_sessions_are_bounded_by_keep():
    gs = harness.ctx().start("gamesim", config={"keep": 3}, env={"BUS_SIGNING_SECRET": BUS})
    for i in range(5):
        assert harness.http("POST", f"{gs.url}/v1/sessions",
                            {"session_id": f"b{i}", "account_id": "p9"}, headers=GS_AUTH)[0] == 201
    assert sorted(sessions_of(gs, "p9")) == ["b2", "b3", "b4"]
    # two accounts interleaved: the oldest goes whichever account it belongs to
    assert harness.http("POST", f"{gs.url}/v1/sessions",
                        {"session_id": "c0", "account_id": "q1"}, headers=GS_AUTH)[0] == 201
    assert sorted(sessions_of(gs, "p9")) == ["b3", "b4"]
    assert sorted(sessions_of(gs, "q1")) == ["c0"]
    for i in (5, 6, 7):
        assert harness.http("POST", f"{gs.url}/v1/sessions",
                            {"session_id": f"b{i}", "account_id": "p9"}, headers=GS_AUTH)[0] == 201
    assert sorted(sessions_of(gs, "q1")) == []
    assert sorted(sessions_of(gs, "p9")) == ["b5", "b6", "b7"]


def test_loginsim_opens_the_session_of_each_admitted_login():
    """loginsim as a login server: asks guard (here a stand-in that refuses one account), opens
    the admitted logins' sessions on gamesim before publishing them, and publishes only those;
    demo_accounts log in from abroad at the share asked."""
    import threading
    got, lock = [], threading.Lock()

    def service(method, path, headers, body):
        if "/status" in path:
            refused = "/v1/accounts/demo-locked/" in path
            return 200, {"admit": not refused, "locked": refused,
                         "reason": "locked" if refused else None}, {}
        with lock:
            got.append(json.loads(body))
        return 202, {"id": str(uuid.uuid4())}, {}

    url, _ = harness.ctx().serve(service)
    gs = harness.ctx().start("gamesim", env={"BUS_SIGNING_SECRET": BUS})
    p = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": url + "/v1/topics/login/events", "status_url": url, "rate": 200,
        "count": 60, "accounts": 3, "threads": 2, "game_url": gs.url,
        "demo_accounts": "demo-kick:en, demo-locked", "demo_share": 0.5, "demo_abroad_share": 1})
    harness.wait_for(lambda: p.popen.poll() is not None, timeout=30, what="loginsim exit")
    assert p.popen.returncode == 0, p.log()
    summary = json.loads([line for line in p.log().splitlines()
                          if line.startswith('{"accepted"')][0])
    assert summary["accepted"] + summary["refused"] == 60 and summary["refused"] > 0, summary
    assert summary["sessions"] == summary["accepted"] and summary["sessions_failed"] == 0
    assert "refused by guard: locked" in p.log()
    st, body, _ = harness.http("GET", f"{gs.url}/v1/sessions", headers=GS_AUTH)
    sessions = {s["session_id"]: s["account_id"] for s in body["sessions"]}
    assert {e["session_id"]: e["account_id"] for e in got} == sessions  # one per published login
    assert "demo-locked" not in sessions.values()
    demo = [e for e in got if e["account_id"] == "demo-kick"]
    assert demo and all(e["client"]["sim_country"] != "KR" for e in demo), demo
    langs = {s["account_id"]: s.get("lang") for s in body["sessions"]}
    assert langs["demo-kick"] == "en" and langs.get("user-00001", None) is None, langs
    bad = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": url + "/v1/topics/login/events", "rate": 10, "count": 1,
        "game_url": "", "demo_accounts": "demo-kick:fr"})
    harness.wait_for(lambda: bad.popen.poll() is not None, timeout=10, what="loginsim exit")
    assert bad.popen.returncode == 2 and "ko or en" in bad.log(), bad.log()
