"""The login flow end to end on free ports: publisher -> broker -> dispatcher -> ipcheck
(streaming, login -> login.checked) -> dispatcher -> history (one-way) -> history API.
Logins published over HTTP must show up in the player's history with their country."""
import json
import os
import subprocess
import uuid

import harness
import pg

ROOT = harness.ROOT
SCHEMA = os.path.join(ROOT, "config", "schema", "bus.schema.json")
AUTH = "e2e-auth-secret"
BUS = "e2e-signing-secret"
LOGIN_TOKEN = "dev-login-token"  # the development producer token of config/bus/login.json
REAL_DB = os.path.join(ROOT, "var", "geoip", "geo-whois-asn-country.mmdb")


def token(role, subject):
    path = harness.bin_path("mktoken")
    if not os.path.exists(path):
        raise harness.Skip("mktoken not built")
    r = subprocess.run([path, role, subject], capture_output=True, text=True,
                       env={"AUTH_SECRET": AUTH}, timeout=10)
    if r.returncode != 0:
        raise harness.Skip(f"mktoken failed: {r.stderr.strip()}")
    return r.stdout.strip()


def bus_dir(ctx, ipcheck, history):
    login = json.load(open(os.path.join(ROOT, "config", "bus", "login.json")))
    topics = login["topics"]
    for t in topics:
        if "schema" in t and not os.path.isabs(t["schema"]):
            t["schema"] = os.path.join(ROOT, t["schema"])
    checked = os.path.join(ROOT, "config", "schema", "events", "login.checked.json")
    topics.append({"name": "login.checked", "partitions": 3, "key": "/account_id",
                   "schema": checked})
    retry = {"initial_ms": 20, "max_ms": 500, "max_attempts": 0}
    routes = [
        {"name": "ipcheck", "topic": "login", "mode": "streaming", "output": "login.checked",
         "endpoint": ipcheck.url + "/v1/deliveries/login", "secret": "${BUS_SIGNING_SECRET}",
         "retry": retry},
        {"name": "history", "topic": "login.checked", "mode": "one-way",
         "endpoint": history.url + "/v1/deliveries/login.checked",
         "secret": "${BUS_SIGNING_SECRET}", "retry": retry},
    ]
    ctx.write_json("bus/e2e.json", {"topics": topics, "routes": routes})
    return ctx.path("bus")


def test_login_reaches_history_with_country():
    for b in ("bus-publisher", "bus-dispatcher", "ipcheck", "history"):
        if not os.path.exists(harness.bin_path(b)):
            raise harness.Skip(f"{b} not built")
    if not os.path.exists(REAL_DB):
        raise harness.Skip(f"GeoIP database missing: {REAL_DB} (make deps)")
    ctx = harness.ctx()
    db_url = pg.fresh_db()
    staff = token("staff", "sam")
    broker = ctx.broker(topics={"login": 3, "login.checked": 3})
    env = {"AUTH_SECRET": AUTH, "BUS_SIGNING_SECRET": BUS}
    ipcheck = ctx.start("ipcheck", config={"geoip_db": REAL_DB}, env=env, ready_path="/readyz")
    history = ctx.start("history", config={"database_url": db_url, "batch_wait_ms": 5},
                        env=dict(env, HISTORY_DATABASE_URL=db_url), ready_path="/readyz")
    bus = bus_dir(ctx, ipcheck, history)
    common = {"bootstrap": broker.bootstrap, "bus_config_dir": bus, "bus_schema": SCHEMA}
    pub = ctx.start("bus-publisher", config=dict(common, threads=2), env=env,
                    ready_path="/readyz")
    ctx.start("bus-dispatcher", config=dict(common, shutdown_timeout_ms=5000), env=env,
              ready_path="/readyz")

    account = "e2e-" + uuid.uuid4().hex[:8]
    sent = [("8.8.8.8", "2026-11-25T06:00:00Z"), ("8.8.4.4", "2026-11-25T06:00:01Z"),
            ("10.1.2.3", "2026-11-25T06:00:02Z")]
    for ip, ts in sent:
        status, body, _ = harness.http(
            "POST", pub.url + "/v1/topics/login/events",
            {"account_id": account, "ip": ip, "ts": ts, "session_id": "s-1", "server": "eu-1"},
            headers={"Authorization": "Bearer " + LOGIN_TOKEN})
        assert status == 202, (status, body)

    got = {}

    def arrived():
        status, body, _ = harness.http("GET", f"{history.url}/v1/accounts/{account}/logins",
                                       headers={"Authorization": "Bearer " + staff})
        if status != 200:
            return False
        doc = body if isinstance(body, dict) else json.loads(body)
        got["logins"] = doc.get("logins", [])
        return len(got["logins"]) >= len(sent)

    harness.wait_for(arrived, 60 * harness.timeout_mult(), what="logins in the history API")
    logins = got["logins"]
    assert len(logins) == len(sent), logins
    by_ip = {row["ip"]: row for row in logins}
    assert set(by_ip) == {ip for ip, _ in sent}, logins
    assert by_ip["8.8.8.8"]["country"] == "US", by_ip["8.8.8.8"]
    assert by_ip["8.8.4.4"]["country"] == "US", by_ip["8.8.4.4"]
    assert by_ip["10.1.2.3"]["country"] == "ZZ", by_ip["10.1.2.3"]  # private address
