"""A campaign's email reaches the player: campaign answers a login with a notification that
carries no contacts; notify asks guard for the account's CONFIRMED contacts at send time
(GET /v1/accounts/{id}/contacts with its contacts token) and writes the email (development mail
dir) once, to the confirmed address. A pending (unconfirmed) address is never used; an account
without a confirmed email has the channel skipped and counted; guard unreachable is answered 503
(the bus retries) and the retry sends the email once. No contact ever reaches a log.

Real processes through the harness: guard, notify and campaign, each on its own database in the
run's PostgreSQL cluster; the bus's deliveries are POSTed as the dispatcher would."""
import datetime
import glob
import hashlib
import json
import os
import re
import uuid

import guard_api
import harness
import pg
from tokens import AUTH, BUS, auth, token

CONTACTS_TOKEN = "test-notify-contacts-token-0123456789abcdef"
CONTACTS_TOKENS = "notify:" + hashlib.sha256(CONTACTS_TOKEN.encode()).hexdigest()


def start_guard(db_url, port=None, publisher=None):
    pub = publisher or guard_api.Publisher()
    svc = harness.ctx().start("guard", port=port, config={
        "database_url": db_url, "home_countries": "KR", "publisher_url": pub.url,
        "contacts_tokens": CONTACTS_TOKENS},
        env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS, "GUARD_DATABASE_URL": db_url},
        ready_path="/readyz")
    svc.publisher = pub
    return svc


def start_notify(guard_url, outbox, gamesim):
    db_url = pg.fresh_db()
    return harness.ctx().start("notify", config={
        "database_url": db_url, "outbox_dir": outbox, "guard_url": guard_url,
        "guard_contacts_token": CONTACTS_TOKEN, "sms_url": f"{gamesim.url}/v1/sms",
        "game_url": gamesim.url, "provider_timeout_ms": 2000},
        env={"BUS_SIGNING_SECRET": BUS, "NOTIFY_DATABASE_URL": db_url}, ready_path="/readyz")


def start_campaign(accounts, channels):
    db_url = pg.fresh_db()
    path = harness.ctx().path(f"list-{uuid.uuid4().hex[:6]}.txt")
    with open(path, "w") as f:
        f.write("".join(a + "\n" for a in accounts))
    return harness.ctx().start("campaign", config={
        "database_url": db_url, "list_file": path, "channels": channels},
        env={"BUS_SIGNING_SECRET": BUS, "CAMPAIGN_DATABASE_URL": db_url}, ready_path="/readyz")


def post_delivery(svc, topic, event, ce_id=None):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(BUS, body, ce_id or str(uuid.uuid4()), topic,
                                       {"ce-source": "test"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/{topic}", raw=body, headers=headers)


def campaign_notification(campaign, account):
    """The notification campaign answers for the account's login (its streaming route's
    output)."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    st, body, _ = post_delivery(campaign, "login", {"account_id": account, "ip": "1.2.3.4",
                                                    "ts": now.replace("+00:00", "Z")})
    assert st == 200 and body and body["account_id"] == account, (st, body)
    assert "contacts" not in body
    return body


def confirm(guard, account, contacts):
    return guard_api.set_contacts(guard.url, account, token("player", account), contacts,
                                  lambda ch: guard.publisher.contact_code(account, ch))


def ask_pending(guard, account, contacts):
    """PUTs a contact change without confirming it (it stays pending)."""
    st, body, _ = harness.http("PUT", f"{guard.url}/v1/accounts/{account}/contacts", contacts,
                               headers=auth(token("player", account)))
    assert st == 202, (st, body)


def mails(outbox):
    out = []
    for f in sorted(glob.glob(os.path.join(outbox, "*.eml"))):
        text = open(f, encoding="utf-8").read()
        out.append((re.search(r"^To: (.*?)\r?$", text, re.M).group(1), text))
    return out


def skipped_email(notify):
    st, text, _ = harness.http("GET", notify.url + "/metrics")
    assert st == 200
    m = re.search(r'^notify_skipped_total\{channel="email"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def contacts_api(guard, account, tok):
    headers = {"Authorization": "Bearer " + tok} if tok else {}
    return harness.http("GET", f"{guard.url}/v1/accounts/{account}/contacts", headers=headers)


def test_contacts_api_answers_confirmed_contacts_to_its_token_only():
    guard = start_guard(pg.fresh_db())
    confirm(guard, "ca1", {"email": "ca1@example.com"})
    ask_pending(guard, "ca1", {"email": "ca1-new@example.com", "phone": "+821055550001"})
    st, body, hdrs = contacts_api(guard, "ca1", CONTACTS_TOKEN)
    assert st == 200, (st, body)
    assert body == {"account_id": "ca1", "email": "ca1@example.com", "phone": None,
                    "lang": None}, body  # the pending change is not in effect
    assert hdrs.get("cache-control") == "no-store"
    st, body, _ = contacts_api(guard, "never-seen", CONTACTS_TOKEN)
    assert st == 200 and body["email"] is None and body["phone"] is None, (st, body)
    # any other token is refused: none, a wrong one, the status API's, a player's or staff's
    for tok in (None, "wrong-token", "dev-status-token", token("player", "ca1"),
                token("staff", "st-sam")):
        st, body, _ = contacts_api(guard, "ca1", tok)
        assert st == 401 and body["error"] == "unauthorized", (tok, st, body)
    st, body, _ = contacts_api(guard, "x" * 200, CONTACTS_TOKEN)
    assert st == 400 and body["error"] == "bad_account", (st, body)
    for line in open(guard.log_path, encoding="utf-8", errors="replace"):
        assert "ca1@example.com" not in line and "ca1-new@" not in line, line


def test_malformed_contacts_tokens_refuse_the_start():
    bad = harness.ctx().start("guard", config={"database_url": pg.fresh_db(),
                                               "contacts_tokens": "notify:abc"},
                              env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS}, wait=False)
    harness.wait_for(lambda: not bad.alive(), 10, what="guard refusing its config")
    assert "contacts_tokens" in bad.log()


def test_campaign_email_goes_to_the_confirmed_address_once():
    guard = start_guard(pg.fresh_db())
    gamesim = harness.ctx().start("gamesim", env={"BUS_SIGNING_SECRET": ""})
    outbox = harness.ctx().path("outbox-" + uuid.uuid4().hex[:6])
    notify = start_notify(guard.url, outbox, gamesim)
    campaign = start_campaign(["cc-ok", "cc-changing", "cc-pending"], "email, ingame")
    # cc-ok: a confirmed email; cc-changing: confirmed, then a change asked and not confirmed;
    # cc-pending: an email asked, never confirmed
    confirm(guard, "cc-ok", {"email": "cc-ok@example.com"})
    confirm(guard, "cc-changing", {"email": "cc-changing-old@example.com"})
    ask_pending(guard, "cc-changing", {"email": "cc-changing-new@example.com"})
    ask_pending(guard, "cc-pending", {"email": "cc-pending@example.com"})

    ev = campaign_notification(campaign, "cc-ok")
    assert ev["channels"] == ["email", "ingame"]
    st, body, _ = post_delivery(notify, "notification", ev)
    assert st == 200 and body["sent"] == 2, (st, body)
    got = mails(outbox)
    assert [to for to, _ in got] == ["cc-ok@example.com"], got
    assert "비밀번호" in got[0][1]  # the deployment's default language (the player chose none)
    # the bus delivers it again (another event id, the same dedupe key): nothing sent twice
    st, body, _ = post_delivery(notify, "notification", ev)
    assert st == 200 and body["sent"] == 0, (st, body)
    assert len(mails(outbox)) == 1

    # the change asked but not confirmed: the confirmed (old) address is used
    st, body, _ = post_delivery(notify, "notification",
                                campaign_notification(campaign, "cc-changing"))
    assert st == 200 and body["sent"] == 2, (st, body)
    assert sorted(to for to, _ in mails(outbox)) == ["cc-changing-old@example.com",
                                                     "cc-ok@example.com"]

    # only a pending address: the email channel is skipped (counted), in-game still sent, 200
    before = skipped_email(notify)
    st, body, _ = post_delivery(notify, "notification",
                                campaign_notification(campaign, "cc-pending"))
    assert st == 200 and body["sent"] == 1, (st, body)
    assert skipped_email(notify) == before + 1
    assert len(mails(outbox)) == 2
    st, r, _ = harness.http("GET", f"{gamesim.url}/v1/received",
                            headers={"Authorization": "Bearer dev-only-gamesim-admin-token"})
    assert sorted(m["account_id"] for m in r["messages"]) == ["cc-changing", "cc-ok",
                                                              "cc-pending"]
    for proc in (notify, guard, campaign):
        text = open(proc.log_path, encoding="utf-8", errors="replace").read()
        assert "@example.com" not in text, f"a contact in {proc.name}'s log"


def test_guard_unreachable_is_retried_and_sent_once():
    db = pg.fresh_db()
    port = harness.free_port()
    pub = guard_api.Publisher()
    guard = start_guard(db, port=port, publisher=pub)
    gamesim = harness.ctx().start("gamesim", env={"BUS_SIGNING_SECRET": ""})
    outbox = harness.ctx().path("outbox-" + uuid.uuid4().hex[:6])
    notify = start_notify(guard.url, outbox, gamesim)
    confirm(guard, "cu1", {"email": "cu1@example.com"})
    # the player's language, as they chose it in guard: the campaign's event names none
    st, body, _ = harness.http("PUT", f"{guard.url}/v1/accounts/cu1/policy",
                               {"action": "none", "channels": ["ingame"],
                                "allowed_countries": [], "lang": "en"},
                               headers=auth(token("player", "cu1")))
    assert st == 200, (st, body)
    ev = {"account_id": "cu1", "kind": "campaign_password", "channels": ["email", "ingame"],
          "params": {"campaign": "password-2026"}, "dedupe_key": "password-2026/cu1"}
    guard.stop()
    ce = str(uuid.uuid4())
    st, body, hdrs = post_delivery(notify, "notification", ev, ce_id=ce)
    assert st == 503 and hdrs.get("retry-after"), (st, body)
    assert mails(outbox) == []  # nothing sent to a guessed address
    # the in-game message did not wait for guard
    st, r, _ = harness.http("GET", f"{gamesim.url}/v1/received",
                            headers={"Authorization": "Bearer dev-only-gamesim-admin-token"})
    assert [m["account_id"] for m in r["messages"]] == ["cu1"]
    # guard is back: the bus's retry sends the email, once
    start_guard(db, port=port, publisher=pub)
    st, body, _ = post_delivery(notify, "notification", ev, ce_id=ce)
    assert st == 200 and body["sent"] == 1, (st, body)
    st, body, _ = post_delivery(notify, "notification", ev, ce_id=ce)
    assert st == 200 and body["sent"] == 0, (st, body)
    got = mails(outbox)
    assert [to for to, _ in got] == ["cu1@example.com"], got
    assert "set a new password" in got[0][1]  # in the language the player chose
    text = open(notify.log_path, encoding="utf-8", errors="replace").read()
    assert "cu1@example.com" not in text


def test_wrong_contacts_token_is_retried_not_skipped():
    """notify holding a token guard does not list: a configuration error, answered 503 (the
    bus keeps the message) and logged, never sent elsewhere nor counted as skipped."""
    guard = start_guard(pg.fresh_db())
    gamesim = harness.ctx().start("gamesim", env={"BUS_SIGNING_SECRET": ""})
    outbox = harness.ctx().path("outbox-" + uuid.uuid4().hex[:6])
    db_url = pg.fresh_db()
    notify = harness.ctx().start("notify", config={
        "database_url": db_url, "outbox_dir": outbox, "guard_url": guard.url,
        "guard_contacts_token": "not-the-token-guard-knows-0123456789",
        "game_url": gamesim.url, "sms_url": f"{gamesim.url}/v1/sms"},
        env={"BUS_SIGNING_SECRET": BUS, "NOTIFY_DATABASE_URL": db_url}, ready_path="/readyz")
    confirm(guard, "cw1", {"email": "cw1@example.com"})
    ev = {"account_id": "cw1", "kind": "campaign_password", "channels": ["email"],
          "params": {"campaign": "password-2026"}, "dedupe_key": "password-2026/cw1"}
    st, body, _ = post_delivery(notify, "notification", ev)
    assert st == 503, (st, body)
    assert mails(outbox) == [] and skipped_email(notify) == 0
    assert "guard_contacts_token" in notify.log()
