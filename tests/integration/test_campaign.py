"""campaign: the first login of a listed account answers one notification; nothing else does."""
import hashlib
import hmac
import json
import uuid

import jsonschema

import harness
import pg

BUS = "test-bus-secret"


def start(db_url, accounts):
    path = harness.ctx().path("list.txt")
    with open(path, "w") as f:
        f.write("# test list\n" + "".join(a + "\n" for a in accounts) + "\n")
    return harness.ctx().start("campaign", config={"database_url": db_url, "list_file": path},
                               env={"BUS_SIGNING_SECRET": BUS, "CAMPAIGN_DATABASE_URL": db_url},
                               ready_path="/readyz")


def deliver(svc, account, ce_id=None, secret=BUS):
    body = json.dumps({"account_id": account, "ip": "1.2.3.4",
                       "ts": "2026-11-25T06:00:00Z"}).encode()
    headers = {"Content-Type": "application/json", "ce-id": ce_id or str(uuid.uuid4()),
               "ce-type": "login", "ce-source": "test"}
    if secret:
        headers["X-Bus-Signature"] = "sha256=" + hmac.new(secret.encode(), body,
                                                          hashlib.sha256).hexdigest()
    return harness.http("POST", f"{svc.url}/v1/deliveries/login", raw=body, headers=headers)


def test_once_per_listed_account():
    svc = start(pg.fresh_db(), ["p1", "p2"])
    first = str(uuid.uuid4())
    st, body, _ = deliver(svc, "p1", ce_id=first)
    assert st == 200, (st, body)
    assert body["account_id"] == "p1" and body["kind"] == "campaign_password"
    assert body["channels"] == ["ingame"] and body["dedupe_key"]
    jsonschema.validate(body, json.load(open(harness.ROOT +
                                             "/config/schema/events/notification.json")))
    # the same login redelivered: the same answer (the first answer may have been lost)
    assert deliver(svc, "p1", ce_id=first)[:2] == (200, body)
    assert deliver(svc, "p1")[0] == 204   # a later login
    assert deliver(svc, "nobody")[0] == 204
    assert deliver(svc, "p2")[0] == 200
    assert deliver(svc, "p2")[0] == 204


def test_signature_required():
    svc = start(pg.fresh_db(), ["p1"])
    assert deliver(svc, "p1", secret=None)[0] == 401
    assert deliver(svc, "p1", secret="nope")[0] == 401
    assert deliver(svc, "p1")[0] == 200
