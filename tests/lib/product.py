"""The whole product on free ports, for end-to-end tests and bench/product.sh.

    import product
    p = product.start(ctx)                  # ctx: a harness.Context (a test's, or a module's)
    p.publish({"account_id": ..., "ip": ..., "ts": ...})    # -> (status, body)
    p.svc["history"].url, p.svc["guard"].url, ...           # the processes (harness.Proc)
    p.restart("history")                     # same port, same config
    p.history_count_by_id()                  # {login id: rows} straight from PostgreSQL

What runs: the embedded broker (topics of config/bus/*.json created at start), gamesim, ipcheck
(the GeoIP database of var/geoip), history, guard, notify (emails as files under the context's
outbox/, SMS and in-game messages to gamesim), campaign, the publisher and the dispatcher, all
with the repository's real bus configuration (config/bus/*.json), of which only the endpoints are
rewritten from the fixed development ports to the processes' free ports (and, optionally, the
retry back-off shortened so tests of outages do not wait 30 s between attempts). Every service
shares one PostgreSQL database (pg.fresh_db()), each in its own schema, as in `make run`.

The broker requires SASL/SCRAM and applies the product's ACLs (config/broker/acl.json), as
`make run` does: the publisher and the dispatcher connect as their own principals through their
kafka.* settings (PRINCIPALS), and only get what those rules grant. The tests' own kcat calls
(harness.kcat) and busctl (p.busctl_env()) authenticate as busctl, the admin principal.
"""
import glob
import json
import os
import re
import uuid

import harness
import pg
import tokens

ROOT = harness.ROOT
GEOIP_DB = os.path.join(ROOT, "var", "geoip", "geo-whois-asn-country.mmdb")
AUTH_SECRET = "e2e-product-auth-secret"
LOGIN_TOKEN = "dev-login-token"  # the development producer token of config/bus/login.json
GAMESIM_TOKEN = "dev-only-gamesim-admin-token"  # gamesim's development admin_token
GAMESIM_AUTH = {"Authorization": "Bearer " + GAMESIM_TOKEN}

# Development port of each endpoint in config/bus/*.json -> the service that owns it.
DEV_PORTS = {8101: "ipcheck", 8102: "history", 8103: "guard", 8104: "notify", 8105: "campaign",
             8109: "gamesim"}
SERVICES = ["gamesim", "ipcheck", "history", "guard", "notify", "campaign"]
BUS = ["bus-publisher", "bus-dispatcher"]
# The processes that connect to the broker: their SASL principal and environment prefix.
PRINCIPALS = {"bus-publisher": ("publisher", "PUBLISHER"),
              "bus-dispatcher": ("dispatcher", "DISPATCHER")}
ADMIN = "busctl"
ACL_FILE = os.path.join(ROOT, "config", "broker", "acl.json")


def require_binaries():
    for b in SERVICES + BUS + ["bus-broker", "mktoken"]:
        if not os.path.exists(harness.bin_path(b)):
            raise harness.Skip(f"{b} not built")
    if not os.path.exists(GEOIP_DB):
        raise harness.Skip(f"GeoIP database missing: {GEOIP_DB} (make deps)")


def bus_topics():
    """{topic: partitions} of every topic declared in config/bus/*.json."""
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "config", "bus", "*.json"))):
        for t in json.load(open(path)).get("topics", []):
            out[t["name"]] = t.get("partitions", 3)
    return out


def extra_campaign_ports():
    """Ports of the campaigns of config/campaign/*.json beyond the default one (8105). The test
    product runs the default campaign only (its list is the test's), so the routes to the others
    are left out of its bus configuration (their dead-letter topics stay)."""
    ports = set()
    for path in glob.glob(os.path.join(ROOT, "config", "campaign", "*.json")):
        m = re.match(r"^127\.0\.0\.1:(\d+)$", json.load(open(path)).get("listen", ""))
        if m and int(m.group(1)) != 8105:
            ports.add(int(m.group(1)))
    return ports


def write_bus_config(dst_dir, urls, retry_max_ms=None, route_overrides=None):
    """Copies config/bus/*.json into dst_dir with each endpoint's http://127.0.0.1:<dev port>
    replaced by urls[<service>] and schema paths made absolute. A route whose endpoint names
    an unknown port is an error (a new route must be wired here, not silently skipped).
    route_overrides: keys set in every route (experiments, e.g. {"concurrency": 64})."""
    os.makedirs(dst_dir, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(ROOT, "config", "bus", "*.json"))):
        doc = json.load(open(path))
        for t in doc.get("topics", []):
            if "schema" in t and not os.path.isabs(t["schema"]):
                t["schema"] = os.path.join(ROOT, t["schema"])
        extra = extra_campaign_ports()
        doc["routes"] = [r for r in doc.get("routes", [])
                         if not any(r["endpoint"].startswith(f"http://127.0.0.1:{port}/")
                                    for port in extra)]
        for r in doc.get("routes", []):
            m = re.match(r"^http://127\.0\.0\.1:(\d+)(/.*)$", r["endpoint"])
            if not m or int(m.group(1)) not in DEV_PORTS:
                raise AssertionError(f"route {r['name']}: endpoint {r['endpoint']} is not one "
                                     "of the product's development ports (tests/lib/product.py)")
            r["endpoint"] = urls[DEV_PORTS[int(m.group(1))]] + m.group(2)
            if retry_max_ms is not None:
                retry = dict(r.get("retry", {}))
                retry["max_ms"] = min(retry.get("max_ms", 30000), retry_max_ms)
                retry["initial_ms"] = min(retry.get("initial_ms", 200), retry_max_ms)
                r["retry"] = retry
            r.update(route_overrides or {})
        with open(os.path.join(dst_dir, os.path.basename(path)), "w") as f:
            json.dump(doc, f, indent=1)
    return dst_dir


class Product:
    def __init__(self, ctx, db_url, campaign_accounts, retry_max_ms, service_config, bus_env,
                 route_overrides):
        self.ctx = ctx
        self.db_url = db_url
        self.published_ok = 0  # logins published through publish() and answered 202
        self.svc = {}
        self._cfg = {}
        self._env = {}
        self.outbox = ctx.path("outbox", "x")[:-2]
        os.makedirs(self.outbox, exist_ok=True)
        users = {u: "pw-" + uuid.uuid4().hex for u, _ in PRINCIPALS.values()}
        users[ADMIN] = "pw-" + uuid.uuid4().hex
        self.broker = harness.start_broker(ctx, "embedded", topics=bus_topics(), sasl_users=users,
                                           acl_file=ACL_FILE, admin=ADMIN)
        self.signing_secret = os.environ.get("BUS_SIGNING_SECRET") or "e2e-signing-secret"
        base_env = {"AUTH_SECRET": AUTH_SECRET, "BUS_SIGNING_SECRET": self.signing_secret,
                    "BUS_BOOTSTRAP": self.broker.bootstrap, "DATABASE_URL": db_url}
        base_env.update(bus_env or {})
        list_file = ctx.path("campaign-list.txt")
        with open(list_file, "w") as f:
            f.write("# e2e campaign list\n" + "".join(a + "\n" for a in campaign_accounts))
        ports = {name: harness.free_port() for name in SERVICES}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        publisher_port = harness.free_port()
        cfg = {
            "gamesim": {},
            "ipcheck": {"geoip_db": GEOIP_DB},
            "history": {"database_url": db_url},
            "guard": {"database_url": db_url, "home_countries": "KR", "geoip_db": GEOIP_DB,
                      "publisher_url": f"http://127.0.0.1:{publisher_port}"},
            "notify": {"database_url": db_url, "outbox_dir": self.outbox,
                       "sms_url": urls["gamesim"] + "/v1/sms", "game_url": urls["gamesim"],
                       "guard_url": urls["guard"], "provider_timeout_ms": 2000},
            "campaign": {"database_url": db_url, "list_file": list_file},
        }
        for name in SERVICES:
            c = dict(cfg[name], listen=f"127.0.0.1:{ports[name]}")
            c.update((service_config or {}).get(name, {}))
            self._cfg[name] = c
            prefix = name.upper()
            self._env[name] = dict(base_env, **{f"{prefix}_DATABASE_URL": db_url})
        self.bus_dir = write_bus_config(ctx.path("bus", "x")[:-2], urls, retry_max_ms,
                                        route_overrides)
        common = {"bootstrap": self.broker.bootstrap, "bus_config_dir": self.bus_dir,
                  "bus_schema": os.path.join(ROOT, "config", "schema", "bus.schema.json")}
        self._cfg["bus-publisher"] = dict(common, listen=f"127.0.0.1:{publisher_port}")
        self._cfg["bus-dispatcher"] = dict(common, listen=f"127.0.0.1:{harness.free_port()}",
                                           shutdown_timeout_ms=5000)
        for name in BUS:
            self._cfg[name].update((service_config or {}).get(name, {}))
            user, prefix = PRINCIPALS[name]
            self._env[name] = dict(base_env, PUBLISHER_BOOTSTRAP=self.broker.bootstrap,
                                   DISPATCHER_BOOTSTRAP=self.broker.bootstrap,
                                   **self.broker.kafka_env(prefix, user))
            self._env[name].update(bus_env or {})
        # Services first, so the dispatcher finds its endpoints (as tools/run.sh does).
        for name in SERVICES + BUS:
            self.start(name)

    def start(self, name):
        ready = "/healthz" if name in ("gamesim", "bus-dispatcher") else "/readyz"
        self.svc[name] = self.ctx.start(name, config=self._cfg[name], env=self._env[name],
                                        ready_path=ready)
        return self.svc[name]

    def restart(self, name, kill=False):
        p = self.svc[name]
        if kill:
            p.kill()
        else:
            p.stop()
        return self.start(name)

    def busctl_env(self):
        """Environment for bin/busctl on this product's broker, as the admin principal."""
        return dict(BUS_BOOTSTRAP=self.broker.bootstrap,
                    **self.broker.kafka_env("BUSCTL", ADMIN))

    @property
    def publisher(self):
        return self.svc["bus-publisher"]

    @property
    def dispatcher(self):
        return self.svc["bus-dispatcher"]

    def url(self, name):
        return self.svc[name].url

    def publish(self, event, ce_id=None):
        headers = {"Authorization": "Bearer " + LOGIN_TOKEN}
        if ce_id:
            headers["ce-id"] = ce_id
        st, body, _ = harness.http("POST", self.publisher.url + "/v1/topics/login/events",
                                   event, headers=headers)
        if st == 202:
            self.published_ok += 1
        return st, body

    def emails_to(self, address, kinds=None):
        """The emails notify wrote to address, oldest first; kinds: only those of these kinds
        (X-Notify-Kind)."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.outbox, "*.eml"))):  # uuid7: by time
            with open(path, encoding="utf-8", errors="replace", newline="") as f:
                text = f.read()  # as written: CRLF line ends
            kind = re.search(r"^X-Notify-Kind: (\S+)", text, re.M)
            if f"To: {address}\r\n" in text and (kinds is None or (kind and
                                                                     kind.group(1) in kinds)):
                out.append(text)
        return out

    def contact_code(self, address, n=1):
        """The code of the n-th confirmation email to address (waits for it)."""
        mails = harness.wait_for(lambda: len(self.emails_to(address, ["contact_code"])) >= n and
                                 self.emails_to(address, ["contact_code"]), 60,
                                 what=f"confirmation code {n} to {address}")
        m = re.findall(r"(?:confirmation code is|확인 코드:) ([0-9]{8})(?![0-9])", mails[n - 1])
        assert len(m) == 1, mails[n - 1]
        return m[0]

    def set_email(self, account, tok, n=1):
        """Sets account's email to <account>@example.com, confirmed with the code it got."""
        import guard_api
        address = f"{account}@example.com"
        return guard_api.set_contacts(self.url("guard"), account, tok, {"email": address},
                                      lambda ch: self.contact_code(address, n))

    def psql(self, sql):
        return pg.cluster().psql(self.db_url.rsplit("/", 1)[1], sql)

    def history_count_by_id(self, ids=None):
        """{login id: number of rows in history.logins}, for ids (all rows when None)."""
        where = ""
        if ids is not None:
            where = " WHERE id IN (" + ",".join("'" + i.replace("'", "") + "'"
                                                for i in ids) + ")"
        rows = self.psql("SELECT id, count(*) FROM history.logins" + where + " GROUP BY id")
        return {r[0]: int(r[1]) for r in rows}

    def route_lag(self):
        """{route: lag} from the dispatcher's bus_dispatcher_lag gauge."""
        st, text, _ = harness.http("GET", self.dispatcher.url + "/metrics")
        out = {}
        if st != 200 or not isinstance(text, str):
            return out
        for line in text.splitlines():
            m = re.match(r'^bus_dispatcher_lag\{[^}]*route="([^"]+)"[^}]*\}\s+(\S+)$', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
        return out

    def request_events(self):
        """{route: [events, requests]} delivered so far, from the dispatcher's
        bus_dispatcher_request_events histogram (its _sum and _count)."""
        st, text, _ = harness.http("GET", self.dispatcher.url + "/metrics")
        out = {}
        if st != 200 or not isinstance(text, str):
            return out
        for line in text.splitlines():
            m = re.match(r'^bus_dispatcher_request_events_(sum|count)\{[^}]*route="([^"]+)"'
                         r'[^}]*\}\s+(\S+)$', line)
            if m:
                pair = out.setdefault(m.group(2), [0.0, 0.0])
                pair[0 if m.group(1) == "sum" else 1] += float(m.group(3))
        return out

    def log_tail(self):
        return self.ctx.log_tail()

    def check_principals(self):
        """Each process that uses the broker authenticated as its own principal, and the broker
        denied none of their requests (config/broker/acl.json grants all they need)."""
        log = self.broker.proc.log()
        for user, _ in PRINCIPALS.values():
            assert f"authenticated User:{user} from" in log, f"{user} never authenticated"
        st, text, _ = harness.http("GET", self.broker.metrics_url)
        assert st == 200, text
        denied = [ln for ln in text.splitlines()
                  if ln.startswith("bus_broker_acl_denied_total") and not ln.endswith(" 0")]
        assert not denied, f"the broker denied the product's processes: {denied}"


def start(ctx, db_url=None, campaign_accounts=(), retry_max_ms=None, service_config=None,
          bus_env=None, route_overrides=None):
    """Starts the whole product in ctx (see the module comment); returns a Product. Every
    process is stopped by ctx.cleanup()."""
    require_binaries()
    return Product(ctx, db_url or pg.fresh_db(), list(campaign_accounts), retry_max_ms,
                   service_config, bus_env, route_overrides)


def token(role, subject):
    """A bearer token of role for subject, signed with the product's AUTH_SECRET."""
    return tokens.token(role, subject, AUTH_SECRET)


def login(account, ip, **extra):
    """A login event at the current time."""
    import datetime
    ev = {"account_id": account, "ip": ip,
          "ts": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
          .replace("+00:00", "Z"),
          "session_id": "s-" + uuid.uuid4().hex[:8], "server": "e2e-1",
          "client": {"version": "1.2.3", "platform": "pc"}}
    ev.update(extra)
    return ev
