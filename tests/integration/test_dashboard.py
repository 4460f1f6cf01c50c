"""The bus dashboard on the dispatcher: the admin API behind its token (topology, live route
figures, a route's dead letters, their replay through the route), the page's security headers,
and the page itself in a real browser (tests/browser/dashboard.mjs: sign in, watch the counters
move while events are published, inspect a dead letter, fix the endpoint, replay it, see it
arrive).

Set-up: a broker, the publisher with topic `orders` (producer token below), and a dispatcher
with three routes of `orders`: `orders-ok` to an endpoint answering 200, `orders-bad` to one
answering 400 (so every event is dead-lettered to `orders.dlq`) until it is told to accept, and
`orders-down` to one answering 503 (retried; its breaker opens)."""
import hashlib
import importlib.util
import os
import re
import subprocess
import threading
import uuid

import browser
import harness

_spec = importlib.util.spec_from_file_location(
    "dispatcher_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "test_dispatcher.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

BROKERS = ["mock", "embedded"]
ADMIN_TOKEN = "test-admin-token-7f3a"
ADMIN = {"Authorization": "Bearer " + ADMIN_TOKEN}
SHOP_TOKEN = "test-shop-token"


class Endpoint:
    """A recording endpoint: answers deliveries to /in with `status` (200 or 400, switched by
    POST /control/accept), lists the accepted ce-ids at GET /received."""

    def __init__(self, status):
        self.lock = threading.Lock()
        self.status = status
        self.accepted = []   # ce-ids answered 2xx, in arrival order
        self.refused = []

    def __call__(self, method, path, headers, body):
        if method == "POST" and path == "/control/accept":
            with self.lock:
                self.status = 200
            return 200, {"status": 200}, {"Access-Control-Allow-Origin": "*"}
        if method == "GET" and path == "/received":
            with self.lock:
                return 200, {"accepted": list(self.accepted)}, {}
        if method != "POST" or path != "/in":
            return 404, {"error": "not_found"}, {}
        with self.lock:
            status = self.status
            (self.accepted if status < 300 else self.refused).append(headers.get("ce-id"))
        if status >= 300:
            return status, {"error": "rejected", "message": "order refused by the test"}, {}
        return 200, None, {}

    def accepted_ids(self):
        with self.lock:
            return set(self.accepted)


class Bus:
    """broker + publisher + dispatcher with the two routes."""

    def __init__(self):
        ctx = harness.ctx()
        self.broker = td.broker_with({"orders": 2, "orders.dlq": 1})
        self.ok, self.bad, self.down = Endpoint(200), Endpoint(400), Endpoint(503)
        self.ok_url, _ = ctx.serve(self.ok)
        self.bad_url, _ = ctx.serve(self.bad)
        self.down_url, _ = ctx.serve(self.down)
        topics = [{"name": "orders", "partitions": 2, "key": "/order_id", "producers": [
                      {"name": "shop",
                       "token_sha256": hashlib.sha256(SHOP_TOKEN.encode()).hexdigest()}]},
                  {"name": "orders.dlq", "partitions": 1}]
        routes = [td.route("orders-ok", "orders", self.ok_url + "/in"),
                  td.route("orders-bad", "orders", self.bad_url + "/in",
                           dead_letter="orders.dlq"),
                  td.route("orders-down", "orders", self.down_url + "/in")]
        bus_dir = self.bus_dir = td.bus_config(topics, routes)
        self.publisher = ctx.start("bus-publisher", ready_path="/readyz", config={
            "bootstrap": self.broker.bootstrap, "bus_config_dir": bus_dir,
            "bus_schema": td.SCHEMA})
        self.disp = td.start_dispatcher(self.broker, bus_dir, admin={"token": ADMIN_TOKEN})
        self.url = self.disp.url

    def publish(self, n, prefix="o"):
        ids = []
        for i in range(n):
            ev = {"order_id": f"{prefix}-{i}", "amount": i + 1}
            status, body, _ = harness.http(
                "POST", self.publisher.url + "/v1/topics/orders/events", ev,
                headers={"Authorization": "Bearer " + SHOP_TOKEN})
            assert status == 202, (status, body)
            ids.append(body["id"])
        return ids

    def api(self, method, path, token=ADMIN_TOKEN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return harness.http(method, self.url + path, headers=headers, timeout=30)

    def route(self, name):
        _, body, _ = self.api("GET", "/v1/routes")
        return next(r for r in body["routes"] if r["name"] == name)


@harness.one_broker
def test_admin_api_needs_the_token():
    bus = Bus()
    for method, path in [("GET", "/v1/routes"), ("GET", "/v1/topology"),
                         ("POST", "/v1/reload"), ("GET", "/v1/routes/orders-bad/dead-letters"),
                         ("POST", "/v1/routes/orders-bad/dead-letters/replay")]:
        status, body, hdrs = bus.api(method, path, token=None)
        assert status == 401 and body["error"] == "unauthorized", (path, status, body)
        assert hdrs.get("www-authenticate") == "Bearer"
        status, body, _ = bus.api(method, path, token="dev-admin-token")
        assert status == 403 and body["error"] == "forbidden", (path, status, body)
    # the token is never taken from the URL
    status, _, _ = bus.api("GET", "/v1/routes?token=" + ADMIN_TOKEN, token=None)
    assert status == 401
    # Prometheus and the orchestrator keep their open endpoints
    for path in ("/healthz", "/readyz", "/metrics"):
        assert harness.http("GET", bus.url + path)[0] == 200, path
    # the effective configuration logged at start hides the token
    assert ADMIN_TOKEN not in bus.disp.log()


def test_busctl_sends_the_admin_token_from_env():
    bus = Bus()
    path = harness.bin_path("busctl")
    if not os.path.exists(path):
        raise harness.Skip("busctl not built")
    env = dict(os.environ, BUS_BOOTSTRAP=bus.broker.bootstrap, DISPATCHER_URLS=bus.url,
               BUS_SCHEMA=td.SCHEMA)
    env.pop("BUS_ADMIN_TOKEN", None)
    p = subprocess.run([path, "apply", bus.bus_dir], capture_output=True, text=True,
                       cwd=harness.ROOT, env=env, timeout=60 * harness.timeout_mult())
    assert p.returncode == 1 and "forbidden" in p.stderr, p.stdout + p.stderr
    env["BUS_ADMIN_TOKEN"] = ADMIN_TOKEN
    p = subprocess.run([path, "apply", bus.bus_dir], capture_output=True, text=True,
                       cwd=harness.ROOT, env=env, timeout=60 * harness.timeout_mult())
    assert p.returncode == 0 and "reloaded " + bus.url in p.stdout, p.stdout + p.stderr
    ids = bus.publish(1)
    harness.wait_for(lambda: bus.ok.accepted_ids() >= set(ids), 30, what="ok route delivered")

    def lag_lists_route():
        p = subprocess.run([path, "lag"], capture_output=True, text=True, cwd=harness.ROOT,
                           env=env, timeout=30 * harness.timeout_mult())
        assert p.returncode == 0, p.stdout + p.stderr
        return "orders-ok" in p.stdout
    harness.wait_for(lag_lists_route, 10, what="busctl lag lists the route")


def test_topology_live_figures_dead_letters_and_replay():
    bus = Bus()
    status, topo, _ = bus.api("GET", "/v1/topology")
    assert status == 200, topo
    routes = {r["name"]: r for r in topo["routes"]}
    assert set(routes) == {"orders-ok", "orders-bad", "orders-down"}
    assert routes["orders-bad"]["dead_letter"] == "orders.dlq"
    assert routes["orders-ok"]["dead_letter"] is None
    assert routes["orders-ok"]["endpoint"] == bus.ok_url + "/in"
    assert routes["orders-ok"]["mode"] == "one-way" and routes["orders-ok"]["ordering"] == "key"
    topics = {t["name"]: t for t in topo["topics"]}
    assert topics["orders"]["partitions"] == 2 and topics["orders"]["key"] == "/order_id"

    ids = bus.publish(6)
    harness.wait_for(lambda: bus.ok.accepted_ids() >= set(ids), 30, what="ok route delivered")
    harness.wait_for(lambda: bus.route("orders-ok")["counters"]["delivered"] >= 6, 10,
                     what="delivered counter of orders-ok")
    harness.wait_for(lambda: bus.route("orders-bad")["counters"]["dead_lettered"] >= 6, 30,
                     what="dead-lettered counter of orders-bad")
    bad = bus.route("orders-bad")
    assert bad["counters"]["failed"] >= 6 and bad["counters"]["delivered"] == 0
    assert bad["counters"]["answers"].get("400", 0) >= 6
    assert bad["dead_letter"] == "orders.dlq" and bad["state"] in ("running", "retrying")
    assert isinstance(bad["lag"], int)
    # the endpoint answering 503: retried, breaker open, nothing delivered, events still lagging
    harness.wait_for(lambda: bus.route("orders-down")["state"] == "breaker-open", 20,
                     what="breaker of orders-down open")
    down = bus.route("orders-down")
    assert down["counters"]["retried"] >= 5 and down["counters"]["delivered"] == 0
    assert down["counters"]["answers"].get("503", 0) >= 5
    harness.wait_for(lambda: bus.route("orders-down")["lag"] >= 6, 10, what="lag of orders-down")
    # the failing route says what failed last and since when; a delivering one does not
    assert down["last_error"].startswith("HTTP 503"), down
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", down["failing_since"]), down
    assert down["last_error_at"] >= down["failing_since"], down
    ok = bus.route("orders-ok")
    assert ok["failing_since"] is None and ok["last_error"] is None, ok
    assert bad["last_error"].startswith("HTTP 400") and bad["failing_since"], bad

    # the dead letters: newest first, with the failure's status, attempts and answer
    status, dl, _ = bus.api("GET", "/v1/routes/orders-bad/dead-letters")
    assert status == 200, dl
    assert dl["route"] == "orders-bad" and dl["topic"] == "orders.dlq" and dl["records"] == 6
    got = {d["id"]: d for d in dl["dead_letters"]}
    assert set(got) == set(ids), (sorted(got), ids)
    d = got[ids[0]]
    assert d["status"] == 400 and d["attempts"] == 1
    assert "order refused by the test" in d["answer"]
    assert d["value"] == {"order_id": "o-0", "amount": 1}
    assert d["key"] == "o-0" and d["from"]["topic"] == "orders"
    assert d["headers"]["x-bus-route"] == "orders-bad" and re.match(r"^\d{4}-\d\d-\d\dT", d["time"])
    times = [x["time"] for x in dl["dead_letters"]]
    assert times == sorted(times, reverse=True)
    status, two, _ = bus.api("GET", "/v1/routes/orders-bad/dead-letters?limit=2")
    assert status == 200 and len(two["dead_letters"]) == 2
    for q in ("limit=0", "limit=abc", "limit=100000"):
        status, body, _ = bus.api("GET", "/v1/routes/orders-bad/dead-letters?" + q)
        assert status == 400 and body["error"] == "bad_limit", (q, body)
    status, body, _ = bus.api("GET", "/v1/routes/nope/dead-letters")
    assert status == 404 and body["error"] == "unknown_route"
    status, body, _ = bus.api("GET", "/v1/routes/orders-ok/dead-letters")
    assert status == 404 and body["error"] == "no_dead_letter"

    # fix the endpoint, replay: every dead letter reaches orders-bad's endpoint, and only it
    bus.bad.status = 200
    status, body, _ = bus.api("POST", "/v1/routes/orders-bad/dead-letters/replay")
    assert status == 200, body
    assert body == {"route": "orders-bad", "from": "orders.dlq", "to": "orders",
                    "replayed": 6, "skipped": 0}
    harness.wait_for(lambda: bus.bad.accepted_ids() >= set(ids), 30,
                     what="replayed dead letters delivered")
    assert len(bus.ok.accepted) == 6, "the replay went to another route of the topic"
    status, body, _ = bus.api("POST", "/v1/routes/orders-bad/dead-letters/replay")
    assert status == 200 and body["replayed"] == 0, body


@harness.one_broker
def test_page_served_with_strict_headers():
    bus = Bus()
    status, body, hdrs = harness.http("GET", bus.url + "/")
    assert status == 200 and hdrs["content-type"].startswith("text/html")
    csp = hdrs["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert hdrs["x-content-type-options"] == "nosniff"
    assert re.search(r'<script type="module" src="dashboard.js">', body)
    assert not re.search(r"<script(?![^>]*\bsrc=)", body), "inline script in index.html"
    assert not re.search(r"\sstyle=|<style", body), "inline style in index.html"
    for f, ctype in (("dashboard.js", "text/javascript"), ("graph.js", "text/javascript"),
                     ("api.js", "text/javascript"), ("style.css", "text/css")):
        status, text, hdrs = harness.http("GET", bus.url + "/" + f)
        assert status == 200 and hdrs["content-type"].startswith(ctype), f
        assert "innerHTML" not in text and "eval(" not in text, f
    assert harness.http("GET", bus.url + "/../config/bus/login.json")[0] == 404


@harness.one_broker
@harness.release_only
def test_dashboard_in_browser():
    bus = Bus()
    bus.publish(3, prefix="before")
    browser.run("dashboard", env={
        "URL": bus.url + "/", "ADMIN_TOKEN": ADMIN_TOKEN,
        "PUBLISH_URL": bus.publisher.url + "/v1/topics/orders/events",
        "PUBLISH_TOKEN": SHOP_TOKEN, "OK_ROUTE": "orders-ok", "BAD_ROUTE": "orders-bad",
        "DOWN_ROUTE": "orders-down",
        "BAD_ENDPOINT": bus.bad_url, "RUN_ID": uuid.uuid4().hex[:8]})
    assert bus.bad.accepted, "the browser's replay reached the endpoint"


@harness.one_broker
def test_config_keys_documented():
    path = harness.bin_path("bus-dispatcher")
    if not os.path.exists(path):
        raise harness.Skip("bus-dispatcher not built")
    out = subprocess.run([path, "--config-doc"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    doc = open(os.path.join(harness.ROOT, "docs", "bus.md")).read()
    for key in re.findall(r"^\| `([a-z_.]+)`", out.stdout, re.M):
        assert f"`{key}`" in doc, f"config key {key} missing from docs/bus.md"
    assert "dev-admin-token" not in out.stdout, "a secret's default printed by --config-doc"


def test_lag_of_a_paused_route_follows_new_events():
    """With the breaker open a route's partitions are paused (not fetched), so librdkafka's cached
    watermark stops: the dispatcher asks the broker, or the lag (and the lag alert) would freeze
    through the outage."""
    bus = Bus()
    bus.publish(6)
    harness.wait_for(lambda: bus.route("orders-down")["state"] == "breaker-open", 20,
                     what="breaker of orders-down open")
    harness.wait_for(lambda: bus.route("orders-down")["lag"] >= 6, 10, what="lag of orders-down")
    bus.publish(5)
    harness.wait_for(lambda: bus.route("orders-down")["lag"] >= 11, 20,
                     what="lag of the paused orders-down follows new events")
    assert bus.route("orders-down")["state"] == "breaker-open"


def test_dashboard_at_390px():
    """The dashboard on a phone (390 px): signed in, with its graph and routes (one of them
    failing, its breaker open), no horizontal scroll, in English and in Korean, and in Korean no
    English word of the page's own (tests/browser/narrow.mjs). What may stay English is the
    data's: the topic and route names (orders, orders.dlq, orders-ok/-bad/-down) and the
    endpoints' URLs (http) in the routes' tooltips."""
    bus = Bus()
    bus.publish(3, prefix="narrow")
    harness.wait_for(lambda: bus.route("orders-down")["state"] == "breaker-open", 20,
                     what="breaker of orders-down open")
    browser.run("narrow", env={"URL": bus.url + "/", "PAGE": "dashboard",
                               "TOKEN": ADMIN_TOKEN, "EXEMPT": "orders ok bad down dlq http"})
