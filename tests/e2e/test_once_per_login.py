"""Once per login, as the player sees it (issue 21): an input of a streaming route delivered
again yields outputs with the same ids, so the consumers that act on the world (notify's
messages, gamesim's kicks) act once.

The whole product (tests/lib/product.py); the redelivery is made the way the bus makes one: the
record guard already handled is in the topic again with its own key, headers and value (as after
a crash before its commit), and the dispatcher delivers it to guard a second time."""
import glob
import json
import os
import subprocess
import uuid

import harness
import product

US_IP = "8.8.8.8"


def _token(role, subject):
    r = subprocess.run([harness.bin_path("mktoken"), role, subject], capture_output=True,
                       text=True, env={"AUTH_SECRET": product.AUTH_SECRET}, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _setup_account(p, acct, action):
    auth = {"Authorization": "Bearer " + _token("player", acct)}
    st, body, _ = harness.http("PUT", f"{p.url('guard')}/v1/accounts/{acct}/contacts",
                               {"email": f"{acct}@example.com"}, headers=auth)
    assert st == 200, (st, body)
    st, body, _ = harness.http("PUT", f"{p.url('guard')}/v1/accounts/{acct}/policy",
                               {"action": action, "channels": ["email", "ingame"]}, headers=auth)
    assert st == 200, (st, body)


def _received(p, what, acct):
    st, body, _ = harness.http("GET", f"{p.url('gamesim')}/v1/received",
                               headers=getattr(product, "GAMESIM_AUTH", None))
    assert st == 200, (st, body)
    return [x for x in body[what] if x.get("account_id") == acct]


def _emails_to(p, acct):
    return [path for path in glob.glob(os.path.join(p.outbox, "*.eml"))
            if f"To: {acct}@example.com" in open(path, errors="replace").read()]


def _records(p, topic, pred):
    """The records of topic (from the beginning) whose JSON value satisfies pred."""
    out = []
    for partition in range(product.bus_topics()[topic]):
        fmt = "%o\\t%k\\t%h\\t%s\\n"
        raw = harness.kcat(["-C", "-b", p.broker.bootstrap, "-t", topic, "-p", str(partition),
                            "-o", "beginning", "-e", "-q", "-f", fmt]).decode()
        for line in raw.splitlines():
            offset, key, hdrs, value = line.split("\t", 3)
            try:
                doc = json.loads(value)
            except ValueError:
                continue
            if pred(doc):
                headers = dict(kv.split("=", 1) for kv in hdrs.split(",") if "=" in kv)
                out.append({"partition": partition, "offset": int(offset), "key": key,
                            "headers": headers, "value": value, "doc": doc})
    return out


def test_redelivered_guard_input_kicks_and_notifies_once():
    ctx = harness.ctx()
    p = product.start(ctx, retry_max_ms=1000)
    acct = f"once-{uuid.uuid4().hex[:8]}"
    _setup_account(p, acct, "kick")
    st, body = p.publish(product.login(acct, US_IP))
    assert st == 202, (st, body)
    login_id = body["id"]
    harness.wait_for(lambda: _received(p, "kicks", acct), 60, what="the kick")
    harness.wait_for(lambda: _received(p, "messages", acct), 60, what="the in-game message")
    harness.wait_for(lambda: _emails_to(p, acct), 60, what="the email")

    checked = _records(p, "login.checked", lambda d: d.get("account_id") == acct)
    assert len(checked) == 1, checked
    rec = checked[0]
    actions = _records(p, "account.action", lambda d: d.get("account_id") == acct)
    assert len(actions) == 1, actions
    first_id = actions[0]["headers"]["ce-id"]

    # guard's input again, as the dispatcher sees a redelivery: same key, headers and value.
    args = ["-P", "-b", p.broker.bootstrap, "-t", "login.checked", "-p", str(rec["partition"]),
            "-k", rec["key"]]
    for k, v in rec["headers"].items():
        args += ["-H", f"{k}={v}"]
    harness.kcat(args, input_bytes=rec["value"].encode() + b"\n")

    # guard answered from its stored decision: a second account.action, with the same id.
    harness.wait_for(lambda: len(_records(p, "account.action",
                                          lambda d: d.get("account_id") == acct)) == 2,
                     60, what="the redelivered login's account.action")
    again = _records(p, "account.action", lambda d: d.get("account_id") == acct)
    assert [a["headers"]["ce-id"] for a in again] == [first_id, first_id], again
    assert again[1]["headers"].get("causation-id") == rec["headers"]["ce-id"], again

    # Every route reading account.action has taken the copy in and finished it ...
    routes = ("notify-actions", "gamesim-kick", "history-actions")
    harness.wait_for(lambda: all(p.route_lag().get(r, 1) == 0 for r in routes), 60,
                     what=f"routes {routes} caught up")
    # ... and the player got one kick, one in-game message and one email.
    kicks = _received(p, "kicks", acct)
    assert len(kicks) == 1 and kicks[0]["login_id"] == login_id, kicks
    assert len(_received(p, "messages", acct)) == 1, _received(p, "messages", acct)
    assert len(_emails_to(p, acct)) == 1, _emails_to(p, acct)
