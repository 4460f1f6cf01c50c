"""Per-process principals on the embedded broker (docs/broker.md, "The product's principals"):
config/broker/acl.json grants the publisher, the dispatcher and busctl exactly what
config/bus/*.json needs of them, and a principal (or an unauthenticated client) that tries
anything else is refused. That the product runs on these rules without one denial is checked
after tests/e2e/test_product.py (Product.check_principals, every route having run).

Issue 22: any local process could write login.checked, read account.action, delete login and
join a route's consumer group (kcat took 5 of 6 notifications, then never sent)."""
import glob
import json
import os
import re
import subprocess
import uuid

import harness
import product

ROOT = harness.ROOT
ASAN = False  # ACL and SASL paths run sanitized in tests/integration/test_broker_security


def _acl():
    return json.load(open(product.ACL_FILE))


def _needs():
    """{(principal, resource, name, operation)} that config/bus/*.json needs: the publisher
    writes the topics with producers; the dispatcher reads every route's topic in the group
    bus.route.<route>, writes its output and dead-letter topic, and (dead-letter replay) reads
    the dead-letter topic in bus.dlq-replay.<route> and writes the route's topic."""
    out = set()
    for path in sorted(glob.glob(os.path.join(ROOT, "config", "bus", "*.json"))):
        doc = json.load(open(path))
        for t in doc.get("topics", []):
            if t.get("producers"):
                out.add(("User:publisher", "topic", t["name"], "Write"))
        for r in doc.get("routes", []):
            d = "User:dispatcher"
            out |= {(d, "topic", r["topic"], "Read"), (d, "group", f"bus.route.{r['name']}",
                                                         "Read")}
            if r.get("output"):
                out.add((d, "topic", r["output"], "Write"))
            if r.get("dead_letter"):
                out |= {(d, "topic", r["dead_letter"], "Write"),
                        (d, "topic", r["dead_letter"], "Read"),
                        (d, "group", f"bus.dlq-replay.{r['name']}", "Read"),
                        (d, "topic", r["topic"], "Write")}
    return out


def _granted(rule, resource, name):
    if rule["resource"] != resource:
        return False
    if rule.get("pattern") == "prefixed":
        return name.startswith(rule["name"])
    return rule["name"] in (name, "*")


def test_acl_file_grants_each_principal_what_config_bus_needs_and_no_more():
    acl = _acl()
    assert acl["super_users"] == ["User:busctl"], "busctl (topics, replay, trace) is the admin"
    rules = acl["acls"]
    assert all(r.get("permission", "allow") == "allow" for r in rules)
    needs = _needs()
    for principal, resource, name, op in sorted(needs):
        assert any(r["principal"] == principal and op in r["operations"] and
                   _granted(r, resource, name) for r in rules), \
            f"{principal} needs {op} on {resource} {name}: config/broker/acl.json lacks it"
    # No more: every operation of every rule serves a need, and nothing is granted on "*",
    # to User:*, or Create/Delete/Alter (only the admin creates, alters or deletes).
    for r in rules:
        assert r["principal"] in ("User:publisher", "User:dispatcher"), r
        assert r["name"] != "*", r
        for op in r["operations"]:
            assert op in ("Read", "Write"), r
            assert any(n[0] == r["principal"] and n[1] == r["resource"] and n[3] == op and
                       _granted(r, n[1], n[2]) for n in needs), f"{r}: {op} serves no need"


def _kcat_as(broker, user, args, input_bytes=None, ok=True, timeout=20):
    sasl = [a for k, v in broker.kafka_conf(user).items() for a in ("-X", f"{k}={v}")] \
        if user else []
    p = subprocess.run(["kcat", "-b", broker.bootstrap] + sasl + list(args), input=input_bytes,
                       capture_output=True, timeout=timeout * harness.timeout_mult())
    if ok:
        assert p.returncode == 0, p.stderr.decode()[-1500:]
    return p


def test_each_principal_is_refused_what_it_was_not_granted():
    ctx = harness.ctx()
    users = {u: "pw-" + uuid.uuid4().hex for u in ("publisher", "dispatcher", "busctl")}
    b = harness.start_broker(ctx, "embedded", topics=product.bus_topics(), sasl_users=users,
                             acl_file=product.ACL_FILE, admin="busctl")
    # The publisher writes login...
    _kcat_as(b, "publisher", ["-P", "-t", "login", "-p", "0"], b"a login\n")
    # ...but cannot forge a checked login, read what it wrote, or create a topic.
    for args, inp in [(["-P", "-t", "login.checked", "-p", "0"], b"forged\n"),
                      (["-C", "-t", "login", "-p", "0", "-o", "beginning", "-c", "1", "-e"], None),
                      (["-P", "-t", "new-topic", "-p", "0"], b"x\n")]:
        p = _kcat_as(b, "publisher", args, inp, ok=False)
        assert p.returncode != 0 and re.search(rb"[Aa]uthori[sz]ation|not authorized",
                                               p.stderr), (args, p.stderr[-800:])
    # The dispatcher reads login in its route's group, not in another group.
    out = _kcat_as(b, "dispatcher", ["-G", "bus.route.ipcheck", "login", "-X",
                                     "auto.offset.reset=earliest", "-c", "1", "-e",
                                     "-q"]).stdout
    assert out.strip() == b"a login", out
    p = _kcat_as(b, "dispatcher", ["-G", "thief", "notification", "-c", "1", "-e", "-q"],
                 ok=False, timeout=30)
    assert p.returncode != 0 and re.search(rb"not authori[sz]ed", p.stderr), p.stderr[-800:]
    # Without SASL: refused (the product's broker requires it).
    p = _kcat_as(b, None, ["-L", "-m", "1"], ok=False)
    assert p.returncode != 0, p.stdout
    # The admin may do what the others may not.
    harness.kcat(["-P", "-b", b.bootstrap, "-t", "login.checked", "-p", "0"], b"admin\n")
