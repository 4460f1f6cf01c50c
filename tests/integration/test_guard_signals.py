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
from tokens import AUTH, BUS, auth, token

# The development service token of the status API (guard's default status_tokens).
STATUS_AUTH = {"Authorization": "Bearer dev-status-token"}


def start(db_url, pub=None, **cfg):
    """guard on db_url (as test_guard.py's), its messages to a recording publisher."""
    pub = pub or guard_api.Publisher()
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
    v = verdict(svc, "v")
    assert 190 < v[2] <= 200, v
    fail_n(svc, "v", 3)  # 9 failures: 300, capped at 250
    v = verdict(svc, "v")
    assert 240 < v[2] <= 250, v


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


NOTIFICATION_SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/notification.json"))


def set_settings(svc, account, lang):
    st, body, _ = harness.http("PUT", f"{svc.url}/v1/accounts/{account}/policy",
                               {"action": "notify", "channels": ["ingame"], "lang": lang},
                               headers=auth(token("player", account)))
    assert st == 200, (st, body)


def published_after(svc, account, n_changes):
    """Waits for the player's n_changes-th settings_changed notice: guard's relay publishes its
    outbox in order, so whatever guard queued before it has been published too."""
    svc.publisher.wait(account, "settings_changed", n_changes)


def test_the_player_is_told_once_per_throttling_episode():
    """An account's count reaching brute_force.account_failures queues one brute_force notice
    to the player (every channel that reaches them, their language) with the wait's start; the
    failures that renew the wait, a redelivery, and a wait that runs out while failures go on
    tell nothing more; after a successful login clears the count, the next episode is told
    again. Here notify and gamesim are real: the message reaches the game in both languages."""
    url = pg.fresh_db()
    down = guard_api.Downstream(url)
    svc = start(url, pub=guard_api.Publisher(forward=down.forward), **FAST,
                **{"brute_force.wait_increment_s": 2})
    set_settings(svc, "bf", "en")
    guard_api.set_contacts(svc.url, "bf", token("player", "bf"), {"email": "bf@example.com"},
                           lambda ch: svc.publisher.contact_code("bf", ch))
    fail_n(svc, "bf", 2)
    ev, eid = failed("bf"), str(uuid.uuid4())
    assert deliver_failed(svc, ev, eid)[0] == 204  # the third: the wait starts
    assert deliver_failed(svc, ev, eid)[0] == 204  # redelivered: not counted again
    note = svc.publisher.wait("bf", "brute_force")[0]
    jsonschema.validate(note, NOTIFICATION_SCHEMA)
    assert note["channels"] == ["ingame", "email"] and note["lang"] == "en", note
    assert note["contacts"] == {"email": "bf@example.com"}, note
    assert note["params"] == {"failures": 3, "wait_minutes": 1}, note
    assert verdict(svc, "bf")[:2] == (False, "brute_force")
    fail_n(svc, "bf", 4)  # each renews the wait: the same episode
    harness.wait_for(lambda: verdict(svc, "bf")[0], 15, what="the wait to end")
    fail_n(svc, "bf", 1)  # the wait ran out, failures go on: still the same episode
    assert verdict(svc, "bf")[:2] == (False, "brute_force")
    set_settings(svc, "bf", "en")
    published_after(svc, "bf", 2)  # (one for the contact, one for this change)
    assert len(svc.publisher.of("bf", "brute_force")) == 1
    # the message the player sees, in English, in the game (and by email: a channel notify has)
    msgs = harness.wait_for(lambda: [m for m in down.ingame("bf") if m["kind"] == "brute_force"],
                            15, what="brute_force in-game")
    assert "3 failed sign-ins" in msgs[0]["text"] and "1 min" in msgs[0]["text"], msgs
    assert "change it now" in msgs[0]["text"], msgs
    # a successful login once the wait is over clears the count: the next episode is told
    harness.wait_for(lambda: verdict(svc, "bf")[0], 15, what="the wait to end")
    assert deliver(svc, login("bf", "KR"))[0] == 204
    fail_n(svc, "bf", 3)
    assert len(svc.publisher.wait("bf", "brute_force", 2)) == 2
    # an address's throttle tells no player (it is not theirs); a Korean player reads Korean
    set_settings(svc, "bk", "ko")
    fail_n(svc, "bk", 3, ip="198.51.100.3")
    msgs = harness.wait_for(lambda: [m for m in down.ingame("bk") if m["kind"] == "brute_force"],
                            15, what="brute_force in Korean")
    assert "로그인 실패가 3번" in msgs[0]["text"] and "1분" in msgs[0]["text"], msgs
    for i in range(2):  # with bk's 3, five failures from the address: its wait starts
        fail_n(svc, f"bx{i}", 1, ip="198.51.100.3")
    assert verdict(svc, "anyone", ip="198.51.100.3")[:2] == (False, "brute_force")
    set_settings(svc, "bx0", "ko")
    published_after(svc, "bx0", 1)
    assert not svc.publisher.of("bx0", "brute_force") and not svc.publisher.of("bx1", "brute_force")
    # a name nobody has (the login server says unknown_account) is throttled, but nobody is told
    for _ in range(3):
        assert deliver_failed(svc, failed("nobody", reason="unknown_account"))[0] == 204
    assert verdict(svc, "nobody")[:2] == (False, "brute_force")
    set_settings(svc, "bx0", "en")
    published_after(svc, "bx0", 2)
    assert not svc.publisher.of("nobody", "brute_force")
    assert all(st in (200, 204) for _, st, _ in down.delivered), down.delivered
    # operators tell accounts from addresses: the episodes and the renewed waits, by kind
    metrics = harness.http("GET", f"{svc.url}/metrics")[1]
    metrics = metrics if isinstance(metrics, str) else metrics.decode()
    # (bf's two, bk's and nobody's episodes; bf's address 11.2.3.4 reached 5 failures too, then
    # 198.51.100.3)
    assert 'guard_throttle_episodes_total{kind="account"} 4\n' in metrics, metrics
    assert 'guard_throttle_episodes_total{kind="address"} 2\n' in metrics, metrics
    assert 'guard_throttled_failures_total{kind="address"}' in metrics, metrics


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


ACTION_SCHEMA = json.load(open(harness.ROOT + "/config/schema/events/account.action.json"))
T0 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)


def set_policy(svc, account, action, allowed=()):
    st, body, _ = harness.http("PUT", f"{svc.url}/v1/accounts/{account}/policy",
                               {"action": action, "channels": ["ingame"],
                                "allowed_countries": list(allowed)},
                               headers=auth(token("player", account)))
    assert st == 200, (st, body)


def decide(svc, account, country, at):
    """The reasons guard acted on for a login from country at time at (None: it did nothing)."""
    st, body, _ = deliver(svc, login(account, country, ts=at))
    assert st in (200, 204), (st, body)
    if st == 204:
        return None
    jsonschema.validate(body, ACTION_SCHEMA)
    return body["reasons"]


def test_abroad_is_a_reason_on_the_action():
    svc = start(pg.fresh_db(), **{"signals.new_country": False})
    set_policy(svc, "ab", "notify")
    assert decide(svc, "ab", "KR", T0) is None
    assert decide(svc, "ab", "US", T0 + 48 * HOUR) == ["abroad"]


def test_new_country_for_the_account():
    """A country the account has not logged in from within new_country_days; not its first login,
    not a home or allowed country; the player's policy decides (none: nothing)."""
    svc = start(pg.fresh_db(), **{"signals.abroad": False, "signals.impossible_travel": False,
                                  "signals.new_country_days": 30})
    set_policy(svc, "nc", "notify", allowed=["DE"])
    assert decide(svc, "nc", "US", T0) is None                  # the first login: no history
    assert decide(svc, "nc", "JP", T0 + 24 * HOUR) == ["new_country"]
    assert decide(svc, "nc", "JP", T0 + 25 * HOUR) is None      # known now
    assert decide(svc, "nc", "US", T0 + 26 * HOUR) is None      # seen a day ago
    assert decide(svc, "nc", "US", T0 + 26 * HOUR) is None
    assert decide(svc, "nc", "KR", T0 + 27 * HOUR) is None      # home
    assert decide(svc, "nc", "DE", T0 + 28 * HOUR) is None      # allowed by the player
    assert decide(svc, "nc", "JP", T0 + 24 * 40 * HOUR) == ["new_country"]  # 39 days later
    set_policy(svc, "quiet", "none")
    assert decide(svc, "quiet", "US", T0) is None
    assert decide(svc, "quiet", "BR", T0 + 24 * HOUR) is None   # the player chose none
    # switched off per deployment
    off = start(pg.fresh_db(), **{"signals.abroad": False, "signals.new_country": False,
                                  "signals.impossible_travel": False})
    set_policy(off, "nc", "notify")
    assert decide(off, "nc", "US", T0) is None
    assert decide(off, "nc", "JP", T0 + 24 * HOUR) is None


def test_impossible_travel_between_consecutive_logins():
    svc = start(pg.fresh_db(), **{"signals.abroad": False, "signals.new_country": False})
    set_policy(svc, "it", "kick")
    assert decide(svc, "it", "US", T0) is None
    # US to Japan (about 10,000 km between centroids) in an hour
    assert decide(svc, "it", "JP", T0 + HOUR) == ["impossible_travel"]
    # a real flight: Japan to Brazil in 30 hours (about 18,000 km, 600 km/h)
    assert decide(svc, "it", "BR", T0 + 31 * HOUR) is None
    # short hops are never travel: Belgium and the Netherlands (about 185 km) a minute apart
    assert decide(svc, "it", "BE", T0 + 60 * HOUR) is None
    assert decide(svc, "it", "NL", T0 + 60 * HOUR + datetime.timedelta(minutes=1)) is None
    # home countries are recorded (the previous login) but never acted on
    assert decide(svc, "it", "KR", T0 + 61 * HOUR) is None
    assert decide(svc, "it", "DE", T0 + 62 * HOUR) == ["impossible_travel"]  # KR to DE in 1 h
    # unknown addresses (ZZ) have no location
    assert decide(svc, "it", "ZZ", T0 + 63 * HOUR) is None
    # an allowed country still is impossible travel (the player may be elsewhere)
    set_policy(svc, "trip", "notify", allowed=["JP"])
    assert decide(svc, "trip", "US", T0) is None
    assert decide(svc, "trip", "JP", T0 + HOUR) == ["impossible_travel"]
    # the speed and the floor are per deployment
    slow = start(pg.fresh_db(), **{"signals.abroad": False, "signals.new_country": False,
                                   "signals.impossible_travel_kmh": 20000,
                                   "signals.impossible_travel_min_km": 0})
    set_policy(slow, "it", "kick")
    assert decide(slow, "it", "US", T0) is None
    assert decide(slow, "it", "JP", T0 + HOUR) is None               # 10,000 km/h allowed
    assert decide(slow, "it", "CN", T0 + HOUR + datetime.timedelta(seconds=30)) \
        == ["impossible_travel"]


def test_signals_and_abroad_together_and_a_redelivery_same_answer():
    svc = start(pg.fresh_db())
    set_policy(svc, "all", "notify")
    assert decide(svc, "all", "KR", T0) is None
    ev = login("all", "US", ts=T0 + HOUR)
    st, first, _ = deliver(svc, ev)
    assert st == 200 and first["reasons"] == ["abroad", "new_country", "impossible_travel"], first
    st, again, _ = deliver(svc, ev)  # the bus redelivers: the stored decision
    assert st == 200 and again == first


def test_a_batch_sees_its_own_earlier_logins_and_records_nothing_unless_all_decided():
    """A batch's logins are read and recorded once for the batch: the second login of an
    account in it sees the first; a batch refused (or retried) records none of its logins, so
    its events sent again one at a time are judged as they would have been."""
    db = pg.fresh_db()
    svc = start(db, **{"signals.abroad": False, "signals.new_country": False})
    set_policy(svc, "bt", "kick")
    us, jp = login("bt", "US", ts=T0), login("bt", "JP", ts=T0 + HOUR)
    st, body, _ = guard_api.deliver_batch(svc, [us, jp, login("other", "DE", ts=T0)])
    assert st == 200, (st, body)
    assert body[0] is None and body[2] is None, body
    assert body[1]["reasons"] == ["impossible_travel"], body
    rows = pg.cluster().psql(db.rsplit("/", 1)[1], "SELECT account_id, country FROM "
                             "guard.login_countries ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [("bt", "JP"), ("bt", "US"), ("other", "DE")], rows
    # refused whole: its good login is not recorded, and sent alone it is judged against US
    set_policy(svc, "rb", "kick")
    assert decide(svc, "rb", "US", T0) is None
    br = login("rb", "BR", ts=T0 + HOUR)
    st, body, _ = guard_api.deliver_batch(svc, [br, {"account_id": "rb"}])
    assert st == 422 and body["error"] == "batch_refused", (st, body)
    st, body, _ = deliver(svc, br)
    assert st == 200 and body["reasons"] == ["impossible_travel"], (st, body)
    # a login's own time, when it is no date (31 April), is the time guard sees it
    odd = login("rb", "BR")
    odd["ts"] = "2026-04-31T10:00:00Z"
    assert deliver(svc, odd)[0] in (200, 204)


def test_a_login_from_the_latest_country_within_five_minutes_is_not_written_again():
    """Most logins are a player at home again: from the account's latest country within five
    minutes of its recorded time, nothing is written (the time would only make a later trip look
    that much slower); later, or after a login elsewhere, it is."""
    db = pg.fresh_db()
    svc = start(db, **{"signals.abroad": False, "signals.new_country": False})

    def recorded():
        rows = pg.cluster().psql(db.rsplit("/", 1)[1], "SELECT country, extract(epoch FROM "
                                 "last_at)::bigint FROM guard.login_countries "
                                 "WHERE account_id = 'rf' ORDER BY 1")
        return {r[0]: int(r[1]) for r in rows}
    t0 = int(T0.timestamp())
    minute = datetime.timedelta(minutes=1)
    assert decide(svc, "rf", "US", T0) is None
    assert decide(svc, "rf", "US", T0 + 4 * minute) is None
    assert recorded() == {"US": t0}
    assert decide(svc, "rf", "US", T0 + 6 * minute) is None
    assert recorded() == {"US": t0 + 360}
    assert decide(svc, "rf", "CA", T0 + 20 * HOUR) is None   # elsewhere: written
    assert decide(svc, "rf", "US", T0 + 20 * HOUR + minute) is None
    assert recorded() == {"CA": t0 + 72000, "US": t0 + 72060}  # US was not the latest
    # a login older than the row changes nothing
    assert decide(svc, "rf", "US", T0 + HOUR) is None
    assert recorded() == {"CA": t0 + 72000, "US": t0 + 72060}


def test_publisher_takes_login_failed_from_the_login_servers():
    """config/bus/login.json declares login.failed with its schema and the login servers' token:
    a failed login is accepted (202, on the topic), one without its reason is refused."""
    ctx = harness.ctx()
    broker = ctx.broker(topics={"login": 3, "login.failed": 3})
    ctx.write_json("bus/login.json", json.load(open(harness.ROOT + "/config/bus/login.json")))
    pub = ctx.start("bus-publisher", config={
        "bootstrap": broker.bootstrap, "bus_config_dir": ctx.path("bus"),
        "bus_schema": harness.ROOT + "/config/schema/bus.schema.json", "threads": 2},
        ready_path="/readyz")
    url = pub.url + "/v1/topics/login.failed/events"
    login_servers = {"Authorization": "Bearer dev-login-token"}
    st, body, _ = harness.http("POST", url, failed("acc-9"), headers=login_servers)
    assert st == 202, (st, body)
    no_reason = {k: v for k, v in failed("acc-9").items() if k != "reason"}
    st, body, _ = harness.http("POST", url, no_reason, headers=login_servers)
    assert 400 <= st < 500 and "error" in body, (st, body)
    st, body, _ = harness.http("POST", url, failed("acc-9"),
                               headers={"Authorization": "Bearer someone-else"})
    assert st in (401, 403), (st, body)
    msgs = harness.wait_for(
        lambda: harness.kcat_consume(broker.bootstrap, "login.failed", 1, timeout=10) or None,
        20, what="the failed login on its topic")
    assert len(msgs) == 1
