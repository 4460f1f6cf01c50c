"""Attacks on the account-security services (issue 19, items 3-6), each a regression test: it
fails on a33fd25 and passes now.

Most tests run against the whole product (tests/lib/product.py: real broker, publisher,
dispatcher, PostgreSQL), started once for the module; each test uses accounts of its own. Logins
enter through the publisher as a login server's would, and every effect is observed where the
player, an attacker or support would see it."""
import hashlib
import hmac
import os
import re
import shutil
import uuid

import harness
import pg
import product
from product import token
from tokens import auth

US_IP = "8.8.8.8"
KR_IP = "211.234.10.20"
RUN = uuid.uuid4().hex[:6]
# The product starts once for the module, on first use; teardown_module() stops it.
_P = harness.ModuleFixture("security/test_accounts", product.start)
the_product = _P.get
teardown_module = _P.teardown
with_product = _P.test


def account(tag):
    return f"{tag}-{RUN}-{uuid.uuid4().hex[:4]}"


def set_policy(p, acct, action, channels=("ingame",), allowed=()):
    st, body, _ = harness.http("PUT", f"{p.url('guard')}/v1/accounts/{acct}/policy",
                               {"action": action, "channels": list(channels),
                                "allowed_countries": list(allowed)},
                               headers=auth(token("player", acct)))
    assert st == 200, (st, body)


def history_now(p, acct):
    st, body, _ = harness.http("GET", f"{p.url('history')}/v1/accounts/{acct}/logins?limit=100",
                               headers=auth(token("staff", "sec-sam")))
    assert st == 200, (st, body)
    return {r["id"]: r for r in body["logins"]}


def support_account(p, acct):
    st, body, _ = harness.http("GET", f"{p.url('guard')}/v1/support/accounts/{acct}",
                               headers=auth(token("staff", "sec-sam")))
    assert st == 200, (st, body)
    return body


# ---- item 4: decisions and history rows are keyed by (account, event id) ----

@with_product
def test_two_accounts_sharing_an_event_id_do_not_touch_each_other(p):
    a, b = account("same-a"), account("same-b")
    set_policy(p, a, "lock")
    set_policy(p, b, "notify")
    shared_id = str(uuid.uuid4())
    for acct in (a, b):
        st, body = p.publish(product.login(acct, US_IP), ce_id=shared_id)
        assert st == 202, (st, body)
    # each account's history holds its own login, with its own account's action
    harness.wait_for(lambda: history_now(p, a).get(shared_id, {}).get("action") == "lock", 60,
                     what=f"{a}'s login with its lock in history")
    harness.wait_for(lambda: history_now(p, b).get(shared_id, {}).get("action") == "notify", 60,
                     what=f"{b}'s login with its notify in history")
    assert support_account(p, a)["locked"] is True
    assert support_account(p, b)["locked"] is False
    rows = p.psql(f"SELECT account_id, action FROM guard.decisions WHERE login_id = '{shared_id}'"
                  " ORDER BY account_id")
    assert sorted(tuple(r) for r in rows) == sorted([(a, "lock"), (b, "notify")]), rows


def test_key_migrations_apply_on_an_existing_database():
    """A database made by the previous release (its migrations only, with a decision and a login
    in it) takes the new keys at the next start of guard and history, rows kept."""
    url = pg.fresh_db()
    db = url.rsplit("/", 1)[1]
    ctx = harness.ctx()
    env = {"AUTH_SECRET": "sec-auth", "BUS_SIGNING_SECRET": "sec-bus"}
    for svc, new in (("guard", "003_decisions_per_account.sql"),
                     ("history", "002_keys_per_account.sql")):
        old_dir = ctx.path(f"old-{svc}", "x")[:-2]
        os.makedirs(old_dir, exist_ok=True)
        for f in sorted(os.listdir(os.path.join(harness.ROOT, "sql", svc))):
            if f < new:
                shutil.copy(os.path.join(harness.ROOT, "sql", svc, f), old_dir)
        cfg = {"database_url": url, "migrations_dir": old_dir}
        proc = ctx.start(svc, config=cfg, env=env, ready_path="/readyz")
        proc.stop()
    pg.cluster().psql(db, "INSERT INTO guard.decisions (login_id, account_id, action, event) "
                          "VALUES ('l1', 'old-a', 'notify', '{}')")
    pg.cluster().psql(db, "SELECT history.ensure_partition(current_date); "
                          "INSERT INTO history.logins (id, ts, account_id, ip, country) "
                          "VALUES ('l1', now(), 'old-a', '1.2.3.4', 'US')")
    for svc in ("guard", "history"):
        cfg = {"database_url": url, "migrations_dir": os.path.join(harness.ROOT, "sql", svc)}
        proc = ctx.start(svc, config=cfg, env=env, ready_path="/readyz")
        proc.stop()
    keys = pg.cluster().psql(db, "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) "
                                 "FROM pg_constraint WHERE contype = 'p' AND conrelid IN "
                                 "('guard.decisions'::regclass, 'history.logins'::regclass, "
                                 "'history.actions'::regclass) ORDER BY 1")
    assert [tuple(k) for k in keys] == [
        ("guard.decisions", "PRIMARY KEY (account_id, login_id)"),
        ("history.actions", "PRIMARY KEY (account_id, login_id)"),
        ("history.logins", "PRIMARY KEY (account_id, id, ts)")], keys
    assert pg.cluster().psql(db, "SELECT account_id FROM guard.decisions") == [["old-a"]]
    assert pg.cluster().psql(db, "SELECT account_id FROM history.logins") == [["old-a"]]


# ---- item 3: unlock codes from a CSPRNG, sealed for notify, nowhere else in the clear ----

def received(p, headers=product.GAMESIM_AUTH):
    return harness.http("GET", f"{p.url('gamesim')}/v1/received", headers=headers)


def ingame_code(p, acct):
    """The unlock code in the in-game message the player was sent (waits for it)."""
    def msgs():
        st, body, _ = received(p)
        assert st == 200, (st, body)
        return [m for m in body["messages"] if m["account_id"] == acct and
                m.get("kind") == "lock_code"]
    found = harness.wait_for(msgs, 60, what=f"in-game message to {acct}")
    codes = re.findall(r"(?:unlock code is|잠금 해제 코드:) ([0-9]{8})(?![0-9])", found[0]["text"])
    assert len(codes) == 1, found
    return codes[0]


def lock(p, acct, ce_id=None):
    set_policy(p, acct, "lock")
    st, body = p.publish(product.login(acct, US_IP), ce_id=ce_id)
    assert st == 202, (st, body)
    return ingame_code(p, acct)


def unlock(p, acct, code):
    return harness.http("POST", f"{p.url('guard')}/v1/accounts/{acct}/unlock", {"code": code},
                        headers=auth(token("player", acct)))


@with_product
def test_unlock_code_in_the_clear_nowhere_but_the_players_message(p):
    acct = account("sealed")
    code = lock(p, acct)
    # every topic, dead letters included, read from the beginning: values, keys and headers
    for topic in product.bus_topics():
        out = harness.kcat(["-C", "-b", p.broker.bootstrap, "-t", topic, "-o", "beginning",
                            "-e", "-q", "-f", "%k %h %s\n"])
        assert code.encode() not in out, f"the unlock code is readable in topic {topic}"
    # the account.action event carries it sealed (notify opened it; nobody else can)
    out = harness.kcat(["-C", "-b", p.broker.bootstrap, "-t", "account.action", "-o",
                        "beginning", "-e", "-q", "-f", "%s\n"]).decode()
    assert re.search(r'"sealed_code":"v1\.dev\.[A-Za-z0-9_-]+"', out), out[-500:]
    # no process logged it; gamesim's recordings need its admin token
    for proc in p.svc.values():
        assert code not in proc.log(), f"the unlock code is in the log of {proc.name}"
    st, body, _ = received(p, headers={})
    assert st == 401 and code not in str(body), (st, body)
    # and it is the real code
    assert unlock(p, acct, code)[0] == 200


def offline_code(account_id, login_id, secret="dev-only-guard-code-secret"):
    """The code as a33fd25 derived it: HMAC of the account and the caller-chosen ce-id."""
    mac = hmac.new(secret.encode(), f"unlock\n{account_id}\n{login_id}".encode(),
                   hashlib.sha256).hexdigest()
    return "%08d" % (int(mac[:16], 16) % 100000000)


@with_product
def test_unlock_code_not_computable_from_the_event_id(p):
    acct = account("offline")
    ce_id = str(uuid.uuid4())
    code = lock(p, acct, ce_id=ce_id)
    guess = offline_code(acct, ce_id)
    assert guess != code
    st, body, _ = unlock(p, acct, guess)
    assert st == 403 and body["error"] == "wrong_code", (st, body)
    assert support_account(p, acct)["locked"] is True
    assert unlock(p, acct, code)[0] == 200


# ---- item 5: the status API takes a token and tells login servers whom to admit ----

@with_product
def test_status_api_without_a_token_is_401(p):
    acct = account("status")
    set_policy(p, acct, "block_abroad", allowed=[{"country": "JP",
                                                   "until": "2099-01-01T00:00:00Z"}])
    url = f"{p.url('guard')}/v1/accounts/{acct}/status"
    for headers in ({}, auth("dev-login-token"), auth("guess"), auth(token("player", "other"))):
        st, body, _ = harness.http("GET", url + "?ip=8.8.8.8", headers=headers)
        assert st in (401, 403) and "allowed_countries" not in body, (headers, st, body)
        assert "JP" not in str(body)
    assert harness.http("GET", url)[0] == 401
    st, body, _ = harness.http("GET", url + "?ip=8.8.8.8", headers=auth("dev-status-token"))
    assert st == 200 and (body["admit"], body["reason"]) == (False, "blocked_abroad"), body
    assert "allowed_countries" not in body  # a login server does not learn the player's trips


def run_loginsim(p, count, abroad_share):
    sim = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": p.publisher.url + "/v1/topics/login/events",
        "status_url": p.url("guard"), "rate": 200, "count": count, "accounts": 1,
        "abroad_share": abroad_share, "threads": 2, "game_url": p.url("gamesim")})
    harness.wait_for(lambda: sim.popen.poll() is not None, 60, what="loginsim finished")
    assert sim.popen.returncode == 0, sim.log()
    summary = [line for line in sim.log().splitlines() if line.startswith('{"accepted"')]
    assert len(summary) == 1, sim.log()
    import json
    return json.loads(summary[0])


@with_product
def test_loginsim_refuses_what_guard_refuses(p):
    acct = "user-00001"  # loginsim's only account with accounts = 1 (no other test uses it)
    set_policy(p, acct, "lock")
    st, body = p.publish(product.login(acct, US_IP))
    assert st == 202, (st, body)
    harness.wait_for(lambda: support_account(p, acct)["locked"], 60, what=f"{acct} locked")
    before = len(history_now(p, acct))
    out = run_loginsim(p, 20, 0.5)
    assert (out["accepted"], out["refused"], out["failed"]) == (0, 20, 0), out
    # unlocked and blocked abroad: the home logins pass, the ones from abroad do not
    st, body, _ = harness.http("POST", f"{p.url('guard')}/v1/support/accounts/{acct}/unlock",
                               {"reason": "test"}, headers=auth(token("staff", "sec-sam")))
    assert st == 200, (st, body)
    set_policy(p, acct, "block_abroad")
    out = run_loginsim(p, 40, 0.5)
    assert out["accepted"] + out["refused"] == 40 and out["failed"] == 0, out
    assert out["accepted"] > 0 and out["refused"] > 0, out
    harness.wait_for(lambda: len(history_now(p, acct)) == before + out["accepted"], 60,
                     what="the admitted logins in history")
    rows = history_now(p, acct).values()
    assert sum(r["country"] != "KR" for r in rows) == 1, rows  # only the login that locked it


# ---- item 6: settings a hijacker cannot quietly change ----

def put(p, acct, what, body, tok):
    return harness.http("PUT", f"{p.url('guard')}/v1/accounts/{acct}/{what}", body,
                        headers=auth(tok))


@with_product
def test_hijacker_cannot_quietly_switch_protection_off(p):
    """The a33fd25 attack: with the player's token, while the account is locked, set the
    attacker's email and phone and the policy to none with the attacker's country allowed."""
    acct = account("hijack")
    tok = token("player", acct)  # what the hijacker holds
    owner = f"{acct}@example.com"
    p.set_email(acct, tok)
    set_policy(p, acct, "lock", channels=("email", "ingame"))
    st, body = p.publish(product.login(acct, US_IP))
    assert st == 202, (st, body)
    harness.wait_for(lambda: support_account(p, acct)["locked"], 60, what=f"{acct} locked")
    # while locked: 423 for contacts, 423 for a weaker policy, nothing changed
    st, body, _ = put(p, acct, "contacts", {"email": "me@attacker.example",
                                             "phone": "+15550001111"}, tok)
    assert st == 423 and body["error"] == "locked", (st, body)
    st, body, _ = put(p, acct, "policy", {"action": "none", "channels": ["ingame"],
                                           "allowed_countries": ["US"]}, tok)
    assert st == 423 and body["error"] == "locked", (st, body)
    st, body, _ = put(p, acct, "policy", {"action": "lock", "channels": ["email", "ingame"],
                                           "allowed_countries": ["US"]}, tok)
    assert st == 423, (st, body)
    seen = support_account(p, acct)
    assert seen["contacts"]["email"] == owner and seen["policy"] == "lock", seen
    assert seen["allowed_countries"] == [], seen
    # support unlocks: the player is told, on the email in effect and in game
    st, body, _ = harness.http("POST", f"{p.url('guard')}/v1/support/accounts/{acct}/unlock",
                               {"reason": "caller knew the birth date"},
                               headers=auth(token("staff", "sec-sam")))
    assert st == 200, (st, body)
    harness.wait_for(lambda: p.emails_to(owner, ["staff_unlock"]), 60,
                     what="the staff unlock told to the owner's email")
    # unlocked, the new email does not take effect without the code sent to it, and the
    # owner's address hears of the attempt at once
    st, body, _ = put(p, acct, "contacts", {"email": "me@attacker.example"}, tok)
    assert st == 202 and body["pending"] == ["email"], (st, body)
    assert support_account(p, acct)["contacts"]["email"] == owner
    told = harness.wait_for(lambda: p.emails_to(owner, ["contact_changed"]), 60,
                            what="the old address told of the change")
    assert "m***@attacker.example" in told[0], told[0]
    st, body, _ = harness.http("POST", f"{p.url('guard')}/v1/accounts/{acct}/contacts/confirm",
                               {"channel": "email", "code": "12345678"}, headers=auth(tok))
    assert st in (403, 409) and support_account(p, acct)["contacts"]["email"] == owner
    # support sees every step
    st, body, _ = harness.http("GET", f"{p.url('guard')}/v1/support/audit?account_id={acct}",
                               headers=auth(token("staff", "sec-sam")))
    steps = [(e["actor"], e["action"]) for e in reversed(body["entries"])]
    assert steps == [("player", "contact_change_requested"), ("player", "contact_confirmed"),
                     ("player", "policy_changed"), ("staff", "unlock"),
                     ("player", "contact_change_requested")], steps


@with_product
def test_lock_policy_without_a_verified_channel_is_422(p):
    """a33fd25 accepted a lock whose code could reach nobody (make run's own example did it)."""
    acct = account("nochan")
    tok = token("player", acct)
    st, body, _ = put(p, acct, "policy", {"action": "lock", "channels": ["email"]}, tok)
    assert st == 422 and body["error"] == "channel_unverified", (st, body)
    assert body["missing"] == ["email"] and "email" in body["message"], body
    # asking for an email is not enough: only the confirmed one counts
    assert put(p, acct, "contacts", {"email": f"{acct}@example.com"}, tok)[0] == 202
    assert put(p, acct, "policy", {"action": "lock", "channels": ["email"]}, tok)[0] == 422
    assert put(p, acct, "policy", {"action": "lock", "channels": ["ingame"]}, tok)[0] == 200
