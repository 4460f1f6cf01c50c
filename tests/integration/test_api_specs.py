"""The OpenAPI specs of docs/api/ (issue 23, item 5) hold against the code.

(a) redocly lint (@redocly/cli, installed by tools/deps.sh into tools/apicheck/) passes on every
    spec with no error and no warning (the few problems ignored on purpose are listed, with the
    reason, in docs/api/.redocly.lint-ignore.yaml);
(b) contract, both ways, from the C source: every route a process registers
    (http_server_route, the pages of webpage_serve / webpage_serve_files, and the probes every
    http_server serves) is in that process's spec, and every operation of the spec is registered;
(c) every operation of every spec answers on the running product with something else than the
    server's own 404 (no route) or 405 (no such method), and with a status, content type and
    JSON body its spec declares: the whole product starts once for the module
    (tests/lib/product.py) plus an embedded broker with its admin port.

The specs describe INTERFACES.md's second-wave interfaces even where the code does not have them
yet; those operations are named in PENDING. A pending operation that the code now registers
fails (b): drop it from PENDING then, so the list never outlives its reason."""
import glob
import json
import os
import re
import subprocess
import uuid

import harness
import jsonschema
import product
from tokens import auth

ASAN = False  # reads source and specs; (c) only calls the processes other tests cover

ROOT = harness.ROOT
API_DIR = os.path.join(ROOT, "docs", "api")
REDOCLY = os.path.join(ROOT, "tools", "apicheck", "node_modules", ".bin", "redocly")
CONFIG = os.path.join(API_DIR, "redocly.yaml")
NOT_SPECS = {"common.yaml", "redocly.yaml"}  # shared components ($ref'd) and the lint config

# spec -> (source folder of the process, process name in tests/lib/product.py)
SPECS = {
    "publisher.yaml": ("bus/publisher", "bus-publisher"),
    "dispatcher.yaml": ("bus/dispatcher", "bus-dispatcher"),
    "broker-admin.yaml": ("bus/broker", "bus-broker"),
    "ipcheck.yaml": ("services/ipcheck", "ipcheck"),
    "history.yaml": ("services/history", "history"),
    "guard.yaml": ("services/guard", "guard"),
    "notify.yaml": ("services/notify", "notify"),
    "campaign.yaml": ("services/campaign", "campaign"),
    "gamesim.yaml": ("tools/gamesim", "gamesim"),
}
# Operations INTERFACES.md promises ("Second-wave interfaces") that the code does not register yet.
PENDING = set()
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
PROBES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
ADMIN_TOKEN = "api-spec-test-admin-token-0123456789abcdef"
_B = {}


def redocly(args):
    if not os.access(REDOCLY, os.X_OK):
        raise AssertionError(f"{REDOCLY} missing: run `make deps` (tools/deps.sh installs it)")
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    return subprocess.run([REDOCLY] + args + ["--config", CONFIG], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def spec_files():
    return sorted(f for f in os.listdir(API_DIR)
                  if f.endswith(".yaml") and not f.startswith(".") and f not in NOT_SPECS)


def json_docs(text):
    """The JSON documents printed one after the other (redocly prints one per API)."""
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        doc, i = dec.raw_decode(text, i)
        out.append(doc)


def bundles():
    """{spec: the spec with every $ref resolved (redocly bundle --dereferenced, JSON)}."""
    if "docs" not in _B:
        out = harness.ctx().path("bundle", "x")[:-2]
        r = redocly(["bundle"] + [os.path.join(API_DIR, f) for f in spec_files()]
                    + ["--dereferenced", "-o", out, "--ext", "json"])
        assert r.returncode == 0, r.stdout + r.stderr
        _B["docs"] = {f: json.load(open(os.path.join(out, f[:-5] + ".json")))
                      for f in spec_files()}
    return _B["docs"]


def spec_ops(doc):
    """{(METHOD, path with every {name} as {})} of a spec."""
    ops = set()
    for path, item in doc["paths"].items():
        for m in METHODS:
            if m in item:
                ops.add((m.upper(), re.sub(r"\{[^}/]+\}", "{}", path)))
    return ops


def code_routes(folder):
    """The routes the C files of folder register, and whether it runs an HTTP server at all."""
    ops, has_server = set(), False
    for path in sorted(glob.glob(os.path.join(ROOT, folder, "*.c"))):
        src = open(path).read()
        has_server |= "http_server_new(" in src
        for m in re.finditer(r'http_server_route\(\s*\w+\s*,\s*"([A-Z]+)"\s*,\s*"([^"]+)"', src):
            ops.add((m.group(1), m.group(2)))
        # lib/http/webpage.c: webpage_serve serves <prefix>config.json and the files under prefix;
        # webpage_serve_files only the files.
        for m in re.finditer(r'webpage_serve\(\s*\w+\s*,\s*\w+\s*,\s*"([^"]+)"', src):
            ops |= {("GET", m.group(1) + "config.json"), ("GET", m.group(1))}
        for m in re.finditer(r'webpage_serve_files\(\s*\w+\s*,\s*"([^"]+)"', src):
            ops.add(("GET", m.group(1)))
    return (ops | PROBES if has_server else ops), has_server


def test_specs_pass_redocly_lint():
    files = spec_files()
    assert set(files) == set(SPECS), f"a spec without its process here, or the reverse: {files}"
    listed = set(re.findall(r"\{root:\s*([\w.-]+)\}", open(CONFIG).read()))
    assert listed == set(files), f"docs/api/redocly.yaml apis: {sorted(listed)} vs {files}"
    r = redocly(["lint", "--format", "json"] + [os.path.join(API_DIR, f) for f in files])
    reports = json_docs(r.stdout)
    assert len(reports) == len(files), r.stdout[-2000:] + r.stderr[-2000:]
    problems = [p for rep in reports for p in rep["problems"]]
    errors = sum(rep["totals"]["errors"] for rep in reports)
    warnings = sum(rep["totals"]["warnings"] for rep in reports)
    assert errors == 0 and warnings == 0 and r.returncode == 0, json.dumps(problems, indent=1)


def test_lint_refuses_an_invalid_spec():
    # The lint above can fail: a spec with a response without description and a parameter
    # without "in" (two of the errors the old guard.yaml had) is refused with errors.
    bad = harness.ctx().path("bad.yaml")
    with open(bad, "w") as f:
        f.write("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n"
                "      parameters: [{name: id}]\n      responses:\n        '200': {}\n")
    r = redocly(["lint", "--format", "json", bad])
    rep = json_docs(r.stdout)[0]
    assert r.returncode != 0 and rep["totals"]["errors"] >= 2, r.stdout


def test_every_http_process_has_a_spec():
    # Every folder holding a process that runs an HTTP server is the source of one spec.
    folders = set()
    for pattern in ("bus/*/main.c", "services/*/main.c", "tools/*/main.c"):
        for main in glob.glob(os.path.join(ROOT, pattern)):
            folder = os.path.relpath(os.path.dirname(main), ROOT)
            if code_routes(folder)[1]:
                folders.add(folder)
    assert folders == {src for src, _ in SPECS.values()}, sorted(folders)


def test_code_routes_and_spec_operations_match():
    docs = bundles()
    missing, extra, stale = [], [], []
    for spec, (folder, _) in SPECS.items():
        code = code_routes(folder)[0]
        ops = spec_ops(docs[spec])
        pending = {(m, p) for s, m, p in PENDING if s == spec}
        missing += [f"{spec}: {m} {p} (registered in {folder}/)" for m, p in code - ops]
        extra += [f"{spec}: {m} {p}" for m, p in ops - code - pending]
        stale += [f"{spec}: {m} {p}" for m, p in pending & code]
    assert not missing, "routes missing from their spec:\n" + "\n".join(sorted(missing))
    assert not extra, "spec operations the code does not register:\n" + "\n".join(sorted(extra))
    assert not stale, "registered now, drop from PENDING:\n" + "\n".join(sorted(stale))


def _processes():
    """The whole product, and an embedded broker whose admin port is known (the product's broker
    listens on a port of its own choosing)."""
    if "error" in _B:
        raise _B["error"]
    if "procs" not in _B:
        ctx = harness.Context("integration/test_api_specs:module")
        _B["ctx"] = ctx
        try:
            p = product.start(ctx, bus_env={"BUS_ADMIN_TOKEN": ADMIN_TOKEN})
            _B["product"] = p
            procs = {name: proc.url for name, proc in p.svc.items()}
            broker = ctx.start("bus-broker", port_key="http.listen", config={
                "listen": f"127.0.0.1:{harness.free_port()}",
                "data_dir": ctx.path("admin-broker", "x")[:-2]})
            procs["bus-broker"] = broker.url
            _B["procs"] = procs
        except BaseException as e:
            _B["error"] = e if isinstance(e, harness.Skip) else AssertionError(
                f"product start-up failed: {e!r}\n{ctx.log_tail()}")
            raise _B["error"]
    return _B["procs"]


def teardown_module():
    ctx = _B.get("ctx")
    _B.clear()
    if ctx is not None:
        ctx.cleanup()


def check_answer(op, st, body, headers):
    """What is wrong with an answer by the operation's spec: its status is not declared, its
    content type is not, or its JSON body does not fit the declared schema. None when fine."""
    resp = op["responses"].get(str(st)) or op["responses"].get("default")
    if resp is None:
        return f"status {st} is not in the spec ({body})"
    content = resp.get("content") or {}
    ctype = headers.get("content-type", "").split(";")[0].strip()
    if not content:
        return None if body in (None, "") else f"{st} with a body the spec does not declare"
    media = next((v for k, v in content.items() if k.split(";")[0].strip() == ctype), None)
    if media is None:
        return f"{st} as {ctype!r}, the spec says {sorted(content)}"
    if ctype == "application/json" and "schema" in media:
        err = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(media["schema"]).iter_errors(body))
        if err is not None:
            return f"{st} body does not fit the spec: {err.message} at {list(err.absolute_path)}"
    return None


def test_every_spec_operation_answers():
    # No token, no signature, no body: protected operations answer 401, deliveries 401
    # (the product signs with a secret), others 400/422 — whatever the handler says proves the
    # route; only the server's own {"error": "not_found", "message": "No such resource."} and
    # 405 mean it is not there. Path parameters get a made-up value: a handler's own 404 (e.g.
    # unknown_route) carries another error code. Each answer must also be one the spec declares:
    # its status, its content type and, for JSON, a body that fits the schema.
    docs = bundles()
    procs = _processes()
    wrong, answered = [], 0
    for spec, (_, name) in SPECS.items():
        for path, item in docs[spec]["paths"].items():
            for m in METHODS:
                templ = re.sub(r"\{[^}/]+\}", "{}", path)
                if m not in item or (spec, m.upper(), templ) in PENDING:
                    continue
                url = procs[name] + re.sub(r"\{[^}/]+\}", "spec-check", path)
                st, body, headers = harness.http(m.upper(), url)
                is_router_404 = st == 404 and isinstance(body, dict) and \
                    body.get("error") == "not_found" and body.get("message") == "No such resource."
                if st == 405 or is_router_404:
                    wrong.append(f"{spec}: {m.upper()} {path} -> {st} {body}")
                    continue
                why = check_answer(item[m], st, body, headers)
                if why:
                    wrong.append(f"{spec}: {m.upper()} {path}: {why}")
                answered += 1
    assert not wrong, "\n".join(wrong)
    assert answered >= 40, answered


def test_authorized_answers_fit_their_specs():
    # The answers of the calls that succeed, with the right token or signature, fit the spec
    # too (statuses, content types and bodies of the main operations).
    docs = bundles()
    procs = _processes()
    p = _B["product"]
    acct = "spec-" + uuid.uuid4().hex[:8]
    admin = {"Authorization": "Bearer " + ADMIN_TOKEN}
    producer = {"Authorization": "Bearer " + product.LOGIN_TOKEN}
    player, staff = auth(product.token("player", acct)), auth(product.token("staff", "spec-sam"))
    event = product.login(acct, "8.8.8.8")
    raw = json.dumps(event).encode()
    signed = harness.delivery_headers(p.signing_secret, raw, "spec-" + uuid.uuid4().hex, "login")
    calls = [
        ("publisher.yaml", "POST", "/v1/topics/{topic}/events", "/v1/topics/login/events",
         producer, event),
        ("publisher.yaml", "POST", "/v1/topics/{topic}/batch", "/v1/topics/login/batch",
         producer, [event, event]),
        ("dispatcher.yaml", "GET", "/v1/routes", "/v1/routes", admin, None),
        ("dispatcher.yaml", "GET", "/v1/topology", "/v1/topology", admin, None),
        ("dispatcher.yaml", "POST", "/v1/reload", "/v1/reload", admin, None),
        ("ipcheck.yaml", "POST", "/v1/deliveries/login", "/v1/deliveries/login", signed, raw),
        ("guard.yaml", "PUT", "/v1/accounts/{id}/policy", f"/v1/accounts/{acct}/policy", player,
         {"action": "notify", "channels": ["ingame"], "allowed_countries": ["JP"]}),
        ("guard.yaml", "GET", "/v1/accounts/{id}/policy", f"/v1/accounts/{acct}/policy", player,
         None),
        ("guard.yaml", "GET", "/v1/accounts/{id}/status", f"/v1/accounts/{acct}/status", player,
         None),
        ("guard.yaml", "GET", "/v1/accounts/{id}/contacts", f"/v1/accounts/{acct}/contacts",
         {"Authorization": "Bearer dev-only-notify-contacts-token"}, None),  # notify's (dev)
        ("guard.yaml", "GET", "/v1/support/accounts", "/v1/support/accounts?prefix=spec-", staff,
         None),
        ("guard.yaml", "GET", "/v1/support/accounts/{id}", f"/v1/support/accounts/{acct}", staff,
         None),
        ("guard.yaml", "GET", "/v1/support/accounts/{id}/locks",
         f"/v1/support/accounts/{acct}/locks", staff, None),
        ("guard.yaml", "GET", "/v1/support/audit", f"/v1/support/audit?account_id={acct}", staff,
         None),
        ("history.yaml", "GET", "/v1/accounts/{id}/logins", f"/v1/accounts/{acct}/logins", staff,
         None),
    ]
    name_of = {spec: name for spec, (_, name) in SPECS.items()}
    wrong = []
    for spec, method, path, url, headers, body in calls:
        is_raw = isinstance(body, bytes)
        st, answer, hdrs = harness.http(method, procs[name_of[spec]] + url,
                                        None if is_raw else body, headers=headers,
                                        raw=body if is_raw else None)
        why = check_answer(docs[spec]["paths"][path][method.lower()], st, answer, hdrs)
        if not 200 <= st < 300 or why:
            wrong.append(f"{spec}: {method} {url} -> {st}: {why or answer}")
    assert not wrong, "\n".join(wrong)
