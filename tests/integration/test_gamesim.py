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
        "accounts": 5, "abroad_share": 0.5, "threads": 2, "status_url": ""})
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
        "batch": 7, "threads": 2, "ids_file": ids, "status_url": ""})
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
        "publisher_url": url + "/v1/topics/login", "rate": 10, "count": 1, "batch": 5})
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
