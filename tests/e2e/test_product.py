"""The whole product through the bus (issue 5): embedded broker, publisher, dispatcher with the
real config/bus/*.json (endpoints moved to free ports), ipcheck with the GeoIP database, history,
guard, notify (emails as files), campaign, gamesim and PostgreSQL (tests/lib/product.py).

Logins enter through the publisher only; every effect is observed where a player, a login server
or support would see it: history's API, guard's status and unlock APIs, the outbox, gamesim.
The product starts once for the module (on first use) and teardown_module() stops it; each test
uses accounts of its own, so the tests are independent of each other's order.

"Triggers nothing" is proven with a sentinel: after the login that must do nothing, a login of
the same account that does trigger its policy. Every route of the product orders by account
(ordering "key"), so when the sentinel's effect has arrived, any effect of the earlier login would
have arrived before it."""
import glob
import json
import re
import uuid

import guard_api
import harness
import product
from product import token
from tokens import auth

KR_IP = "211.234.10.20"   # loginsim's sample range for KR (the home country)
US_IP = "8.8.8.8"
JP_IP = "126.0.0.77"
RUN = uuid.uuid4().hex[:6]
CAMPAIGN_ACCOUNT = f"camp-{RUN}"
# The product starts once for the module, on first use; teardown_module() stops it.
# After every route ran, teardown checks that the broker denied none of their requests.
_P = harness.ModuleFixture(
    "e2e/test_product", lambda ctx: product.start(ctx, campaign_accounts=[CAMPAIGN_ACCOUNT]),
    check=lambda p: p.check_principals())
the_product = _P.get
teardown_module = _P.teardown
with_product = _P.test


def account(tag):
    return f"{tag}-{RUN}-{uuid.uuid4().hex[:4]}"


def setup_account(p, acct, action, channels=("email", "ingame"), allowed=()):
    tok = token("player", acct)
    p.set_email(acct, tok)
    st, body, _ = harness.http("PUT", f"{p.url('guard')}/v1/accounts/{acct}/policy",
                               {"action": action, "channels": list(channels),
                                "allowed_countries": list(allowed)}, headers=auth(tok))
    assert st == 200, (st, body)
    return tok


def publish(p, acct, ip):
    st, body = p.publish(product.login(acct, ip))
    assert st == 202, (st, body)
    return body["id"]


def history_now(p, acct):
    """acct's history as staff sees it: {login id: row}."""
    st, body, _ = harness.http("GET", f"{p.url('history')}/v1/accounts/{acct}/logins?limit=100",
                               headers=auth(token("staff", "e2e-sam")))
    assert st == 200, (st, body)
    return {r["id"]: r for r in body["logins"]}


def history_rows(p, acct, want):
    """Waits until acct's history holds `want` rows; returns {login id: row}."""
    harness.wait_for(lambda: len(history_now(p, acct)) >= want, 60,
                     what=f"{want} logins of {acct} in history")
    rows = history_now(p, acct)
    assert len(rows) == want, rows
    return rows


def history_action(p, acct, login_id, want):
    """Waits until history shows `want` as the action of login_id (history-actions route)."""
    try:
        harness.wait_for(lambda: history_now(p, acct).get(login_id, {}).get("action") == want,
                         60, what=f"action {want} of {login_id} in history")
    except AssertionError as e:
        raise AssertionError(f"{e}; history of {acct}: {history_now(p, acct)}")


def received(p):
    st, body, _ = harness.http("GET", f"{p.url('gamesim')}/v1/received",
                               headers=product.GAMESIM_AUTH)
    assert st == 200, (st, body)
    return body


def kicks_of(p, acct):
    return [k for k in received(p)["kicks"] if k.get("account_id") == acct]


def messages_of(p, acct):
    return [m for m in received(p)["messages"] if m.get("account_id") == acct and
            m.get("kind") not in guard_api.GUARD_KINDS]


def emails_to(p, acct):
    """The emails of account.action's kinds to acct (not guard's own notices and codes)."""
    return [m for m in p.emails_to(f"{acct}@example.com")
            if not re.search(r"^X-Notify-Kind: (%s)\r$" % "|".join(guard_api.GUARD_KINDS), m,
                             re.M)]


def status(p, acct):
    st, body, _ = harness.http("GET", f"{p.url('guard')}/v1/accounts/{acct}/status",
                               headers=auth(token("staff", "e2e-sam")))
    assert st == 200, (st, body)
    return body


def code_in(text):
    # The code's sentence of notify/templates/lock_code.*.txt, not any 8 digits: the headers
    # (Message-ID, Date) can hold a run of 8 digits by chance.
    m = re.findall(r"(?:unlock code is|잠금 해제 코드:) ([0-9]{8})(?![0-9])", text)
    assert len(m) == 1, f"expected one unlock code in the message: {text!r}"
    return m[0]


def lock_and_get_code(p, acct):
    """Locks acct by a login from abroad; returns the code from the email notify wrote."""
    setup_account(p, acct, "lock")
    publish(p, acct, US_IP)
    harness.wait_for(lambda: status(p, acct)["locked"], 60, what=f"{acct} locked")
    mails = harness.wait_for(lambda: emails_to(p, acct), 60, what=f"lock email to {acct}")
    assert len(mails) == 1, mails
    return code_in(mails[0])


def unlock(p, acct, tok, code):
    return harness.http("POST", f"{p.url('guard')}/v1/accounts/{acct}/unlock", {"code": code},
                        headers=auth(tok))


def counter(p, name, route, status=None):
    st, text, _ = harness.http("GET", p.dispatcher.url + "/metrics")
    assert st == 200
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'route="{route}"' in line and \
                (status is None or f'status="{status}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


@with_product
def test_domestic_login_recorded_and_triggers_nothing(p):
    acct = account("home")
    setup_account(p, acct, "kick")
    home_id = publish(p, acct, KR_IP)
    rows = history_rows(p, acct, 1)
    assert rows[home_id]["country"] == "KR" and rows[home_id]["ip"] == KR_IP, rows
    sentinel = publish(p, acct, US_IP)
    harness.wait_for(lambda: kicks_of(p, acct), 60, what="the sentinel's kick")
    kicks = kicks_of(p, acct)
    assert [k["login_id"] for k in kicks] == [sentinel], kicks
    history_action(p, acct, sentinel, "kick")
    rows = history_rows(p, acct, 2)
    assert rows[home_id]["action"] is None, rows
    assert status(p, acct)["locked"] is False and status(p, acct)["blocked_abroad"] is False


@with_product
def test_abroad_login_has_each_policys_effect(p):
    accts = {action: account(action) for action in ("notify", "kick", "block_abroad", "lock")}
    ids = {}
    for action, acct in accts.items():
        setup_account(p, acct, action)
        assert status(p, acct)["locked"] is False
    for action, acct in accts.items():
        ids[action] = publish(p, acct, US_IP)
    for action, acct in accts.items():
        history_action(p, acct, ids[action], action)
        mails = harness.wait_for(lambda: emails_to(p, acct), 60, what=f"email to {acct}")
        harness.wait_for(lambda: messages_of(p, acct), 60, what=f"in-game message to {acct}")
        assert len(mails) == 1 and len(messages_of(p, acct)) == 1, (mails, messages_of(p, acct))
        if action != "notify":
            harness.wait_for(lambda: kicks_of(p, acct), 60, what=f"kick of {acct}")
            kick = kicks_of(p, acct)
            assert len(kick) == 1 and kick[0]["login_id"] == ids[action], kick
            assert kick[0]["action"] == action and kick[0]["country"] == "US", kick
            assert "sealed_code" not in kick[0] and "code" not in kick[0], kick
    # notify: the message and nothing else
    assert US_IP in emails_to(p, accts["notify"])[0]
    assert kicks_of(p, accts["notify"]) == []
    st = status(p, accts["notify"])
    assert st["locked"] is False and st["blocked_abroad"] is False, st
    st = status(p, accts["kick"])
    assert st["locked"] is False and st["blocked_abroad"] is False, st
    st = status(p, accts["block_abroad"])
    assert st["blocked_abroad"] is True and st["locked"] is False, st
    st = status(p, accts["lock"])
    assert st["locked"] is True, st
    # lock: the one-time code went out on both channels, the same code
    code = code_in(emails_to(p, accts["lock"])[0])
    assert code_in(messages_of(p, accts["lock"])[0]["text"]) == code


@with_product
def test_player_unlocks_with_code_from_message(p):
    acct = account("unlock")
    code = lock_and_get_code(p, acct)
    tok = token("player", acct)
    other = token("player", account("other"))
    st, body, _ = unlock(p, acct, other, code)  # someone else's token, even with the code
    assert st == 403, (st, body)
    assert status(p, acct)["locked"] is True
    st, body, _ = unlock(p, acct, tok, code)
    assert st == 200 and body["locked"] is False, (st, body)
    assert status(p, acct)["locked"] is False
    st, body, _ = unlock(p, acct, tok, code)  # a code works once
    assert st == 409, (st, body)


@with_product
def test_timeline_shows_why_and_who_locked_and_unlocked(p):
    """History with reasons (issue 24): the lock's login says why and, once unlocked, when; the
    account's events (guard's outbox → account.event → route history-events) say who."""
    acct = account("timeline")
    code = lock_and_get_code(p, acct)
    tok = token("player", acct)
    assert unlock(p, acct, tok, code)[0] == 200

    def events():
        st, body, _ = harness.http("GET", f"{p.url('history')}/v1/accounts/{acct}/events",
                                   headers=auth(tok))
        assert st == 200, (st, body)
        return [(e["kind"], e["by"], e.get("change")) for e in body["events"]]
    harness.wait_for(lambda: events()[:1] == [("unlocked", "player", None)], 60,
                     what=f"{acct}'s unlock in history")
    assert events() == [("unlocked", "player", None), ("locked", "policy", None),
                        ("settings_changed", "player", "policy_changed"),
                        ("settings_changed", "player", "contact_confirmed"),
                        ("settings_changed", "player", "contact_change_requested")], events()
    rows = [r for r in history_now(p, acct).values() if r["action"] == "lock"]
    assert len(rows) == 1 and rows[0]["reasons"] and rows[0]["unlocked_at"], rows


@with_product
def test_wrong_code_refused_until_attempts_run_out(p):
    acct = account("wrong")
    code = lock_and_get_code(p, acct)
    tok = token("player", acct)
    wrong = "00000000" if code != "00000000" else "11111111"
    lefts = []
    for _ in range(10):
        st, body, _ = unlock(p, acct, tok, wrong)
        if st != 403:
            break
        lefts.append(body["attempts_left"])
    assert st == 423, (st, body, lefts)
    assert lefts == sorted(lefts, reverse=True) and lefts[-1] == 1, lefts
    # attempts exhausted: even the right code is refused now, and the account stays locked
    st, body, _ = unlock(p, acct, tok, code)
    assert st == 423, (st, body)
    assert status(p, acct)["locked"] is True


@with_product
def test_support_unlocks_with_reason_and_audit_row(p):
    acct = account("support")
    lock_and_get_code(p, acct)
    staff = token("staff", "sam")
    url = f"{p.url('guard')}/v1/support/accounts/{acct}/unlock"
    st, body, _ = harness.http("POST", url, {}, headers=auth(staff))
    assert st == 400, (st, body)
    st, body, _ = harness.http("POST", url, {"reason": "e2e"},
                               headers=auth(token("player", acct)))
    assert st in (401, 403), (st, body)
    assert status(p, acct)["locked"] is True
    reason = f"verified by phone {RUN}"
    st, body, _ = harness.http("POST", url, {"reason": reason}, headers=auth(staff))
    assert st == 200 and body["unlocked_by"] == "sam", (st, body)
    assert status(p, acct)["locked"] is False
    st, body, _ = harness.http("GET", f"{p.url('guard')}/v1/support/audit?account_id={acct}",
                               headers=auth(staff))
    assert st == 200, (st, body)
    entries = [e for e in body["entries"] if e["actor"] == "staff"]
    assert len(entries) == 1, entries
    assert entries[0]["staff"] == "sam" and entries[0]["reason"] == reason, entries
    assert entries[0]["account_id"] == acct, entries


@with_product
def test_login_reaches_history_with_country(p):
    # The login flow (publisher -> broker -> dispatcher -> ipcheck, streaming login ->
    # login.checked -> dispatcher -> history): each login published over HTTP shows up in the
    # player's history with the country of its address, a private address as ZZ.
    acct = account("flow")
    ids = {ip: publish(p, acct, ip) for ip in ("8.8.8.8", "8.8.4.4", "10.1.2.3")}
    rows = history_rows(p, acct, len(ids))
    assert {ip: rows[i]["ip"] for ip, i in ids.items()} == {ip: ip for ip in ids}, rows
    assert rows[ids["8.8.8.8"]]["country"] == "US", rows
    assert rows[ids["8.8.4.4"]]["country"] == "US", rows
    assert rows[ids["10.1.2.3"]]["country"] == "ZZ", rows  # private address


@with_product
def test_player_cannot_read_another_players_history(p):
    alice, bob = account("alice"), account("bob")
    publish(p, alice, KR_IP)
    publish(p, bob, KR_IP)
    history_rows(p, alice, 1)
    history_rows(p, bob, 1)
    url = f"{p.url('history')}/v1/accounts/{bob}/logins"
    st, body, _ = harness.http("GET", url, headers=auth(token("player", alice)))
    assert st == 403, (st, body)
    st, body, _ = harness.http("GET", url)
    assert st == 401, (st, body)
    st, body, _ = harness.http("GET", url, headers=auth(token("player", bob)))
    assert st == 200 and len(body["logins"]) == 1 and body["logins"][0]["ip"] == KR_IP, body


@with_product
def test_campaign_message_sent_once_for_listed_account(p):
    acct = CAMPAIGN_ACCOUNT
    first = publish(p, acct, KR_IP)
    msgs = harness.wait_for(
        lambda: [m for m in messages_of(p, acct) if m.get("kind") == "campaign_password"], 60,
        what="the campaign's in-game message")
    assert len(msgs) == 1, msgs
    second = publish(p, acct, KR_IP)
    rows = history_rows(p, acct, 2)
    assert set(rows) == {first, second}, rows
    # Both logins were answered by campaign (the route's 2xx count covers every login published
    # so far), and campaign answered 200 (a message) exactly once in the whole run: only this
    # account is on the list.
    harness.wait_for(lambda: counter(p, "bus_dispatcher_delivered_total", "campaign", "204") +
                     counter(p, "bus_dispatcher_delivered_total", "campaign", "200") >=
                     p.published_ok, 60, what="campaign answered every login")
    assert counter(p, "bus_dispatcher_delivered_total", "campaign", "200") == 1
    harness.wait_for(lambda: counter(p, "bus_dispatcher_delivered_total", "notify-messages",
                                     "200") >= 1, 60, what="notify-messages delivered")
    msgs = [m for m in messages_of(p, acct) if m.get("kind") == "campaign_password"]
    assert len(msgs) == 1, msgs


@with_product
def test_allowed_country_while_travelling_triggers_nothing(p):
    acct = account("travel")
    setup_account(p, acct, "kick", allowed=["US"])
    st = status(p, acct)
    assert "US" in json.dumps(st["allowed_countries"]), st
    trip = publish(p, acct, US_IP)
    sentinel = publish(p, acct, JP_IP)  # not allowed: kicked
    harness.wait_for(lambda: kicks_of(p, acct), 60, what="the sentinel's kick")
    kicks = kicks_of(p, acct)
    assert [k["login_id"] for k in kicks] == [sentinel], kicks
    assert kicks[0]["country"] == "JP", kicks
    history_action(p, acct, sentinel, "kick")
    rows = history_rows(p, acct, 2)
    assert rows[trip]["action"] is None and rows[trip]["country"] == "US", rows
    assert emails_to(p, acct) and all(US_IP not in m for m in emails_to(p, acct))


def answer_token_in(text):
    """The one-time token of the "was it you?" link in a message (answers.page_url#answer=)."""
    m = re.findall(r"#answer=([0-9a-f]{64})(?![0-9a-f])", text)
    assert len(m) == 1, f"expected one answer link in the message: {text!r}"
    return m[0]


def sessions_of(p, acct):
    st, body, _ = harness.http("GET", f"{p.url('gamesim')}/v1/sessions?account_id={acct}",
                               headers=product.GAMESIM_AUTH)
    assert st == 200, (st, body)
    return body["sessions"]


@with_product
def test_not_me_from_the_alert_link_locks_and_ends_every_session(p):
    """The alert reaches the player in their language with a "was it you?" link; answering "not
    me" through it locks the account, ends the live sessions, tells the player (with a new
    unlock code that works) and shows in history; the link works once."""
    acct = account("notme")
    tok = setup_account(p, acct, "notify", channels=("ingame",))
    st, body, _ = harness.http("PUT", f"{p.url('guard')}/v1/accounts/{acct}/policy",
                               {"action": "notify", "channels": ["ingame"], "lang": "en"},
                               headers=auth(tok))
    assert st == 200 and body["lang"] == "en", (st, body)
    for sid in ("s-a", "s-b"):
        st, body, _ = harness.http("POST", f"{p.url('gamesim')}/v1/sessions",
                                   {"session_id": f"{sid}-{acct}", "account_id": acct,
                                    "server": "kr-1"}, headers=product.GAMESIM_AUTH)
        assert st in (200, 201), (st, body)
    login_id = publish(p, acct, US_IP)
    msg = harness.wait_for(lambda: messages_of(p, acct), 60, what=f"alert to {acct}")[0]
    assert msg["kind"] == "login_abroad" and "United States" in msg["text"], msg
    assert "(UTC+00:00)" in msg["text"], msg  # en players' default zone: tz.en = UTC
    link = answer_token_in(msg["text"])
    st, q, _ = harness.http("GET", f"{p.url('guard')}/v1/answers/{link}")
    assert st == 200 and q["login"]["country"] == "US" and q["lang"] == "en", (st, q)
    st, body, _ = harness.http("POST", f"{p.url('guard')}/v1/answers/{link}",
                               {"answer": "not_me", "secure": "lock"})
    assert st == 200 and body["locked"] is True, (st, body)
    assert status(p, acct)["locked"] is True
    harness.wait_for(lambda: all(s.get("ended_at") for s in sessions_of(p, acct)), 60,
                     what=f"every session of {acct} ended")
    assert len(sessions_of(p, acct)) == 2
    history_action(p, acct, login_id, "lock")
    told = harness.wait_for(lambda: [m for m in messages_of(p, acct)
                                     if m["kind"] == "not_me_locked"], 60,
                            what=f"not_me_locked to {acct}")
    code = code_in(told[0]["text"])
    assert harness.http("POST", f"{p.url('guard')}/v1/answers/{link}",
                        {"answer": "me"})[0] == 410
    st, body, _ = unlock(p, acct, tok, code)
    assert st == 200 and body["locked"] is False, (st, body)


@with_product
def test_it_was_me_from_the_alert_link_allows_the_country_for_a_while(p):
    acct = account("itsme")
    setup_account(p, acct, "kick", channels=("ingame",))  # Korean by default
    publish(p, acct, US_IP)
    msg = harness.wait_for(lambda: messages_of(p, acct), 60, what=f"alert to {acct}")[0]
    assert "미국" in msg["text"] and "(UTC+09:00)" in msg["text"], msg
    link = answer_token_in(msg["text"])
    st, body, _ = harness.http("POST", f"{p.url('guard')}/v1/answers/{link}",
                               {"answer": "me", "allow_days": 3})
    assert st == 200 and body["allowed_days"] == 3, (st, body)
    allowed = status(p, acct)["allowed_countries"]
    assert [a["country"] for a in allowed] == ["US"] and allowed[0]["until"], allowed
