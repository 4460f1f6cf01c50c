"""guard: the support console's endpoints (find accounts, account details, lock history), CORS for
the pages, and the console's static files and config.json.

Deliveries are POSTed as the dispatcher would (harness.delivery_headers); each test gets a fresh
database in the run's private PostgreSQL cluster (tests/lib/pg.py)."""
import datetime
import json
import uuid

import guard_api
import harness
import jsonschema
import pg
import sealed
from tokens import AUTH, BUS, auth, token

PAGE_ORIGIN = "http://127.0.0.1:18102"  # a page origin allowed by the tests' guard


def start(db_url, **cfg):
    pub = guard_api.Publisher()
    config = {"database_url": db_url, "home_countries": "KR", "code_attempts": 3,
              "http": {"cors_origins": PAGE_ORIGIN + ",http://localhost:18102"},
              "web": {"history_url": PAGE_ORIGIN}, "publisher_url": pub.url}
    config.update(cfg)
    svc = harness.ctx().start("guard", config=config,
                              env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                                   "GUARD_DATABASE_URL": db_url},
                              ready_path="/readyz")
    svc.publisher = pub
    return svc


def deliver(svc, account, country, ip="11.2.3.4"):
    event = {"account_id": account, "ip": ip, "country": country,
             "ts": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "session_id": "s-1", "server": "kr-1", "login_id": str(uuid.uuid4())}
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(BUS, body, str(uuid.uuid4()), "login.checked",
                                       {"ce-source": "ipcheck"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.checked", raw=body,
                        headers=headers)


def set_policy(svc, account, action):
    st, body, _ = harness.http("PUT", f"{svc.url}/v1/accounts/{account}/policy",
                               {"action": action, "channels": ["ingame"]},
                               headers=auth(token("player", account)))
    assert st == 200, (st, body)


def get(svc, path, tok):
    return harness.http("GET", svc.url + path, headers=auth(tok) if tok else {})


def test_find_accounts_by_prefix_and_locked():
    svc = start(pg.fresh_db())
    for a in ["team-a", "team-b", "team-c", "other"]:
        set_policy(svc, a, "lock")
    assert deliver(svc, "team-b", "US")[0] == 200
    staff = token("staff", "alice")
    st, body, _ = get(svc, "/v1/support/accounts?prefix=team-", staff)
    assert st == 200, body
    assert [a["account_id"] for a in body["accounts"]] == ["team-a", "team-b", "team-c"]
    assert [a["locked"] for a in body["accounts"]] == [False, True, False]
    assert body["accounts"][0]["policy"] == "lock" and body["accounts"][0]["updated_at"]
    st, body, _ = get(svc, "/v1/support/accounts?prefix=team-&limit=2", staff)
    assert st == 200 and len(body["accounts"]) == 2
    st, body, _ = get(svc, "/v1/support/accounts?locked=true", staff)
    assert [a["account_id"] for a in body["accounts"]] == ["team-b"]
    # LIKE wildcards are plain characters in a prefix
    assert get(svc, "/v1/support/accounts?prefix=%25", staff)[1]["accounts"] == []
    assert get(svc, "/v1/support/accounts?prefix=_", staff)[1]["accounts"] == []
    for bad in ["limit=0", "limit=101", "limit=x", "locked=maybe", "prefix=" + "x" * 200]:
        st, body, _ = get(svc, "/v1/support/accounts?" + bad, staff)
        assert st == 400 and body["error"] in ("bad_request",), (bad, st, body)
    assert get(svc, "/v1/support/accounts", token("player", "team-a"))[0] == 403
    assert get(svc, "/v1/support/accounts", None)[0] == 401


def test_account_details_show_pending_code_never_the_code():
    svc = start(pg.fresh_db())
    staff = token("staff", "alice")
    st, body, _ = get(svc, "/v1/support/accounts/nobody", staff)
    assert st == 200, body
    assert body["known"] is False and body["locked"] is False and body["policy"] == "none"
    assert body["pending_code"] is None and body["updated_at"] is None
    assert body["home_countries"] == ["KR"]

    set_policy(svc, "d1", "lock")
    guard_api.set_contacts(svc.url, "d1", token("player", "d1"), {"email": "d1@example.com"},
                           lambda ch: svc.publisher.contact_code("d1", ch))
    st, ev, _ = deliver(svc, "d1", "US")
    assert st == 200 and sealed.unlock_code(ev)
    wrong = "00000000" if sealed.unlock_code(ev) != "00000000" else "11111111"
    assert harness.http("POST", f"{svc.url}/v1/accounts/d1/unlock", {"code": wrong},
                        headers=auth(token("player", "d1")))[0] == 403
    st, body, _ = get(svc, "/v1/support/accounts/d1", staff)
    assert st == 200, body
    assert body["known"] is True and body["locked"] is True and body["policy"] == "lock"
    assert body["contacts"] == {"email": "d1@example.com", "phone": None}
    pc = body["pending_code"]
    assert pc["attempts"] == 1 and pc["attempts_max"] == 3 and pc["expired"] is False
    assert pc["expires_at"].endswith("Z")
    assert sealed.unlock_code(ev) not in json.dumps(body)
    assert get(svc, "/v1/support/accounts/d1", token("player", "d1"))[0] == 403
    assert get(svc, "/v1/support/accounts/d1", None)[0] == 401


def test_lock_history_records_locks_and_both_unlocks():
    url = pg.fresh_db()
    svc = start(url)
    staff = token("staff", "bob")
    set_policy(svc, "h1", "lock")
    st, ev, _ = deliver(svc, "h1", "US", ip="203.0.113.9")
    assert st == 200
    assert harness.http("POST", f"{svc.url}/v1/accounts/h1/unlock", {"code": sealed.unlock_code(ev)},
                        headers=auth(token("player", "h1")))[0] == 200
    assert deliver(svc, "h1", "BR")[0] == 200
    # a staff unlock of an account that is not locked is audited but is no lock event
    path = f"{svc.url}/v1/support/accounts/h1/unlock"
    assert harness.http("POST", path, {"reason": "ID checked, ticket 7"},
                        headers=auth(staff))[0] == 200
    assert harness.http("POST", path, {"reason": "again"}, headers=auth(staff))[0] == 200

    st, body, _ = get(svc, "/v1/support/accounts/h1/locks", staff)
    assert st == 200, body
    evs = body["events"]
    assert [(e["event"], e["actor"]) for e in evs] == [
        ("unlocked", "staff"), ("locked", "policy"), ("unlocked", "code"), ("locked", "policy")]
    assert evs[0]["staff"] == "bob" and evs[0]["reason"] == "ID checked, ticket 7"
    assert evs[3]["country"] == "US" and evs[3]["ip"] == "203.0.113.9" and evs[3]["login_id"]
    assert evs[1]["country"] == "BR"
    assert all(e["ts"].endswith("Z") for e in evs)
    st, body, _ = get(svc, "/v1/support/accounts/h1/locks?limit=1", staff)
    assert st == 200 and len(body["events"]) == 1
    assert get(svc, "/v1/support/accounts/h1/locks?limit=201", staff)[0] == 400
    assert get(svc, "/v1/support/accounts/h1/locks", token("player", "h1"))[0] == 403
    audit = get(svc, "/v1/support/audit?account_id=h1", staff)[1]["entries"]
    assert len([e for e in audit if e["actor"] == "staff"]) == 2, audit


def test_cors_allowed_origin_unknown_origin_and_preflight():
    svc = start(pg.fresh_db())
    path = svc.url + "/v1/accounts/c1/status"
    tok = auth(token("player", "c1"))
    st, _, h = harness.http("GET", path, headers=dict(tok, Origin=PAGE_ORIGIN))
    assert st == 200 and h.get("access-control-allow-origin") == PAGE_ORIGIN
    assert "Origin" in h.get("vary", "")
    st, _, h = harness.http("GET", path, headers=dict(tok, Origin="http://evil.example"))
    assert st == 200 and "access-control-allow-origin" not in h
    st, _, h = harness.http("GET", path, headers=tok)
    assert "access-control-allow-origin" not in h
    # errors carry the header too, so the page can read them
    st, _, h = harness.http("GET", svc.url + "/v1/support/audit", headers={"Origin": PAGE_ORIGIN})
    assert st == 401 and h.get("access-control-allow-origin") == PAGE_ORIGIN

    pre = {"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "authorization, content-type"}
    st, _, h = harness.http("OPTIONS", svc.url + "/v1/accounts/c1/policy", headers=pre)
    assert st == 204
    assert h["access-control-allow-origin"] == PAGE_ORIGIN
    assert set(h["access-control-allow-methods"].split(", ")) == {"GET", "PUT"}
    assert "Authorization" in h["access-control-allow-headers"]
    assert int(h["access-control-max-age"]) > 0
    st, body, h = harness.http("OPTIONS", svc.url + "/v1/accounts/c1/policy",
                               headers=dict(pre, Origin="http://evil.example"))
    assert st == 403 and body["error"] == "cors_refused"
    assert "access-control-allow-origin" not in h
    st, _, _ = harness.http("OPTIONS", svc.url + "/v1/nothing/here", headers=pre)
    assert st == 404


def test_cors_origin_config_is_validated():
    url = pg.fresh_db()
    for bad in ["http://x.example/path", "ftp://x.example", "http://a b", "http://x;script-src *"]:
        proc = harness.ctx().start("guard", config={"database_url": url,
                                                    "http": {"cors_origins": bad}},
                                   env={"GUARD_DATABASE_URL": url}, wait=False)
        harness.wait_for(lambda: not proc.alive(), timeout=15, what="guard refusing " + bad)
        assert proc.popen.returncode != 0
        assert "cors_origins" in proc.log()


def test_console_files_and_config_json():
    svc = start(pg.fresh_db())
    st, body, h = harness.http("GET", svc.url + "/support/")
    assert st == 200 and "support.js" in body
    csp = h["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert f"connect-src 'self' {PAGE_ORIGIN} http://localhost:18102;" in csp
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    for f in ["support.js", "i18n.js", "api.js", "style.css"]:
        st, _, h = harness.http("GET", svc.url + "/support/" + f)
        assert st == 200 and "frame-ancestors 'none'" in h["content-security-policy"], f
    st, body, _ = harness.http("GET", svc.url + "/support/config.json")
    assert st == 200 and body == {"guard_url": "", "history_url": PAGE_ORIGIN}
    assert harness.http("GET", svc.url + "/support/../main.c")[0] == 404
    assert harness.http("GET", svc.url + "/")[0] == 404


def post(svc, path, body, tok):
    return harness.http("POST", svc.url + path, body, headers=auth(tok) if tok else {})


def status_locked(svc, account):
    st, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/{account}/status",
                               headers=auth("dev-status-token"))
    assert st == 200, (st, body)
    return body["locked"]


def test_lock_now_and_unlock_with_ticket_tell_the_player_and_the_timeline():
    url = pg.fresh_db()
    svc = start(url)
    staff = token("staff", "carol")
    set_policy(svc, "n1", "notify")
    path = "/v1/support/accounts/n1/lock"
    assert post(svc, path, {"ticket": "T-1"}, staff)[0] == 400  # reason_required
    st, body, _ = post(svc, path, {"reason": "stolen", "ticket": "bad ticket!"}, staff)
    assert st == 400 and body["error"] == "bad_ticket", (st, body)
    assert post(svc, path, {"reason": "stolen"}, token("player", "n1"))[0] == 403
    assert post(svc, path, {"reason": "stolen"}, None)[0] == 401
    assert not status_locked(svc, "n1")
    st, body, _ = post(svc, path, {"reason": "player called: phone stolen", "ticket": "T-1042"},
                       staff)
    assert st == 200 and body == {"account_id": "n1", "locked": True, "locked_by": "carol"}, body
    assert status_locked(svc, "n1")
    # the list shows the state, not the policy: locked now, policy still notify
    found = get(svc, "/v1/support/accounts?prefix=n1", staff)[1]["accounts"]
    assert found[0]["locked"] is True and found[0]["policy"] == "notify", found
    # locking again is audited but is no second lock event
    assert post(svc, path, {"reason": "again", "ticket": "T-1042"}, staff)[0] == 200
    evs = get(svc, "/v1/support/accounts/n1/locks", staff)[1]["events"]
    assert [(e["event"], e["actor"], e["staff"]) for e in evs] == [("locked", "staff", "carol")]
    assert svc.publisher.wait("n1", "staff_lock", 2)[0]["params"]["staff"] == "carol"
    # support unlocks with a ticket: the list no longer shows a lock
    st, body, _ = post(svc, "/v1/support/accounts/n1/unlock",
                       {"reason": "identity checked", "ticket": "T-1042"}, staff)
    assert st == 200, body
    assert not status_locked(svc, "n1")
    found = get(svc, "/v1/support/accounts?prefix=n1", staff)[1]["accounts"]
    assert found[0]["locked"] is False, found
    audit = get(svc, "/v1/support/audit?account_id=n1", staff)[1]["entries"]
    assert [(e["action"], e["ticket"]) for e in audit if e["actor"] == "staff"] == [
        ("unlock", "T-1042"), ("lock", "T-1042"), ("lock", "T-1042")], audit
    # the player's timeline: locked by support, unlocked by support, after the policy change
    timeline = svc.publisher.wait("n1", "unlocked", 1, topic="account.event")
    assert timeline[0]["by"] == "support" and timeline[0]["ts"].endswith("Z"), timeline
    locked = svc.publisher.of("n1", "locked", topic="account.event")
    assert [e["by"] for e in locked] == ["support"], locked
    changed = svc.publisher.of("n1", "settings_changed", topic="account.event")
    assert [(e["by"], e["change"]) for e in changed] == [("player", "policy_changed")], changed


def test_lock_by_policy_and_unlock_by_code_reach_the_timeline():
    url = pg.fresh_db()
    svc = start(url)
    set_policy(svc, "n2", "lock")
    st, ev, _ = deliver(svc, "n2", "US")
    assert st == 200
    assert harness.http("POST", f"{svc.url}/v1/accounts/n2/unlock", {"code": sealed.unlock_code(ev)},
                        headers=auth(token("player", "n2")))[0] == 200
    svc.publisher.wait("n2", "unlocked", 1, topic="account.event")
    locked = svc.publisher.of("n2", "locked", topic="account.event")
    assert locked == [{"account_id": "n2", "kind": "locked", "by": "policy",
                       "login_id": ev["login_id"], "ts": locked[0]["ts"]}], locked
    assert svc.publisher.of("n2", "unlocked", topic="account.event")[0]["by"] == "player"


def test_reset_policy_and_contacts():
    url = pg.fresh_db()
    svc = start(url)
    staff = token("staff", "dave")
    assert post(svc, "/v1/support/accounts/nobody/reset",
                {"what": "policy", "reason": "x"}, staff)[0] == 404
    set_policy(svc, "r1", "lock")
    guard_api.set_contacts(svc.url, "r1", token("player", "r1"), {"email": "r1@example.com"},
                           lambda ch: svc.publisher.contact_code("r1", ch))
    path = "/v1/support/accounts/r1/reset"
    assert post(svc, path, {"what": "password", "reason": "x"}, staff)[0] == 400
    assert post(svc, path, {"what": "policy"}, staff)[0] == 400
    assert post(svc, path, {"what": "policy", "reason": "x"}, token("player", "r1"))[0] == 403
    st, body, _ = post(svc, path, {"what": "policy", "reason": "player locked out", "ticket":
                                   "ZD-77"}, staff)
    assert st == 200 and body == {"account_id": "r1", "reset": "policy", "by": "dave"}, body
    acct = get(svc, "/v1/support/accounts/r1", staff)[1]
    assert acct["policy"] == "none" and acct["contacts"]["email"] == "r1@example.com", acct
    st, body, _ = post(svc, path, {"what": "contacts", "reason": "hijacked email",
                                   "ticket": "ZD-78"}, staff)
    assert st == 200, body
    acct = get(svc, "/v1/support/accounts/r1", staff)[1]
    assert acct["contacts"] == {"email": None, "phone": None}, acct
    assert acct["channels"] == ["ingame"], acct
    # the old address hears of the reset
    told = [e for e in svc.publisher.wait("r1", "staff_reset", 2)
            if e["params"] == {"staff": "dave", "what": "contacts"}]
    assert told[0]["contacts"] == {"email": "r1@example.com"}, told
    audit = get(svc, "/v1/support/audit?account_id=r1", staff)[1]["entries"]
    assert [(e["action"], e["ticket"], e["staff"]) for e in audit if e["actor"] == "staff"] == [
        ("contacts_reset", "ZD-78", "dave"), ("policy_reset", "ZD-77", "dave")], audit
    svc.publisher.wait("r1", "settings_changed", 5, topic="account.event")
    changes = [(e["by"], e["change"]) for e in
               svc.publisher.of("r1", "settings_changed", topic="account.event")]
    assert sorted(changes[-2:]) == [("support", "contacts_reset"), ("support", "policy_reset")], \
        changes


def test_retention_deletes_old_rows_in_batches_keeps_newer():
    url = pg.fresh_db()
    # batches of 2 rows: 5 old rows of a table take 3 statements
    svc = start(url, retention={"interval_s": 1, "batch_rows": 2, "decisions_days": 30,
                                "lock_events_days": 365, "audit_days": 100, "outbox_days": 7,
                                "answers_days": 90})
    svc.publisher.fail = 1_000_000  # the outbox keeps its rows: only retention removes them
    db = url.rsplit("/", 1)[1]
    sql = []
    for i, age in enumerate([400, 400, 400, 400, 400, 5]):
        when = f"now() - interval '{age} days'"
        sql.append(f"INSERT INTO guard.decisions (login_id, account_id, action, event, created_at) "
                   f"VALUES ('l{i}', 'ret-1', 'notify', '{{}}', {when})")
        sql.append(f"INSERT INTO guard.lock_events (ts, account_id, event, actor) "
                   f"VALUES ({when}, 'ret-1', 'locked', 'policy')")
        sql.append(f"INSERT INTO guard.audit (ts, staff, action, account_id, reason) "
                   f"VALUES ({when}, 'bob', 'unlock', 'ret-1', 'r{i}')")
        sql.append(f"INSERT INTO guard.outbox (event_id, event, created_at) "
                   f"VALUES ('ret-e{i}', '{{}}', {when})")
        sql.append(f"INSERT INTO guard.answers (token_hash, account_id, login_id, action, country, "
                   f"ip, login_ts, created_at, expires_at) VALUES ('h{i}', 'ret-1', 'l{i}', "
                   f"'notify', 'US', '8.8.8.8', '2025-01-01T00:00:00Z', {when}, {when})")
    # kept by their own retention: 40-day-old decision (30 days: gone), audit 50 days (100: kept)
    sql.append("INSERT INTO guard.decisions (login_id, account_id, action, event, created_at) "
               "VALUES ('l-40', 'ret-1', 'notify', '{}', now() - interval '40 days')")
    sql.append("INSERT INTO guard.audit (ts, staff, action, account_id, reason) "
               "VALUES (now() - interval '50 days', 'bob', 'unlock', 'ret-1', 'r-50')")
    pg.cluster().psql(db, "; ".join(sql))

    def rows(table, where="true"):
        return int(pg.cluster().psql(db, f"SELECT count(*) FROM guard.{table} WHERE {where}")[0][0])

    harness.wait_for(lambda: rows("decisions") == 1 and rows("lock_events") == 1 and
                     rows("audit") == 2 and rows("outbox", "event_id LIKE 'ret-e%'") == 1 and
                     rows("answers") == 1,
                     timeout=20, what="old rows deleted")
    assert rows("decisions", "login_id = 'l5'") == 1
    assert rows("audit", "reason IN ('r5', 'r-50')") == 2
    assert rows("outbox", "event_id = 'ret-e5'") == 1
    assert rows("answers", "token_hash = 'h5'") == 1
    assert "retention: deleted 6 row(s) of guard.decisions older than 30 days" in svc.log()
    # the account events the triggers queued for the rows inserted now stay in the outbox
    assert rows("outbox", "topic = 'account.event'") >= 1



ACTION_SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/account.action.json"))


def test_lock_now_ends_live_sessions_once_and_tells_the_player_once():
    """Support's lock-now ends the account's live game sessions: guard queues an account.action
    kick naming no session with the lock. The bus's routes are played by the test's publisher,
    which hands each event guard publishes to a real gamesim (route gamesim-kick) and a real
    notify (notify-actions, and the notifications): the sessions end with the reason, and the
    player gets one notice (staff_lock), no message for the kick."""
    url = pg.fresh_db()
    down = guard_api.Downstream(url)
    pub = guard_api.Publisher(forward=down.forward)
    svc = start(url, publisher_url=pub.url)
    svc.publisher = pub
    staff = token("staff", "carol")
    set_policy(svc, "sl1", "notify")
    opened = [{"session_id": "a", "account_id": "sl1", "server": "kr-1"},
              {"session_id": "b", "account_id": "sl1", "lang": "en"},
              {"session_id": "c", "account_id": "sl2"}]
    assert harness.http("POST", f"{down.gamesim.url}/v1/sessions", opened,
                        headers=guard_api.GS_AUTH)[0] == 201
    assert all(s["ended_at"] is None for s in down.sessions("sl1").values())
    st, body, _ = post(svc, "/v1/support/accounts/sl1/lock",
                       {"reason": "account takeover reported", "ticket": "T-77"}, staff)
    assert st == 200 and body["locked"] is True, (st, body)
    ended = harness.wait_for(lambda: all(s["ended_at"] for s in down.sessions("sl1").values())
                             and down.sessions("sl1"), 15, what="sl1's sessions ended")
    assert {s["end_reason"] for s in ended.values()} == {"kick"}, ended
    assert "고객센터에서 계정을 잠가" in ended["a"]["end_message"], ended["a"]
    assert "support locked your account" in ended["b"]["end_message"], ended["b"]
    assert down.sessions("sl2")["c"]["ended_at"] is None  # another account's session goes on
    act = svc.publisher.actions("sl1")
    assert len(act) == 1, act
    jsonschema.validate(act[0], ACTION_SCHEMA)
    assert act[0]["action"] == "kick" and act[0]["reasons"] == ["support_lock"], act
    assert "session_id" not in act[0] and act[0]["channels"] == [], act
    # a retried lock (the account is locked already) is audited and told, but kicks nothing
    assert post(svc, "/v1/support/accounts/sl1/lock",
                {"reason": "account takeover reported", "ticket": "T-77"}, staff)[0] == 200
    svc.publisher.wait("sl1", "staff_lock", 2)  # queued after the kick it would come with
    assert len(svc.publisher.actions("sl1")) == 1, svc.publisher.actions("sl1")
    # every delivery was taken; the player was told by the two staff_lock notices only (in-game:
    # the account has no contacts), never of the kick (notify sent it on no channel)
    def kinds():
        return [m.get("kind") for m in down.ingame("sl1")]
    harness.wait_for(lambda: kinds().count("staff_lock") == 2, 15, what="2 staff_lock in-game")
    assert set(kinds()) <= {"staff_lock", "settings_changed"}, kinds()
    assert all(st in (200, 204) for _, st, _ in down.delivered), down.delivered
    notify_answers = [a for t, _, a in down.delivered
                      if t == f"{down.notify.url}/v1/deliveries/account.action"]
    assert notify_answers == [{"sent": 0}], notify_answers
    # history took the kick (stored apart from the player's logins) and the lock for the timeline
    assert [st for t, st, _ in down.delivered
            if t == f"{down.history.url}/v1/deliveries/account.action"] == [200], down.delivered
    assert len(down.received()["kicks"]) == 1
