"""Observability of the whole product (issue 6): one log schema, one trace id per journey,
busctl trace, documented metrics, and the operations files of docs/ops.

The product (tests/lib/product.py: embedded broker, publisher, dispatcher with the real
config/bus routes, every service, gamesim, PostgreSQL) starts once for the module with every
process at log.level debug (per-delivery lines are debug lines, docs/logging.md). One login from
abroad of an account whose policy is "kick" and which is on the campaign list travels every route
of the product: ipcheck -> login.checked -> history + guard -> account.action -> history-actions,
notify-actions, gamesim-kick; campaign -> notification -> notify-messages. The test gives the
publish a traceparent and follows its trace id through the Kafka headers of every derived event,
the log lines of every delivery and of every service that handled one, and busctl trace."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import harness
import product
from product import token

ROOT = harness.ROOT
LOG_SCHEMA = os.path.join(ROOT, "config", "schema", "log.schema.json")
METRICS_DOC = os.path.join(ROOT, "docs", "metrics.md")
OPS = os.path.join(ROOT, "docs", "ops")
US_IP = "8.8.8.8"
RUN = uuid.uuid4().hex[:6]
ACCOUNT = f"obs-{RUN}"
TRACE_ID = uuid.uuid4().hex  # 32 lowercase hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"
# Every route the login's journey takes, and the topics its derived events land on.
ROUTES = ["ipcheck", "campaign", "history", "guard", "history-actions", "notify-actions",
          "gamesim-kick", "notify-messages"]
DERIVED_TOPICS = ["login.checked", "account.action", "notification"]
HANDLERS = ["ipcheck", "campaign", "history", "guard", "notify", "gamesim"]


def _journey(ctx):
    """Starts the product, publishes the traced login and waits until it has gone everywhere;
    returns {"p": Product, "id": login id}."""
    debug = {"log.level": "debug"}
    p = product.start(ctx, campaign_accounts=[ACCOUNT],
                      service_config={n: debug for n in product.SERVICES + product.BUS})
    tok = token("player", ACCOUNT)
    p.set_email(ACCOUNT, tok)
    for path, body in (("policy", {"action": "kick", "channels": ["email", "ingame"]}),):
        st, b, _ = harness.http("PUT", f"{p.url('guard')}/v1/accounts/{ACCOUNT}/{path}",
                                body, headers={"Authorization": "Bearer " + tok})
        assert st == 200, (path, st, b)
    st, body, _ = harness.http(
        "POST", p.publisher.url + "/v1/topics/login/events", product.login(ACCOUNT, US_IP),
        headers={"Authorization": "Bearer " + product.LOGIN_TOKEN,
                 "traceparent": TRACEPARENT})
    assert st == 202, (st, body)
    harness.wait_for(lambda: not missing_hops(p), 60 * harness.timeout_mult(),
                     what="every hop of the traced login in the logs")
    return {"p": p, "id": body["id"]}


# The product and the traced login, once for the module (on first use); teardown_module() stops
# them.
_J = harness.ModuleFixture("e2e/test_observability", _journey)
the_journey = _J.get
teardown_module = _J.teardown


def traced_lines(p):
    """{process name: [parsed log lines carrying TRACE_ID]}."""
    out = {}
    for proc in p.ctx.procs:
        out.setdefault(proc.name, []).extend(
            line for line in proc.log_lines() if line.get("trace_id") == TRACE_ID)
    return out


def missing_hops(p):
    """The hops of the journey not (yet) in the logs, as sentences."""
    lines = traced_lines(p)
    missing = []
    disp = lines.get("bus-dispatcher", [])
    for route in ROUTES:
        if not any(ln.get("route") == route and 200 <= ln.get("status", 0) < 300
                   and ln.get("event_id") for ln in disp):
            missing.append(f"dispatcher delivery of route {route}")
    for topic in DERIVED_TOPICS:
        if not any(ln.get("topic") == topic and "produced" in ln["msg"] for ln in disp):
            missing.append(f"dispatcher produced to {topic}")
    for name in HANDLERS:
        if not any(ln.get("status", 0) // 100 == 2 and ln.get("path", "").startswith("/v1/")
                   for ln in lines.get(name, [])):
            missing.append(f"{name} handled a delivery")
    if not any("produced to login" in ln["msg"] for ln in lines.get("bus-publisher", [])):
        missing.append("publisher produced the login")
    if not any(ln["msg"].endswith(": kick") for ln in lines.get("guard", [])):
        missing.append("guard's action line")
    if not any(" sent to " in ln["msg"] for ln in lines.get("notify", [])):
        missing.append("notify's sent line")
    return missing


def with_journey(fn):
    def run():
        j = the_journey()
        try:
            fn(j)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{j['p'].log_tail()}") from e
    run.__name__ = fn.__name__
    return run


@with_journey
def test_every_log_line_of_every_process_matches_the_log_schema(j):
    import jsonschema
    schema = json.load(open(LOG_SCHEMA))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    checked = set()
    for proc in j["p"].ctx.procs:
        n = 0
        for i, raw in enumerate(proc.log().splitlines()):
            if not raw.strip():
                continue
            if harness.is_asan() and not raw.startswith("{"):
                continue  # sanitizer reports are checked by the context's cleanup
            try:
                line = json.loads(raw)
            except ValueError:
                raise AssertionError(f"{proc.name} line {i + 1} is not JSON: {raw[:300]}")
            errors = sorted(validator.iter_errors(line), key=str)
            assert not errors, f"{proc.name} line {i + 1}: {errors[0].message}: {raw[:300]}"
            assert line["service"] == proc.name, (proc.name, line["service"])
            n += 1
        assert n > 0, f"{proc.name} logged nothing"
        checked.add(proc.name)
    assert {"bus-broker", "bus-publisher", "bus-dispatcher"} <= checked, checked
    assert set(HANDLERS) <= checked, checked


@with_journey
def test_trace_id_of_the_publish_is_in_every_derived_event(j):
    p = j["p"]
    found = {}
    for topic in ["login"] + DERIVED_TOPICS:
        msgs = harness.kcat_consume(p.broker.bootstrap, topic, 100000)
        # (guard's own messages on notification, e.g. the notice of the test's settings change,
        # are not derived from the login: guard publishes them itself, ce-source "guard")
        mine = [m for m in msgs if m["key"] == ACCOUNT and
                not (topic == "notification" and m["headers"].get("ce-source") == "guard")]
        assert mine, f"no event of {ACCOUNT} on {topic}"
        for m in mine:
            tp = m["headers"].get("traceparent", "")
            assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", tp), (topic, m)
            assert tp.split("-")[1] == TRACE_ID, (topic, tp, m["headers"])
            if topic != "login":
                assert m["headers"].get("causation-id"), (topic, m["headers"])
        found[topic] = mine
    assert found["login"][0]["headers"]["ce-id"] == j["id"]
    # login.checked and notification are caused by the login itself.
    assert found["login.checked"][0]["headers"]["causation-id"] == j["id"]
    assert found["notification"][0]["headers"]["causation-id"] == j["id"]
    checked_ids = {m["headers"]["ce-id"] for m in found["login.checked"]}
    assert found["account.action"][0]["headers"]["causation-id"] in checked_ids


@with_journey
def test_every_hop_logs_the_trace_id(j):
    # the_journey() waited for every hop; this pins what a hop's line holds.
    assert not missing_hops(j["p"])
    disp = traced_lines(j["p"])["bus-dispatcher"]
    ipcheck = [ln for ln in disp if ln.get("route") == "ipcheck" and "status" in ln]
    assert ipcheck[0]["event_id"] == j["id"], ipcheck[0]
    for key in ("endpoint", "topic", "partition", "offset", "attempt", "seconds"):
        assert key in ipcheck[0], (key, ipcheck[0])
    assert ipcheck[0]["attempt"] == 1 and ipcheck[0]["topic"] == "login", ipcheck[0]


def busctl_trace(p, event_id, *extra):
    logs = os.path.dirname(p.ctx.procs[0].log_path)
    r = subprocess.run([harness.bin_path("busctl"), "trace", event_id, "--logs", logs] +
                       list(extra), capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, **p.busctl_env()),
                       timeout=60 * harness.timeout_mult())
    return r


@with_journey
def test_busctl_trace_prints_the_whole_journey(j):
    p = j["p"]
    r = busctl_trace(p, j["id"], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["event_id"] == j["id"] and doc["trace_id"] == TRACE_ID, doc
    hops = doc["hops"]
    assert [h["ts"] for h in hops] == sorted(h["ts"] for h in hops), "not in time order"
    records = [h for h in hops if h["source"] == "topic"]
    topics = {h["topic"] for h in records}
    assert {"login"} | set(DERIVED_TOPICS) <= topics, topics
    published = [h for h in records if h["ce_id"] == j["id"]]
    assert published and published[0]["topic"] == "login", published
    for h in records:
        if h["topic"] != "login":
            assert h["causation_id"], h
    lines = [h["line"] for h in hops if h["source"] == "log"]
    delivered = {ln.get("route") for ln in lines
                 if ln["service"] == "bus-dispatcher" and "status" in ln}
    assert set(ROUTES) <= delivered, delivered
    services = {ln["service"] for ln in lines}
    assert set(HANDLERS) | {"bus-publisher", "bus-dispatcher"} <= services, services

    human = busctl_trace(p, j["id"])
    assert human.returncode == 0, human.stderr
    out = human.stdout
    assert f"trace {TRACE_ID}" in out.splitlines()[0], out[:500]
    assert re.search(r"published login\[\d+\]@\d+\s+ce-id=" + re.escape(j["id"]), out), out
    for route in ROUTES:
        assert f"route {route}: delivered" in out, (route, out)
    for topic in DERIVED_TOPICS:
        assert re.search(r"produced " + re.escape(topic) + r"\[\d+\]@\d+", out), (topic, out)

    unknown = busctl_trace(p, "no-such-event-" + RUN)
    assert unknown.returncode == 1 and "not found" in unknown.stderr, unknown


# ---- metrics -----------------------------------------------------------------------------------

def documented_metrics():
    text = open(METRICS_DOC).read()
    return set(re.findall(r"^\|\s*`([a-z_:][a-z0-9_:]*)`", text, re.M))


def parse_exposition(text):
    """{family: type}; raises AssertionError on a malformed line."""
    types, helps, samples = {}, set(), set()
    for line in text.splitlines():
        if not line:
            continue
        m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$", line)
        if m:
            if m.group(1) == "TYPE":
                assert m.group(3) in ("counter", "gauge", "histogram", "summary", "untyped"), line
                types[m.group(2)] = m.group(3)
            else:
                helps.add(m.group(2))
            continue
        assert not line.startswith("#"), line
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                     r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (?P<value>\S+)$', line)
        assert m, f"bad sample line: {line}"
        float(m.group("value").replace("+Inf", "inf"))
        samples.add(m.group(1))
    for s in samples:
        fam = re.sub(r"_(bucket|sum|count)$", "", s) if s not in types else s
        assert fam in types, f"sample {s} without # TYPE"
    for fam in types:
        assert fam in helps, f"{fam} without # HELP"
    return types


def metrics_ports(p):
    out = {name: proc.url for name, proc in p.svc.items()}
    cfg = json.load(open(p.broker.proc.popen.args[-1]))
    out["bus-broker"] = "http://" + cfg["http.listen"]
    return out


@with_journey
def test_every_metric_follows_conventions_and_is_documented(j):
    documented = documented_metrics()
    assert len(documented) > 20, "docs/metrics.md lists no metrics table"
    seen = {}
    for name, url in metrics_ports(j["p"]).items():
        st, text, hdrs = harness.http("GET", url + "/metrics")
        assert st == 200, (name, st)
        assert hdrs.get("content-type", "").startswith("text/plain"), (name, hdrs)
        for fam, typ in parse_exposition(text).items():
            seen.setdefault(fam, set()).add(name)
            if typ == "counter":
                assert fam.endswith("_total"), f"{name}: counter {fam} must end in _total"
            else:
                assert not fam.endswith("_total"), f"{name}: {typ} {fam} ends in _total"
            if typ == "histogram" and ("latency" in fam or "duration" in fam or "age" in fam):
                assert fam.endswith("_seconds"), f"{name}: {fam} must be in seconds"
            assert not re.search(r"_(ms|millis|milliseconds|us|bytes_kb)$", fam), fam
            assert fam in documented, f"{name} exposes {fam}, not in docs/metrics.md"
    for fam in ("bus_broker_bytes_in_total", "bus_broker_bytes_out_total",
                "bus_broker_requests_total", "bus_broker_log_end_offset",
                "bus_broker_fsync_seconds", "bus_publisher_events_total",
                "bus_dispatcher_delivered_total", "bus_dispatcher_lag"):
        assert fam in seen, f"{fam} not exposed by any process"


def product_programs():
    """The product's programs as the Makefile knows them (every prog.mk but the benches')."""
    names = []
    for mk in glob.glob(os.path.join(ROOT, "*", "*", "prog.mk")) + \
            glob.glob(os.path.join(ROOT, "notify", "prog.mk")):
        if os.sep + "bench" + os.sep in mk:
            continue
        names += re.findall(r"^PROGRAMS \+= (\S+)", open(mk).read(), re.M)
    return sorted(names)


def version_of(program):
    r = subprocess.run([harness.bin_path(program), "--version"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, (program, r.returncode, r.stderr)
    first, *rest = r.stdout.splitlines()
    name, version = first.split(" ", 1)
    assert name == program and version and " " not in version, (program, r.stdout)
    assert any(line.startswith("librdkafka ") and "libpq " in line for line in rest), r.stdout
    return version


def test_every_binary_answers_version_with_the_build_of_this_checkout():
    programs = product_programs()
    assert len(programs) >= 12, programs
    versions = {p: version_of(p) for p in programs}
    assert len(set(versions.values())) == 1, versions
    described = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=ROOT,
                               capture_output=True, text=True)
    if described.returncode == 0:  # a build outside git says "unknown"
        # The binaries may predate the working tree's last edit (dirty or not): compare the
        # commit part only.
        head = described.stdout.strip().replace("-dirty", "")
        assert all(v.replace("-dirty", "") == head for v in versions.values()), (head, versions)


@with_journey
def test_every_process_exposes_build_info_and_process_metrics(j):
    for name, url in metrics_ports(j["p"]).items():
        st, text, _ = harness.http("GET", url + "/metrics")
        assert st == 200, (name, st)
        m = re.search(r'^bus_build_info\{version="([^"]+)",compiler="[^"]+",librdkafka="[^"]+",'
                      r'libpq="[^"]+",libmicrohttpd="[^"]+"\} 1$', text, re.M)
        assert m, f"{name}: no bus_build_info"
        assert m.group(1) == version_of(name), (name, m.group(1))
        values = dict(re.findall(r"^(process_[a-z_]+) (\S+)$", text, re.M))
        for fam in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                    "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                    "process_start_time_seconds"):
            assert fam in values, f"{name}: {fam} missing"
        pid = j["p"].broker.proc.popen.pid if name == "bus-broker" else j["p"].svc[name].popen.pid
        rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        # The scrape and the read above are moments apart: the same order of magnitude.
        assert 0.5 < float(values["process_resident_memory_bytes"]) / rss < 2, (name, values)
        assert 0 < float(values["process_open_fds"]) <= float(values["process_max_fds"]), values
        assert abs(float(values["process_start_time_seconds"]) - time.time()) < 3600, values


def test_every_documented_metric_is_registered_in_the_code():
    sources = ""
    for pattern in ("lib/*.c", "lib/*/*.c", "bus/*/*.c", "services/*/*.c", "tools/*/*.c"):
        for path in glob.glob(os.path.join(ROOT, pattern)):
            sources += open(path, errors="replace").read()
    stale = sorted(n for n in documented_metrics() if f'"{n}"' not in sources)
    assert not stale, f"docs/metrics.md lists metrics no process registers: {stale}"


# ---- docs/ops ----------------------------------------------------------------------------------

def test_ops_grafana_dashboard_queries_documented_metrics():
    dash = json.load(open(os.path.join(OPS, "grafana-dashboard.json")))
    assert dash.get("title") and isinstance(dash.get("panels"), list) and dash["panels"], dash
    documented = documented_metrics()
    exprs = []
    for panel in dash["panels"]:
        assert panel.get("type") and panel.get("title"), panel
        for t in panel.get("targets", []):
            exprs.append(t["expr"])
    assert len(exprs) >= 10, exprs
    for e in exprs:
        names = {n for n in re.findall(r"\b([a-z][a-z0-9_]*_[a-z0-9_]+)\b", e)
                 if not re.match(r"^(rate|irate|increase|sum|histogram_quantile|max|min|avg|"
                                 r"by|without|le|job|route|topic|status|result|reason|api|"
                                 r"partition|method|instance)$", n)}
        names = {re.sub(r"_(bucket|sum|count)$", "", n) if n not in documented else n
                 for n in names}
        unknown = names - documented - {"up"}
        assert not unknown, f"dashboard queries undocumented metrics {unknown}: {e}"


def test_ops_grafana_dashboard_filters_by_job_and_instance_and_parses_as_promql():
    dash = json.load(open(os.path.join(OPS, "grafana-dashboard.json")))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for name in ("job", "instance"):
        assert name in variables and variables[name].get("includeAll"), variables.keys()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    documented = documented_metrics() | {"up"}
    for e in exprs:
        # every series selector of a documented metric is narrowed to the chosen jobs/instances
        for m in re.finditer(r"(?<![$\w.])([a-z_][a-z0-9_]*)(\{[^}]*\})?(?!\s*\()", e):
            name = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            if name in documented or m.group(1) in documented:
                sel = m.group(2) or ""
                assert 'job=~"$job"' in sel and 'instance=~"$instance"' in sel, (e, m.group(0))
    promtool = shutil.which("promtool")
    if promtool is None:
        raise harness.Skip("promtool not installed (Debian package prometheus, make deps)")
    # promtool parses recording rules: each query, with Grafana's variables filled in, as one.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(exprs):
        q = e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*")
        lines += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(q)}"]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True,
                           timeout=60)
    finally:
        os.unlink(f.name)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ops_prometheus_config_and_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        raise harness.Skip("promtool not installed (Debian package prometheus, make deps)")
    r = subprocess.run([promtool, "check", "config", os.path.join(OPS, "prometheus.yml")],
                       capture_output=True, text=True, cwd=OPS, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "check", "rules", os.path.join(OPS, "alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = open(os.path.join(OPS, "alerts.yml")).read()
    documented = documented_metrics()
    for alert in ("RouteLagHigh", "BreakerOpen", "DeadLetters", "PublisherErrors",
                  "DeliveryErrors", "ProcessDown"):
        assert f"alert: {alert}" in text, alert
    for n in re.findall(r"\b(bus_[a-z0-9_]+|history_[a-z0-9_]+|http_[a-z0-9_]+)", text):
        n = re.sub(r"_(bucket|sum|count)$", "", n) if n not in documented else n
        assert n in documented, f"alerts.yml uses undocumented {n}"


def test_ops_systemd_units_cover_every_process():
    units = {os.path.basename(u)[:-len(".service")]
             for u in glob.glob(os.path.join(OPS, "systemd", "*.service"))}
    want = {"bus-broker", "bus-publisher", "bus-dispatcher", "ipcheck", "history", "guard",
            "notify", "campaign"}
    assert want <= units, want - units
    for name in want:
        text = open(os.path.join(OPS, "systemd", name + ".service")).read()
        for key in ("ExecStart=", "Restart=on-failure", "ProtectSystem=strict",
                    "NoNewPrivileges=yes", "[Install]", "Type=notify", "NotifyAccess=main",
                    "WatchdogSec="):
            assert key in text, (name, key)
        assert re.search(r"^ExecStart=/usr/local/bin/" + re.escape(name) + r"\b", text, re.M), \
            name
        assert "DynamicUser=yes" in text or re.search(r"^User=", text, re.M), name
    assert "StateDirectory=" in open(os.path.join(OPS, "systemd", "bus-broker.service")).read()
    # The dispatcher reloads its routes on SIGHUP, the broker its users and ACLs; the others
    # would ignore it.
    for name in want:
        text = open(os.path.join(OPS, "systemd", name + ".service")).read()
        assert ("ExecReload=/bin/kill -HUP $MAINPID" in text) == (
            name in ("bus-dispatcher", "bus-broker")), name
        deps = " ".join(re.findall(r"^(?:Wants|After)=(.*)$", text, re.M))
        if name in ("bus-publisher", "bus-dispatcher"):
            assert re.search(r"^Wants=.*bus-broker\.service", text, re.M), name
            assert "bus-broker.service" in deps, name
        if name in ("history", "guard", "notify", "campaign"):
            assert re.search(r"^Wants=.*postgresql\.service", text, re.M), name
            assert re.search(r"^After=.*postgresql\.service", text, re.M), name
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    for name in want:
        path = os.path.join(OPS, "systemd", name + ".service")
        r = subprocess.run([analyze, "verify", "--man=no", path], capture_output=True,
                           text=True, timeout=60)
        # Only the unit's own syntax counts: the binary is not installed on a test machine.
        errs = [ln for ln in (r.stdout + r.stderr).splitlines()
                if ln.strip() and "is not executable" not in ln]
        assert not errs, (name, errs)
