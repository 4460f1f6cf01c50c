"""campaign: the first login of a listed account answers one notification; nothing else does."""
import json
import re
import uuid

import jsonschema

import harness
import pg
from tokens import BUS



def start(db_url, accounts, **config):
    path = harness.ctx().path(f"list-{uuid.uuid4().hex[:6]}.txt")
    with open(path, "w") as f:
        f.write("# test list\n" + "".join(a + "\n" for a in accounts) + "\n")
    return harness.ctx().start("campaign",
                               config={"database_url": db_url, "list_file": path, **config},
                               env={"BUS_SIGNING_SECRET": BUS, "CAMPAIGN_DATABASE_URL": db_url},
                               ready_path="/readyz")


def deliver(svc, account, ce_id=None, secret=BUS):
    body = json.dumps({"account_id": account, "ip": "1.2.3.4",
                       "ts": "2026-11-25T06:00:00Z"}).encode()
    headers = harness.delivery_headers(secret, body, ce_id or str(uuid.uuid4()), "login",
                                       {"ce-source": "test"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/login", raw=body, headers=headers)


def memory_answers(svc):
    st, text, _ = harness.http("GET", svc.url + "/metrics")
    assert st == 200
    m = re.search(r"^campaign_memory_answers_total (\d+)", text, re.M)
    return int(m.group(1))


def test_once_per_listed_account():
    once_per_listed_account(start(pg.fresh_db(), ["p1", "p2"]))


def test_once_per_listed_account_without_memory():
    svc = start(pg.fresh_db(), ["p1", "p2"], cache_max=0)
    once_per_listed_account(svc)
    assert memory_answers(svc) == 0


def once_per_listed_account(svc):
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


def test_memory_answers_and_rows_added_by_hand():
    """Unlisted accounts and later logins are answered from memory; accounts added to
    campaign.targets by hand are picked up at the next refresh."""
    url = pg.fresh_db()
    svc = start(url, ["p1"], targets_refresh_s=1)
    before = memory_answers(svc)
    assert deliver(svc, "nobody")[0] == 204
    assert memory_answers(svc) == before + 1
    first = str(uuid.uuid4())
    assert deliver(svc, "p1", ce_id=first)[0] == 200    # the database decides
    assert deliver(svc, "p1")[0] == 204                 # memory: notified by another login
    assert deliver(svc, "p1", ce_id=first)[0] == 200    # memory: the same login again
    assert memory_answers(svc) == before + 3
    pg.cluster().psql(url.rsplit("/", 1)[1], "INSERT INTO campaign.targets (campaign, account_id) "
                      "VALUES ('password-2026', 'late')")
    harness.wait_for(lambda: deliver(svc, "late")[0] == 200, 15,
                     "an account added by hand is picked up")


def test_two_processes_share_the_database():
    """What one process notified, another answers the same way: its memory only skips work."""
    url = pg.fresh_db()
    a, b = start(url, ["p1"]), start(url, ["p1"])
    first = str(uuid.uuid4())
    st, body, _ = deliver(a, "p1", ce_id=first)
    assert st == 200
    assert deliver(b, "p1")[0] == 204                   # b learns from the database
    assert deliver(b, "p1", ce_id=first)[:2] == (200, body)
    assert deliver(a, "p1")[0] == 204


BATCH_TYPE = "application/cloudevents-batch+json"


def deliver_batch(svc, logins, secret=BUS):
    """POSTs (account, login id) pairs as one signed batch (CloudEvents batched content mode), as
    a route with "batch" > 1 does."""
    body = json.dumps([{"specversion": "1.0", "id": login_id, "type": "login", "source": "test",
                        "time": "2026-11-25T06:00:00Z",
                        "data": {"account_id": account, "ip": "1.2.3.4",
                                 "ts": "2026-11-25T06:00:00Z"}}
                       for account, login_id in logins]).encode()
    headers = harness.delivery_headers(secret, body, logins[0][1], batch=True)
    return harness.http("POST", f"{svc.url}/v1/deliveries/login", raw=body, headers=headers)


def batch_notifies_once(url, svc):
    logins = [("p1", str(uuid.uuid4())), ("p1", str(uuid.uuid4())),
              ("nobody", str(uuid.uuid4()))]
    st, body, _ = deliver_batch(svc, logins)
    assert st == 200, (st, body)
    assert isinstance(body, list) and len(body) == 3, body
    assert body[1] is None and body[2] is None, body
    assert body[0]["account_id"] == "p1" and body[0]["kind"] == "campaign_password", body
    jsonschema.validate(body[0], json.load(open(harness.ROOT +
                                                "/config/schema/events/notification.json")))
    # the same batch redelivered (its answer may have been lost): the same answer, no new message
    assert deliver_batch(svc, logins)[:2] == (200, body)
    assert pg.cluster().psql(url.rsplit("/", 1)[1],
                             "SELECT count(*) FROM campaign.sent")[0][0] == "1"
    # one by one, as the bus would redeliver a refused batch: the same decisions
    assert deliver(svc, "p1", ce_id=logins[0][1])[:2] == (200, body[0])
    assert deliver(svc, "p1", ce_id=logins[1][1])[0] == 204
    assert deliver(svc, "nobody", ce_id=logins[2][1])[0] == 204


def test_batch_notifies_a_listed_account_once():
    url = pg.fresh_db()
    batch_notifies_once(url, start(url, ["p1", "p2"]))


def test_batch_notifies_a_listed_account_once_without_memory():
    url = pg.fresh_db()
    svc = start(url, ["p1", "p2"], cache_max=0)
    batch_notifies_once(url, svc)
    assert memory_answers(svc) == 0


def test_batch_signature_required():
    svc = start(pg.fresh_db(), ["p1"])
    assert deliver_batch(svc, [("p1", str(uuid.uuid4()))], secret="nope")[0] == 401
