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


def now_ts(shift_s=0):
    """An RFC 3339 time shift_s seconds from now (a login's "ts")."""
    import datetime
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=shift_s)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deliver(svc, account, ce_id=None, secret=BUS, ts=None):
    body = json.dumps({"account_id": account, "ip": "1.2.3.4",
                       "ts": ts or now_ts()}).encode()
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
                        "data": {"account_id": account, "ip": "1.2.3.4", "ts": now_ts()}}
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


def test_a_new_campaign_counts_logins_from_its_start():
    """A new campaign's route reads the whole retained topic: logins from before its start are
    not part of it (start "now", recorded at its first run and kept by a restart); "backfill"
    and an explicit time are what an operator asks for."""
    url = pg.fresh_db()
    svc = start(url, ["p1", "p2", "p3"])
    assert deliver(svc, "p1", ts=now_ts(-3600))[0] == 204       # an hour before the start
    assert deliver(svc, "p1", ts="2026-11-25T06:00:00+09:00")[0] == 204
    assert deliver(svc, "p1")[0] == 200                          # since the start
    db = url.rsplit("/", 1)[1]
    first = pg.cluster().psql(db, "SELECT starts_at FROM campaign.campaigns "
                                  "WHERE campaign = 'password-2026'")[0][0]
    svc.stop()
    again = start(url, ["p1", "p2", "p3"])                       # a restart keeps the start
    assert pg.cluster().psql(db, "SELECT starts_at FROM campaign.campaigns "
                                 "WHERE campaign = 'password-2026'")[0][0] == first
    assert deliver(again, "p2", ts=now_ts(-3600))[0] == 204
    again.stop()
    back = start(url, ["p1", "p2", "p3"], start="backfill")
    st, body, _ = deliver(back, "p2", ts="2026-11-25T06:00:00Z")
    assert st == 200 and body["account_id"] == "p2", (st, body)
    back.stop()
    since = start(url, ["p1", "p2", "p3"], start="2026-11-01T00:00:00Z")
    assert deliver(since, "p3", ts="2026-10-31T23:59:59.999Z")[0] == 204
    assert deliver(since, "p3", ts="2026-11-01T09:00:00+09:00")[0] == 200


def test_channels_come_from_config():
    svc = start(pg.fresh_db(), ["p1"], channels="email, ingame", kind="campaign_contacts",
                campaign="contacts-2026")
    st, body, _ = deliver(svc, "p1")
    assert st == 200, (st, body)
    assert body["channels"] == ["email", "ingame"] and body["kind"] == "campaign_contacts"
    assert body["dedupe_key"] == "contacts-2026/p1" and body["params"]["campaign"] == \
        "contacts-2026"
    jsonschema.validate(body, json.load(open(harness.ROOT +
                                             "/config/schema/events/notification.json")))


def test_bad_channels_or_start_refuse_the_start():
    url = pg.fresh_db()
    for config, says in [({"channels": "ingame, pigeon"}, "pigeon"),
                         ({"channels": "sms sms"}, "twice"),
                         ({"channels": " , "}, "at least one"),
                         ({"start": "yesterday"}, "start")]:
        p = harness.ctx().start("campaign", http=False, config={"database_url": url, **config},
                                env={"BUS_SIGNING_SECRET": BUS})
        harness.wait_for(lambda: p.popen.poll() is not None, 15, what="campaign refuses")
        assert p.popen.returncode == 2 and says in p.log(), (config, p.log())


def test_every_campaign_of_make_run_has_its_config_route_and_template():
    """config/campaign/NAME.json is one campaign: a port of its own, a route to it in config/bus,
    a list, and notify templates for its kind in both languages."""
    import glob
    import os
    routes = {}
    for f in glob.glob(os.path.join(harness.ROOT, "config", "bus", "*.json")):
        for r in json.load(open(f)).get("routes", []):
            routes[r["endpoint"]] = r
    confs = sorted(glob.glob(os.path.join(harness.ROOT, "config", "campaign", "*.json")))
    assert len(confs) >= 2, confs
    ports = set()
    for f in confs:
        c = json.load(open(f))
        name = os.path.basename(f)[:-5]
        assert c["campaign"] == name, f
        ports.add(c["listen"])
        r = routes.get(f"http://{c['listen']}/v1/deliveries/login")
        assert r and r["topic"] == "login" and r["output"] == "notification", (f, r)
        assert os.path.exists(os.path.join(harness.ROOT, c["list_file"])), f
        for lang in ("ko", "en"):
            assert os.path.exists(os.path.join(harness.ROOT, "notify", "templates",
                                               f"{c['kind']}.{lang}.txt")), (f, lang)
    assert len(ports) == len(confs)


def test_systemd_template_unit_starts_one_campaign_per_instance():
    """docs/ops/systemd/campaign@.service: campaign@NAME runs /etc/bus/campaign/NAME.json;
    systemd-analyze verifies an instance of it."""
    import os
    import shutil
    import subprocess
    path = os.path.join(harness.ROOT, "docs", "ops", "systemd", "campaign@.service")
    text = open(path).read()
    assert "ExecStart=/usr/local/bin/campaign --config /etc/bus/campaign/%i.json" in text
    assert "SyslogIdentifier=campaign-%i" in text and "DynamicUser=yes" in text
    assert "Wants=network-online.target postgresql.service" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise harness.Skip("systemd-analyze missing")
    unit_dir = harness.ctx().path("units")
    os.makedirs(unit_dir, exist_ok=True)
    shutil.copy(path, os.path.join(unit_dir, "campaign@.service"))
    r = subprocess.run([analyze, "verify", "--man=no",
                        os.path.join(unit_dir, "campaign@password-2026.service")],
                       capture_output=True, text=True, timeout=60, cwd=unit_dir)
    # Only the unit's own syntax counts: the binary is not installed on a test machine.
    errs = [ln for ln in (r.stdout + r.stderr).splitlines()
            if ln.strip() and "is not executable" not in ln]
    assert not errs, errs
