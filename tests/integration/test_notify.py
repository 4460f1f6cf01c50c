"""notify: email over a real SMTP conversation (a small SMTP server in the test), SMS and in-game
at the gamesim stub, once-only sending, provider outage answered 503 then sent on retry."""
import glob
import json
import os
import socketserver
import threading
import uuid

import harness
import pg
import sealed
from tokens import BUS



class SmtpSink:
    """A minimal SMTP server (RFC 5321 commands HELO/EHLO, MAIL, RCPT, DATA, QUIT) recording
    (mail_from, rcpts, data) tuples."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                def say(line):
                    self.wfile.write((line + "\r\n").encode())
                    self.wfile.flush()
                say("220 sink ESMTP")
                mail_from, rcpts = None, []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    cmd = line.decode(errors="replace").strip()
                    up = cmd.upper()
                    if up.startswith("EHLO"):
                        say("250-sink")
                        say("250 8BITMIME")
                    elif up.startswith("HELO"):
                        say("250 sink")
                    elif up.startswith("MAIL FROM:"):
                        mail_from, rcpts = cmd[10:].strip(), []
                        say("250 ok")
                    elif up.startswith("RCPT TO:"):
                        rcpts.append(cmd[8:].strip())
                        say("250 ok")
                    elif up == "DATA":
                        say("354 go ahead")
                        data = []
                        while True:
                            dl = self.rfile.readline()
                            if not dl or dl in (b".\r\n", b".\n"):
                                break
                            data.append(dl)
                        with sink.lock:
                            sink.messages.append((mail_from, rcpts,
                                                  b"".join(data).decode(errors="replace")))
                        say("250 queued")
                    elif up == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

GS_AUTH = {"Authorization": "Bearer dev-only-gamesim-admin-token"}  # the development token


def start_gamesim():
    return harness.ctx().start("gamesim", env={"BUS_SIGNING_SECRET": ""})


def start_notify(db_url, gamesim, **cfg):
    config = {"database_url": db_url, "sms_url": f"{gamesim.url}/v1/sms",
              "game_url": gamesim.url, "provider_timeout_ms": 2000}
    config.update(cfg)
    return harness.ctx().start("notify", config=config,
                               env={"BUS_SIGNING_SECRET": BUS, "NOTIFY_DATABASE_URL": db_url},
                               ready_path="/readyz")


def deliver(svc, topic, event, ce_id=None, secret=BUS):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(secret, body, ce_id or str(uuid.uuid4()), topic,
                                       {"ce-source": "test"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/{topic}", raw=body, headers=headers)


def received(gamesim):
    st, body, _ = harness.http("GET", f"{gamesim.url}/v1/received", headers=GS_AUTH)
    assert st == 200
    return body


def lock_action(account="n1", channels=("email", "sms", "ingame")):
    return {"account_id": account, "action": "lock", "login_id": str(uuid.uuid4()),
            "country": "US", "ip": "11.2.3.4", "ts": "2026-11-25T06:00:00Z", "server": "kr-1",
            "session_id": "s1", "channels": list(channels),
            "contacts": {"email": "player@example.com", "phone": "+821012345678"},
            "sealed_code": sealed.seal("12345678", "unlock\n" + account)}


def test_lock_code_on_every_channel_once():
    sink = SmtpSink()
    try:
        gs = start_gamesim()
        svc = start_notify(pg.fresh_db(), gs, smtp_url=f"smtp://127.0.0.1:{sink.port}")
        ev = lock_action()
        ce = str(uuid.uuid4())
        st, body, _ = deliver(svc, "account.action", ev, ce_id=ce)
        assert st == 200 and body["sent"] == 3, (st, body)
        assert len(sink.messages) == 1
        mail_from, rcpts, data = sink.messages[0]
        assert rcpts == ["<player@example.com>"] and "security@" in mail_from
        assert "12345678" in data and "미국" in data  # the country named (Korean by default)
        r = received(gs)
        assert len(r["sms"]) == 1 and r["sms"][0]["to"] == "+821012345678"
        assert "12345678" in r["sms"][0]["text"]
        assert len(r["messages"]) == 1 and r["messages"][0]["account_id"] == "n1"
        # the same event again: nothing is sent twice
        st, body, _ = deliver(svc, "account.action", ev, ce_id=ce)
        assert st == 200 and body["sent"] == 0
        assert len(sink.messages) == 1
        r = received(gs)
        assert len(r["sms"]) == 1 and len(r["messages"]) == 1
        # the code never reaches the log
        assert "12345678" not in svc.log()
    finally:
        sink.close()


def test_provider_down_then_retry_sends_rest_once():
    sink = SmtpSink()
    try:
        gs = start_gamesim()
        svc = start_notify(pg.fresh_db(), gs, smtp_url=f"smtp://127.0.0.1:{sink.port}")
        assert harness.http("POST", f"{gs.url}/v1/fail", {"count": 1},
                            headers=GS_AUTH)[0] == 204
        ev = lock_action(channels=["email", "sms"])
        ce = str(uuid.uuid4())
        st, _, hdrs = deliver(svc, "account.action", ev, ce_id=ce)
        assert st == 503 and hdrs.get("retry-after")
        assert len(sink.messages) == 1  # email went out, SMS failed
        assert received(gs)["sms"] == []
        st, body, _ = deliver(svc, "account.action", ev, ce_id=ce)  # the bus retries
        assert st == 200 and body["sent"] == 1
        assert len(sink.messages) == 1 and len(received(gs)["sms"]) == 1
    finally:
        sink.close()


def test_smtp_down_is_503():
    gs = start_gamesim()
    port = harness.free_port()  # nothing listens there
    svc = start_notify(pg.fresh_db(), gs, smtp_url=f"smtp://127.0.0.1:{port}")
    st, _, _ = deliver(svc, "account.action", lock_action(channels=["email"]))
    assert st == 503


def test_outbox_files_and_campaign_ingame():
    gs = start_gamesim()
    outbox = harness.ctx().path("outbox")
    svc = start_notify(pg.fresh_db(), gs, outbox_dir=outbox)
    ev = dict(lock_action(channels=["email"]), action="notify")
    del ev["sealed_code"]
    assert deliver(svc, "account.action", ev)[0] == 200
    files = glob.glob(os.path.join(outbox, "*.eml"))
    assert len(files) == 1
    text = open(files[0], encoding="utf-8").read()
    assert "To: player@example.com" in text and "11.2.3.4" in text
    note = {"account_id": "c1", "kind": "campaign_password", "channels": ["ingame"],
            "params": {"campaign": "password-2026"}, "dedupe_key": "password-2026/c1"}
    assert deliver(svc, "notification", note)[0] == 200
    assert deliver(svc, "notification", note)[0] == 200  # another event id, same dedupe key
    msgs = [m for m in received(gs)["messages"] if m["account_id"] == "c1"]
    assert len(msgs) == 1 and msgs[0]["kind"] == "campaign_password"
    assert "비밀번호" in msgs[0]["text"]  # Korean by default
    assert deliver(svc, "notification", dict(note, kind="no_such_kind"))[0] == 422
    assert deliver(svc, "notification", note, secret=None)[0] == 401


def test_lock_code_opened_only_with_the_right_key_and_account():
    """A lock's code comes sealed by guard: notify opens it with a key of its ring (rotation:
    any listed key id), for the event's account only, and refuses anything else (dead letter)
    without sending or logging a code."""
    gs = start_gamesim()
    old, new = "k1:the-old-key-of-at-least-thirty-two-bytes", "k2:the-new-key-of-thirty-two-bytes!!"
    svc = start_notify(pg.fresh_db(), gs, seal_keys=new + "," + old)
    for keys, code in ((old, "11112222"), (new, "33334444")):
        ev = dict(lock_action("r1", channels=["ingame"]),
                  sealed_code=sealed.seal(code, "unlock\nr1", keys))
        st, body, _ = deliver(svc, "account.action", ev)
        assert st == 200 and body["sent"] == 1, (st, body)
        assert code in received(gs)["messages"][-1]["text"]
    cases = [
        ("bad_seal", sealed.seal("55556666", "unlock\nsomeone-else", new)),  # another account
        ("bad_seal", sealed.seal("55556666", "unlock\nr1", "k2:not-the-key-notify-holds-at-all")),
        ("unknown_seal_key", sealed.seal("55556666", "unlock\nr1", "k9:a-key-id-notify-has-not")),
        ("bad_seal", "55556666"),
        ("bad_seal", None),
    ]
    for code, value in cases:
        ev = lock_action("r1", channels=["ingame"])
        ev.pop("sealed_code")
        if value:
            ev["sealed_code"] = value
        else:
            ev["code"] = "55556666"  # a code in the clear is not taken
        st, body, _ = deliver(svc, "account.action", ev)
        assert st == 422 and body["error"] == code, (value, st, body)
    assert len(received(gs)["messages"]) == 2
    assert "55556666" not in svc.log() and "11112222" not in svc.log()


def test_republished_decision_sent_once():
    """guard answers a redelivered login with the same decision, which the bus publishes under
    a new ce-id: the player is sent it once (dedupe on the login id, per account)."""
    gs = start_gamesim()
    svc = start_notify(pg.fresh_db(), gs)
    ev = lock_action("d1", channels=["ingame"])
    assert deliver(svc, "account.action", ev)[1]["sent"] == 1
    assert deliver(svc, "account.action", ev)[1]["sent"] == 0  # new ce-id, same decision
    # another account's decision on the same login id is its own
    other = dict(ev, account_id="d2", sealed_code=sealed.seal("12345678", "unlock\nd2"))
    assert deliver(svc, "account.action", other)[1]["sent"] == 1
    assert [m["account_id"] for m in received(gs)["messages"]] == ["d1", "d2"]


def test_contact_code_opened_only_for_its_account():
    """guard's code for a new contact comes sealed in params; only kind contact_code may carry
    one, for the event's account."""
    gs = start_gamesim()
    outbox = harness.ctx().path("outbox-cc")
    svc = start_notify(pg.fresh_db(), gs, outbox_dir=outbox)
    note = {"account_id": "cc1", "kind": "contact_code", "channels": ["email"],
            "contacts": {"email": "new@example.com"}, "lang": "en",
            "params": {"channel": "email", "sealed_code": sealed.seal("24681357", "contact\ncc1")}}
    st, body, _ = deliver(svc, "notification", note)
    assert st == 200 and body["sent"] == 1, (st, body)
    mail = open(glob.glob(os.path.join(outbox, "*.eml"))[0], encoding="utf-8").read()
    assert "confirmation code is 24681357" in mail and "X-Notify-Kind: contact_code" in mail
    for bad in (dict(note, account_id="cc2"),  # sealed for another account
                dict(note, params={"channel": "email"}),  # no code
                dict(note, kind="settings_changed")):  # a kind that carries no code
        st, body, _ = deliver(svc, "notification", bad)
        assert st == 422 and body["error"] == "bad_seal", (bad, st, body)
    assert "24681357" not in svc.log()


def test_alert_in_the_players_language_zone_and_with_the_answer_link():
    """An account.action from guard names the player's language, carries the login's time in
    their zone and the "was it you?" link sealed for notify: the message shows the country's
    name, that time and the link; a "not me" answer's event is told as not_me_locked/ended."""
    gs = start_gamesim()
    svc = start_notify(pg.fresh_db(), gs)
    link = "https://play.example/#answer=" + "ab" * 32
    ev = dict(lock_action("n7", channels=["ingame"]), action="notify", country="JP", lang="en",
              local_time="2026-11-25 01:00 (UTC-05:00)",
              sealed_answer=sealed.seal(link, "answer\nn7"))
    del ev["sealed_code"]
    st, body, _ = deliver(svc, "account.action", ev)
    assert st == 200 and body["sent"] == 1, (st, body)
    msg = [m for m in received(gs)["messages"] if m["account_id"] == "n7"][-1]
    assert "Japan" in msg["text"] and "2026-11-25 01:00 (UTC-05:00)" in msg["text"], msg
    assert link in msg["text"] and "Was it you?" in msg["text"], msg
    assert link not in svc.log()
    ko = dict(ev, lang="ko", login_id=str(uuid.uuid4()))
    assert deliver(svc, "account.action", ko)[0] == 200
    msg = [m for m in received(gs)["messages"] if m["account_id"] == "n7"][-1]
    assert "일본" in msg["text"] and "본인이 맞나요?" in msg["text"], msg
    # sealed for another account: refused, nothing sent
    bad = dict(ev, login_id=str(uuid.uuid4()), sealed_answer=sealed.seal(link, "answer\nother"))
    st, err, _ = deliver(svc, "account.action", bad)
    assert st == 422 and err["error"] == "bad_seal", (st, err)
    # the answer "not me": told as what guard did
    nm = dict(lock_action("n7", channels=["ingame"]), lang="en", answer="not_me",
              reasons=["not_me"], login_id=ev["login_id"])
    assert deliver(svc, "account.action", nm)[0] == 200
    msg = [m for m in received(gs)["messages"] if m["account_id"] == "n7"][-1]
    assert msg["kind"] == "not_me_locked" and "12345678" in msg["text"], msg
    kick = dict(nm, action="kick", login_id=str(uuid.uuid4()))
    del kick["sealed_code"]
    assert deliver(svc, "account.action", kick)[0] == 200
    msg = [m for m in received(gs)["messages"] if m["account_id"] == "n7"][-1]
    assert msg["kind"] == "not_me_ended" and "ended every session" in msg["text"], msg


def test_retention_trims_the_sent_log():
    url = pg.fresh_db()
    gs = start_gamesim()
    svc = start_notify(url, gs, retention={"interval_s": 1, "batch_rows": 2, "sent_days": 30})
    db = url.rsplit("/", 1)[1]
    values = ", ".join(f"('k{i}', 'ingame', 'acct-r', 'kicked', now() - interval '{age} days')"
                       for i, age in enumerate([90, 90, 90, 31, 29, 0]))
    pg.cluster().psql(db, "INSERT INTO notify.sent (dedupe_key, channel, account_id, kind, sent_at) "
                          f"VALUES {values}")

    def keys():
        return sorted(r[0] for r in pg.cluster().psql(db, "SELECT dedupe_key FROM notify.sent"))
    harness.wait_for(lambda: keys() == ["k4", "k5"], timeout=20, what="sent log trimmed")
    assert "retention: deleted 4 row(s) of notify.sent older than 30 days" in svc.log()
