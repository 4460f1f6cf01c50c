"""guard's signals: failed logins (login.failed deliveries) and brute-force throttling per account
and per address, seen by login servers in the status API; new country and impossible travel.

Deliveries are POSTed as the dispatcher would (harness.delivery_headers); each test gets a fresh
database in the run's private PostgreSQL cluster (tests/lib/pg.py)."""
import datetime
import json
import uuid

import jsonschema

import guard_api
import harness
import pg
from tokens import AUTH, BUS

# The development service token of the status API (guard's default status_tokens).
STATUS_AUTH = {"Authorization": "Bearer dev-status-token"}


def start(db_url, **cfg):
    """guard on db_url (as test_guard.py's), its messages to a recording publisher."""
    pub = guard_api.Publisher()
    config = {"database_url": db_url, "home_countries": "KR", "publisher_url": pub.url}
    config.update(cfg)
    svc = harness.ctx().start("guard", config=config,
                              env={"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS,
                                   "GUARD_DATABASE_URL": db_url},
                              ready_path="/readyz")
    svc.publisher = pub
    return svc


def login(account, country, ip="11.2.3.4", ts=None):
    """A login.checked event."""
    ts = ts or datetime.datetime.now(datetime.timezone.utc)
    return {"account_id": account, "ip": ip, "country": country,
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "session_id": "s-1", "server": "kr-1",
            "login_id": str(uuid.uuid4())}


def deliver(svc, event):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(BUS, body, str(uuid.uuid4()), "login.checked",
                                       {"ce-source": "ipcheck"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.checked", raw=body,
                        headers=headers)


def status_as(svc, account, headers, ip=None):
    q = f"?ip={ip}" if ip else ""
    return harness.http("GET", f"{svc.url}/v1/accounts/{account}/status{q}", headers=headers)

FAILED_SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/login.failed.json"))

# small thresholds so a test reaches them quickly; waits long enough to be seen running
FAST = {"brute_force.account_failures": 3, "brute_force.address_failures": 5}


def failed(account, ip="11.2.3.4", reason="bad_password"):
    return {"account_id": account, "ip": ip, "reason": reason, "server": "kr-1",
            "ts": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def deliver_failed(svc, event, event_id=None, secret=BUS):
    body = json.dumps(event).encode()
    headers = harness.delivery_headers(secret, body, event_id or str(uuid.uuid4()),
                                       "login.failed", {"ce-source": "login-servers"})
    return harness.http("POST", f"{svc.url}/v1/deliveries/login.failed", raw=body,
                        headers=headers)


def fail_n(svc, account, n, ip="11.2.3.4"):
    for _ in range(n):
        ev = failed(account, ip)
        jsonschema.validate(ev, FAILED_SCHEMA)
        st, body, _ = deliver_failed(svc, ev)
        assert st == 204, (st, body)


def verdict(svc, account, ip="211.234.10.20"):
    st, body, _ = status_as(svc, account, STATUS_AUTH, ip=ip)
    assert st == 200, (st, body)
    return body["admit"], body["reason"], body["retry_after"]


def test_failed_login_validation_and_signature():
    svc = start(pg.fresh_db(), **FAST)
    for bad in ({"ip": "1.2.3.4", "ts": "x", "reason": "bad_password"},
                dict(failed("a1"), ip="not-an-ip"),
                {k: v for k, v in failed("a1").items() if k != "reason"}):
        st, body, _ = deliver_failed(svc, bad)
        assert st == 422 and body["error"] == "invalid_event", (bad, st, body)
    assert deliver_failed(svc, failed("a1"), secret=None)[0] == 401
    assert deliver_failed(svc, failed("a1"), secret="wrong")[0] == 401
    # the schema the publisher checks: reason required
    try:
        jsonschema.validate({k: v for k, v in failed("a1").items() if k != "reason"},
                            FAILED_SCHEMA)
        assert False, "reason must be required"
    except jsonschema.ValidationError:
        pass


def test_account_throttled_after_threshold_and_wait_runs_down():
    svc = start(pg.fresh_db(), **FAST, **{"brute_force.wait_increment_s": 30})
    fail_n(svc, "victim", 2)
    assert verdict(svc, "victim") == (True, None, None)
    fail_n(svc, "victim", 1)  # the third: 30 s wait
    admit, reason, retry = verdict(svc, "victim")
    assert (admit, reason) == (False, "brute_force") and 0 < retry <= 30, retry
    # from any address (the account's count), while another account is admitted
    assert verdict(svc, "victim", ip="8.8.8.8")[:2] == (False, "brute_force")
    assert verdict(svc, "bystander") == (True, None, None)
    # retry_after counts down
    harness.wait_for(lambda: verdict(svc, "victim")[2] < retry, 10, what="retry_after falling")
    # the bus redelivers a failure: counted once (6 failures would double the wait)
    ev, eid = failed("victim"), str(uuid.uuid4())
    assert deliver_failed(svc, ev, eid)[0] == 204
    assert deliver_failed(svc, ev, eid)[0] == 204
    assert verdict(svc, "victim")[2] <= 30


def test_wait_grows_by_increment_up_to_the_cap():
    svc = start(pg.fresh_db(), **FAST, **{"brute_force.wait_increment_s": 100,
                                         "brute_force.max_wait_s": 250})
    fail_n(svc, "v", 3)
    v = verdict(svc, "v")
    assert 90 < v[2] <= 100, v
    fail_n(svc, "v", 3)  # 6 failures: 2 x 100
    assert 190 < verdict(svc, "v")[2] <= 200
    fail_n(svc, "v", 3)  # 9 failures: 300, capped at 250
    assert 240 < verdict(svc, "v")[2] <= 250


def test_address_throttled_across_accounts():
    svc = start(pg.fresh_db(), **FAST, **{"brute_force.wait_increment_s": 30})
    for i in range(5):  # one failure each for five accounts, all from one address
        fail_n(svc, f"u{i}", 1, ip="203.0.113.9")
    admit, reason, retry = verdict(svc, "someone-new", ip="203.0.113.9")
    assert (admit, reason) == (False, "brute_force") and 0 < retry <= 30
    # the same accounts from another address: their own counts are below the threshold
    assert verdict(svc, "u0", ip="198.51.100.7") == (True, None, None)
    # one address, one count, however it is written
    svc2 = start(pg.fresh_db(), **FAST)
    for ip in ("2001:db8::1", "2001:0db8:0:0::1", "2001:DB8::1", "2001:db8:0::1", "2001:db8::1"):
        fail_n(svc2, "x" + uuid.uuid4().hex[:6], 1, ip=ip)
    assert verdict(svc2, "y", ip="2001:db8:0:0:0:0:0:1")[:2] == (False, "brute_force")


def test_throttle_ends_after_the_wait_and_a_success_clears_the_count():
    svc = start(pg.fresh_db(), **FAST, **{"brute_force.wait_increment_s": 2})
    fail_n(svc, "p", 3)
    assert verdict(svc, "p")[:2] == (False, "brute_force")
    harness.wait_for(lambda: verdict(svc, "p")[0], 15, what="the wait to end")
    # without a success the count goes on: one more failure is a new wait
    fail_n(svc, "p", 1)
    assert verdict(svc, "p")[:2] == (False, "brute_force")
    harness.wait_for(lambda: verdict(svc, "p")[0], 15, what="the wait to end")
    # a successful login (login.checked, from home) after the wait clears the count
    assert deliver(svc, login("p", "KR"))[0] == 204
    fail_n(svc, "p", 2)
    assert verdict(svc, "p") == (True, None, None)
    # a success while the wait still runs clears nothing
    fail_n(svc, "p", 1)
    assert verdict(svc, "p")[:2] == (False, "brute_force")
    assert deliver(svc, login("p", "KR"))[0] == 204
    assert verdict(svc, "p")[:2] == (False, "brute_force")


def test_throttle_survives_a_restart():
    url = pg.fresh_db()
    svc = start(url, **FAST, **{"brute_force.wait_increment_s": 60})
    fail_n(svc, "r", 3)
    fail_n(svc, "addr" + uuid.uuid4().hex[:4], 5, ip="192.0.2.44")
    assert verdict(svc, "r")[:2] == (False, "brute_force")
    svc.stop()
    svc = start(url, **FAST, **{"brute_force.wait_increment_s": 60})
    admit, reason, retry = verdict(svc, "r")
    assert (admit, reason) == (False, "brute_force") and 0 < retry <= 60
    assert verdict(svc, "other", ip="192.0.2.44")[:2] == (False, "brute_force")
    # the count survives too: a success clears it only once the wait is over, so still refused
    assert deliver(svc, login("r", "KR"))[0] == 204
    assert verdict(svc, "r")[:2] == (False, "brute_force")


def test_brute_force_off_and_status_without_ip():
    svc = start(pg.fresh_db(), **FAST, brute_force=False)
    fail_n(svc, "o", 10)
    assert verdict(svc, "o") == (True, None, None)
    svc = start(pg.fresh_db(), **FAST)
    fail_n(svc, "o", 3)
    # status without ip (a player's view) still answers; a throttle needs the verdict's ip
    st, body, _ = status_as(svc, "o", STATUS_AUTH)
    assert st == 200 and body["locked"] is False
    assert verdict(svc, "o")[:2] == (False, "brute_force")


def test_loginsim_guesses_until_guard_throttles():
    """loginsim's password guesses (failed_share) go to login.failed while guard lets them try;
    once the account is throttled, guard's status refuses them (brute_force). The recording
    publisher hands each failed login to guard as the bus would, before answering 202."""
    svc = start(pg.fresh_db(), **FAST, **{"brute_force.wait_increment_s": 60})
    got = []

    def publisher(method, path, headers, body):
        ev = json.loads(body)
        got.append((path, headers.get("authorization"), ev))
        jsonschema.validate(ev, FAILED_SCHEMA)
        st, answer, _ = deliver_failed(svc, ev, headers.get("ce-id"))
        assert st == 204, (st, answer)
        return 202, {"id": headers.get("ce-id")}, {}

    url, _ = harness.ctx().serve(publisher)
    p = harness.ctx().start("loginsim", http=False, config={
        "publisher_url": url + "/v1/topics/login/events",
        "failed_url": url + "/v1/topics/login.failed/events", "failed_share": 1,
        "failed_accounts": 1, "rate": 50, "count": 10, "threads": 1, "status_url": svc.url,
        "game_url": ""})
    harness.wait_for(lambda: p.popen.poll() is not None, timeout=30, what="loginsim exit")
    assert p.popen.returncode == 0, p.log()
    assert len(got) == 3, got  # the threshold; then refused
    assert all(path == "/v1/topics/login.failed/events" and a == "Bearer dev-login-token"
               and e["account_id"] == "user-00001" and e["reason"] == "bad_password"
               for path, a, e in got)
    assert '"refused": 7' in p.log() and '"failed_logins": 3' in p.log(), p.log()
    assert "refused by guard: brute_force" in p.log()
