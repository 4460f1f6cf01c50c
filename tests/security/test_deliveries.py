"""Signed deliveries (docs/security.md, docs/bus.md "Signatures"): every receiver refuses an
unsigned, wrongly signed or stale delivery, and a recorded delivery replayed, as it was or under
another event id.

On a33fd25 a service without BUS_SIGNING_SECRET accepted unsigned deliveries (an unsigned POST to
guard locked an account), and the signature covered the body only: the same body re-sent with a
new ce-id was processed again.
"""
import datetime
import json
import os
import time
import uuid

import harness
import pg
import product
import tokens
from tokens import AUTH, BUS


def iso_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def checked_login(account):
    return {"account_id": account, "ip": "11.2.3.4", "ts": iso_now(), "session_id": "s-1",
            "server": "eu-1", "client": "pc", "login_id": str(uuid.uuid4()), "country": "DE"}


def test_every_receiver_refuses_unsigned_wrongly_signed_and_stale_deliveries():
    ctx = harness.ctx()
    p = product.start(ctx)
    secret = p.signing_secret
    endpoints = []  # every route of the repository's bus configuration, at its test port
    for path in sorted(os.listdir(p.bus_dir)):
        doc = json.load(open(os.path.join(p.bus_dir, path)))
        endpoints += [(r["name"], r["endpoint"], r["topic"]) for r in doc.get("routes", [])]
    assert len(endpoints) >= 6, endpoints
    now = int(time.time())
    for name, url, topic in endpoints:
        body = json.dumps(checked_login("sec-" + name)).encode()
        event_id = str(uuid.uuid4())
        cases = {
            "unsigned": harness.delivery_headers(None, body, event_id, topic),
            "another key": harness.delivery_headers("not-the-bus-key", body, event_id, topic),
            "stale": harness.delivery_headers(secret, body, event_id, topic,
                                              timestamp=now - 6 * 60),
            "future": harness.delivery_headers(secret, body, event_id, topic,
                                               timestamp=now + 6 * 60),
        }
        for case, headers in cases.items():
            st, resp, _ = harness.http("POST", url, raw=body, headers=headers)
            assert st == 401, (name, case, st, resp)
            assert resp["error"] in ("bad_signature", "stale_signature"), (name, case, resp)
    # Nothing of it reached history: no login of any of those accounts.
    rows = p.psql("SELECT count(*) FROM history.logins WHERE account_id LIKE 'sec-%'")
    assert rows == [["0"]], rows


def _history(ctx):
    url = pg.fresh_db()
    svc = ctx.start("history", config={"database_url": url, "batch_wait_ms": 5},
                    env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                         "HISTORY_DATABASE_URL": url}, ready_path="/readyz")
    return svc, url


def _logins(svc, account):
    st, body, _ = harness.http("GET", f"{svc.url}/v1/accounts/{account}/logins",
                               headers=tokens.auth(tokens.token("staff", "sec")))
    assert st == 200, (st, body)
    return body["logins"]


def test_a_replayed_delivery_is_refused_and_does_nothing():
    ctx = harness.ctx()
    svc, _ = _history(ctx)
    url = svc.url + "/v1/deliveries/login.checked"
    ev = checked_login("replayed-1")
    body = json.dumps(ev).encode()
    event_id = str(uuid.uuid4())
    recorded = harness.delivery_headers(BUS, body, event_id, "login.checked")
    st, resp, _ = harness.http("POST", url, raw=body, headers=recorded)
    assert 200 <= st < 300, (st, resp)
    # The same request again (a recording): refused, retryable for a sender that meant it.
    st, resp, h = harness.http("POST", url, raw=body, headers=recorded)
    assert st == 429 and resp["error"] == "replayed" and h.get("retry-after"), (st, resp)
    # Under another event id (the attack of a33fd25): still the recorded pair, or a signature
    # that does not cover the new id.
    st, resp, _ = harness.http("POST", url, raw=body,
                               headers=dict(recorded, **{"ce-id": str(uuid.uuid4())}))
    assert st == 429, (st, resp)
    st, resp, _ = harness.http("POST", url, raw=body,
                               headers=dict(recorded, **{"ce-id": "x-1", "webhook-id": "x-1"}))
    assert st == 401 and resp["error"] == "bad_signature", (st, resp)
    # A delivery caught before it arrived, sent under another ce-id: the signed id is not it.
    caught = harness.delivery_headers(BUS, body, str(uuid.uuid4()), "login.checked")
    st, resp, _ = harness.http("POST", url, raw=body,
                               headers=dict(caught, **{"ce-id": str(uuid.uuid4())}))
    assert st == 401 and resp["error"] == "bad_signature", (st, resp)
    # Another body under the recorded signature: refused.
    other_body = json.dumps(dict(ev, login_id=str(uuid.uuid4()))).encode()
    st, resp, _ = harness.http("POST", url, raw=other_body, headers=recorded)
    assert st == 401, (st, resp)
    assert len(_logins(svc, "replayed-1")) == 1
    # A retry as the dispatcher makes it (same event, a new timestamp, signed afresh) is a
    # delivery: accepted, and the service's own deduplication by event id keeps one row.
    retry = harness.delivery_headers(BUS, body, event_id, "login.checked")
    assert retry["webhook-timestamp"] != recorded["webhook-timestamp"]
    st, resp, _ = harness.http("POST", url, raw=body, headers=retry)
    assert 200 <= st < 300, (st, resp)
    assert len(_logins(svc, "replayed-1")) == 1


def test_a_replayed_batch_is_refused():
    ctx = harness.ctx()
    svc, _ = _history(ctx)
    url = svc.url + "/v1/deliveries/login.checked"
    elements = [{"specversion": "1.0", "id": str(uuid.uuid4()), "type": "login.checked",
                 "source": "test", "data": checked_login("replayed-2")} for _ in range(3)]
    body = json.dumps(elements).encode()
    recorded = harness.delivery_headers(BUS, body, elements[0]["id"], batch=True)
    st, resp, _ = harness.http("POST", url, raw=body, headers=recorded)
    assert 200 <= st < 300, (st, resp)
    st, resp, _ = harness.http("POST", url, raw=body, headers=recorded)
    assert st == 429, (st, resp)
    unsigned = harness.delivery_headers(None, body, elements[0]["id"], batch=True)
    st, resp, _ = harness.http("POST", url, raw=body, headers=unsigned)
    assert st == 401, (st, resp)
    assert len(_logins(svc, "replayed-2")) == 3
