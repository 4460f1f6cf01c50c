"""The player page (served by history) and the support console (served by guard) in a real browser
(Debian's Chromium through playwright-core, tests/browser/player.mjs and support.mjs), plus their
security headers and config.json.

History and guard run on free ports against one fresh database, each with the other's origin in
its CORS allow-list, as `make run` wires them on the default ports. Logins and actions are
delivered to their real delivery endpoints, signed as the dispatcher delivers them."""
import datetime
import json
import uuid

import browser
import guard_api
import harness
import pg
import sealed
from tokens import AUTH, BUS, auth, token


class Product:
    """history + guard on free ports, pointing at each other."""

    def __init__(self):
        url = pg.fresh_db()
        hport, gport = harness.free_port(), harness.free_port()
        self.history_url = f"http://127.0.0.1:{hport}"
        self.guard_url = f"http://127.0.0.1:{gport}"
        env = {"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS}
        self.history = harness.ctx().start(
            "history", env=dict(env, HISTORY_DATABASE_URL=url), ready_path="/readyz",
            config={"database_url": url, "batch_wait_ms": 5, "listen": f"127.0.0.1:{hport}",
                    "http": {"cors_origins": self.guard_url},
                    "web": {"guard_url": self.guard_url}})
        # guard's own messages (contact codes, notices) and its account events, which the bus's
        # history-events route would deliver to history
        self.publisher = guard_api.Publisher(forward=self._forward)
        self.guard = harness.ctx().start(
            "guard", env=dict(env, GUARD_DATABASE_URL=url), ready_path="/readyz",
            config={"database_url": url, "home_countries": "KR", "listen": f"127.0.0.1:{gport}",
                    "http": {"cors_origins": self.history_url},
                    "web": {"history_url": self.history_url},
                    "publisher_url": self.publisher.url})

    def code_url(self, account, channel):
        """A URL answering {"code"} of account's first contact code for channel: what the
        player would read in the message that reached the new contact."""
        def handler(method, path, headers, body):
            return 200, {"code": self.publisher.contact_code(account, channel)}, {}
        url, _ = harness.ctx().serve(handler)
        return url + "/code"

    @staticmethod
    def _post(url, topic, event, ce_id=None):
        body = json.dumps(event).encode()
        headers = harness.delivery_headers(BUS, body, ce_id or str(uuid.uuid4()), topic,
                                           {"ce-source": "test", "X-Bus-Route": "test"})
        return harness.http("POST", f"{url}/v1/deliveries/{topic}", raw=body, headers=headers)

    def _forward(self, topic, ce_id, event):
        if topic == "account.event":
            st, body, _ = self._post(self.history_url, topic, event, ce_id)
            assert st == 200, (st, body)

    def login(self, account, country, ip, minutes_ago=0, server="eu-1", to_guard=False):
        """Delivers a login.checked to history (and guard); returns guard's action or None."""
        ts = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
        ev = {"account_id": account, "ip": ip, "country": country, "server": server,
              "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ts.microsecond // 1000),
              "session_id": "s-" + uuid.uuid4().hex[:6], "login_id": str(uuid.uuid4())}
        st, body, _ = self._post(self.history_url, "login.checked", ev)
        assert st == 200, (st, body)
        action = None
        if to_guard:
            st, action, _ = self._post(self.guard_url, "login.checked", ev)
            assert st in (200, 204), (st, action)
            if st == 200:
                # the streaming route publishes guard's answer as account.action, which history
                # receives too
                self.action(action)
        return ev, action

    def action(self, event):
        ev = {k: v for k, v in event.items() if k != "sealed_code"}
        st, body, _ = self._post(self.history_url, "account.action", ev)
        assert st == 200, (st, body)


def check_page_headers(h):
    csp = h["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, csp
    assert "style-src 'self'" in csp and "base-uri 'none'" in csp, csp
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    return csp


def test_page_headers_and_config():
    p = Product()
    st, body, h = harness.http("GET", p.history_url + "/")
    assert st == 200 and '<script type="module" src="app.js">' in body
    assert "<style" not in body and " style=" not in body and "onclick" not in body
    csp = check_page_headers(h)
    assert f"connect-src 'self' {p.guard_url};" in csp, csp
    for f in ["app.js", "api.js", "i18n.js", "index.html", "common/base.css", "common/api.js",
              "common/i18n.js"]:
        st, _, h = harness.http("GET", p.history_url + "/" + f)
        assert st == 200, f
        check_page_headers(h)
    # the shared files are served under each page's prefix, the page's own files still win below
    for f in ["style.css", "support.js", "common/base.css", "common/api.js"]:
        assert harness.http("GET", p.guard_url + "/support/" + f)[0] == 200, f
    assert harness.http("GET", p.history_url + "/common/../app.js")[0] == 404
    st, body, _ = harness.http("GET", p.history_url + "/config.json")
    assert st == 200 and body == {"history_url": "", "guard_url": p.guard_url}
    st, body, h = harness.http("GET", p.guard_url + "/support/")
    assert st == 200 and '<script type="module" src="support.js">' in body
    csp = check_page_headers(h)
    assert f"connect-src 'self' {p.history_url};" in csp, csp
    st, body, _ = harness.http("GET", p.guard_url + "/support/config.json")
    assert st == 200 and body == {"guard_url": "", "history_url": p.history_url}
    # the API is still JSON, with CORS only for the other page's origin
    st, _, h = harness.http("GET", p.history_url + "/v1/accounts/x/logins",
                            headers={"Origin": p.guard_url})
    assert st == 401 and h["access-control-allow-origin"] == p.guard_url
    st, _, h = harness.http("OPTIONS", p.history_url + "/v1/accounts/x/logins",
                            headers={"Origin": p.history_url,
                                     "Access-Control-Request-Method": "GET"})
    assert st == 403 and "access-control-allow-origin" not in h
    assert harness.http("GET", p.history_url + "/nope.html")[0] == 404


def test_player_page_history_settings_and_unlock():
    p = Product()
    acct = "p-web-1"
    # 13 logins: 10 on page 1, 3 on page 2 (one of unknown country, one over IPv6)
    seeds = [("DE", "11.2.3.4"), ("JP", "11.2.3.5")] + [("KR", "1.201.0.%d" % i)
                                                        for i in range(8)]
    seeds += [("KR", "1.201.0.99"), ("ZZ", "10.0.0.1"),
              ("US", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]
    first = None
    for i, (country, ip) in enumerate(seeds):
        ev, _ = p.login(acct, country, ip, minutes_ago=10 + i)
        first = first or ev
    p.action({"account_id": acct, "login_id": first["login_id"], "action": "notify",
              "country": "DE", "ip": first["ip"], "ts": first["ts"]})
    tok = token("player", acct)
    browser.run("player", {"URL": p.history_url + "/", "ACCOUNT": acct, "TOKEN": tok,
                           "OTHER_TOKEN": token("player", "someone-else"), "PHASE": "settings",
                           "STAFF_TOKEN": token("staff", "alice"),
                           "CODE_URL": p.code_url(acct, "email"),
                           "PAGE2_ROWS": len(seeds) - 10})

    # what the page saved is what guard has
    st, pol, _ = harness.http("GET", f"{p.guard_url}/v1/accounts/{acct}/policy",
                              headers=auth(tok))
    assert st == 200, pol
    assert pol["action"] == "lock" and sorted(pol["channels"]) == ["email", "ingame"]
    assert pol["allowed_countries"] == [{"country": "JP", "until": "2030-01-31T23:59:59Z"}]
    assert pol["contacts"]["email"] == "player@example.com"

    # a login from the US (not allowed) locks the account; Japan would not
    assert p.login(acct, "JP", "11.2.3.6", to_guard=True)[1] is None
    _, action = p.login(acct, "US", "203.0.113.50", to_guard=True)
    assert action["action"] == "lock" and sealed.unlock_code(action)
    code = sealed.unlock_code(action)
    wrong = "00000000" if code != "00000000" else "11111111"
    browser.run("player", {"URL": p.history_url + "/", "ACCOUNT": acct, "TOKEN": tok,
                           "PHASE": "unlock", "CODE": code, "WRONG_CODE": wrong})
    st, status, _ = harness.http("GET", f"{p.guard_url}/v1/accounts/{acct}/status",
                                 headers=auth(token("staff", "st-sam")))
    assert st == 200 and status["locked"] is False


def test_support_console_find_and_unlock_with_reason():
    p = Product()
    acct = "s-web-1"
    st, _, _ = harness.http("PUT", f"{p.guard_url}/v1/accounts/{acct}/policy",
                            {"action": "lock", "channels": ["ingame"]},
                            headers=auth(token("player", acct)))
    assert st == 200
    p.login(acct, "KR", "1.201.0.1", minutes_ago=30, to_guard=True)
    _, action = p.login(acct, "BR", "198.51.100.7", to_guard=True)
    assert action["action"] == "lock"
    reason = "ID checked by phone, ticket 4711"
    browser.run("support", {"URL": p.guard_url + "/support/", "ACCOUNT": acct,
                            "STAFF_TOKEN": token("staff", "alice"), "STAFF": "alice",
                            "PLAYER_TOKEN": token("player", acct), "REASON": reason,
                            "TICKET": "ZD-4711"})
    # the console unlocked, then locked it again and reset its policy
    st, status, _ = harness.http("GET", f"{p.guard_url}/v1/accounts/{acct}/status",
                                 headers=auth(token("staff", "st-sam")))
    assert st == 200 and status["locked"] is True
    st, body, _ = harness.http("GET", f"{p.guard_url}/v1/support/audit?account_id={acct}",
                               headers=auth(token("staff", "bob")))
    assert st == 200 and [(e["actor"], e["staff"], e["action"], e["reason"], e["ticket"])
                          for e in body["entries"]][:4] == [
        ("staff", "alice", "policy_reset", "player asked to start over", "ZD-4711"),
        ("staff", "alice", "lock", "player reports a stolen phone", "ZD-4711"),
        ("staff", "alice", "unlock", reason, None),
        ("player", None, "policy_changed", 'policy lock, channels ["ingame"], allowed none',
         None)], body
    # and the player's timeline in history tells it all, by whom
    st, body, _ = harness.http("GET", f"{p.history_url}/v1/accounts/{acct}/events",
                               headers=auth(token("player", acct)))
    assert st == 200 and [(e["kind"], e["by"]) for e in body["events"]][:5] == [
        ("settings_changed", "support"), ("locked", "support"), ("unlocked", "support"),
        ("locked", "policy"), ("settings_changed", "player")], body
    # the player was told of the unlock
    assert p.publisher.wait(acct, "staff_unlock")[0]["params"] == {"staff": "alice"}


# Words of the test's data (ids, servers, country codes, the staff name) that may appear on a
# Korean page: everything else in English is the page's own text left untranslated.
NARROW_EXEMPT = "narrow player support eu-1 KR US DE BR JP IP alice"


def test_player_page_at_390px_in_both_languages():
    """The player page on a phone (390 px): no horizontal scroll with a history of long rows and
    the settings open, in English and in Korean; in Korean no English of the page's own."""
    p = Product()
    acct = "narrow-player-1"
    for i, (country, ip) in enumerate([("DE", "11.2.3.4"), ("KR", "1.201.0.7"),
                                       ("US", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]):
        ev, _ = p.login(acct, country, ip, minutes_ago=10 + i)
        if i == 0:
            p.action({"account_id": acct, "login_id": ev["login_id"], "action": "notify",
                      "country": country, "ip": ip, "ts": ev["ts"]})
    # locked, with a trip allowed: the locked card, the unlock form and the allowed countries show
    st, _, _ = harness.http("PUT", f"{p.guard_url}/v1/accounts/{acct}/policy",
                            {"action": "lock", "channels": ["ingame"],
                             "allowed_countries": [{"country": "JP",
                                                    "until": "2030-01-31T23:59:59Z"}]},
                            headers=auth(token("player", acct)))
    assert st == 200
    _, action = p.login(acct, "BR", "198.51.100.7", to_guard=True)
    assert action["action"] == "lock"
    browser.run("narrow", {"URL": p.history_url + "/", "PAGE": "player",
                           "TOKEN": token("player", acct), "EXEMPT": NARROW_EXEMPT})


def test_support_console_at_390px_in_both_languages():
    p = Product()
    acct = "narrow-support-1"
    st, _, _ = harness.http("PUT", f"{p.guard_url}/v1/accounts/{acct}/policy",
                            {"action": "lock", "channels": ["ingame"]},
                            headers=auth(token("player", acct)))
    assert st == 200
    p.login(acct, "KR", "1.201.0.1", minutes_ago=30, to_guard=True)
    _, action = p.login(acct, "BR", "198.51.100.7", to_guard=True)
    assert action["action"] == "lock"
    browser.run("narrow", {"URL": p.guard_url + "/support/", "PAGE": "support",
                           "TOKEN": token("staff", "alice"), "ACCOUNT": acct,
                           "EXEMPT": NARROW_EXEMPT})


def test_player_page_answers_an_alert_in_the_players_language():
    """The link of an alert opens the player page's answer screen (tests/browser/answer.mjs):
    "not me" locks the account, "it was me" allows the country for the days chosen."""
    p = Product()
    for acct, lang in (("ans-ko-1", "ko"), ("ans-en-1", "en")):
        st, body, _ = harness.http("PUT", f"{p.guard_url}/v1/accounts/{acct}/policy",
                                   {"action": "notify", "channels": ["ingame"], "lang": lang},
                                   headers=auth(token("player", acct)))
        assert st == 200, (st, body)
    _, ko = p.login("ans-ko-1", "US", "203.0.113.50", to_guard=True)
    _, en = p.login("ans-en-1", "JP", "11.2.3.6", to_guard=True)
    link = lambda action: p.history_url + "/#answer=" + sealed.answer_token(action)
    browser.run("answer", {"NOT_ME_URL": link(ko), "ME_URL": link(en)})
    staff = auth(token("staff", "st-sam"))
    st, status, _ = harness.http("GET", f"{p.guard_url}/v1/accounts/ans-ko-1/status",
                                 headers=staff)
    assert st == 200 and status["locked"] is True, status
    st, status, _ = harness.http("GET", f"{p.guard_url}/v1/accounts/ans-en-1/status",
                                 headers=staff)
    assert st == 200 and [a["country"] for a in status["allowed_countries"]] == ["JP"], status
