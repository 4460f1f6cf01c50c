"""Security of the embedded broker (bin/bus-broker): SASL/SCRAM-SHA-256/512 and PLAIN through
kcat and librdkafka (bus-kclient), the users file and `--scram-user`, sasl.required and the
production defaults, SIGHUP reloads. Real clients only; docs/broker.md "Security"."""
import json
import os
import re
import signal
import subprocess

import harness


def _scram_entry(name, password, iterations=4096):
    """The users-file entry made by `bus-broker --scram-user NAME` (the documented command)."""
    p = subprocess.run([harness.bin_path("bus-broker"), "--scram-user", name, str(iterations)],
                       input=(password + "\n").encode(), capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    entry = json.loads(p.stdout)
    assert list(entry) == [name]
    assert password not in p.stdout.decode(), "the password is never printed"
    return entry


def _users_file(ctx, users, rel="users.json"):
    entries = {}
    for name, pw in users.items():
        entries.update(_scram_entry(name, pw))
    return ctx.write_json(rel, {"users": entries})


def _start(ctx, env=None, **extra):
    """Starts bus-broker with a fresh data dir; returns (proc, bootstrap, metrics url)."""
    port, hport = harness.free_port(), harness.free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "data_dir": ctx.path("data", "x")[:-2],
           "http.listen": f"127.0.0.1:{hport}"}
    cfg.update(extra)
    proc = ctx.start("bus-broker", config=cfg, http=False, env=env)
    harness.wait_for(lambda: harness.tcp_open(port) or harness._raise_exit(proc), 10,
                     what="broker port")
    return proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{hport}/metrics"


def _sasl(user, pw, mech="SCRAM-SHA-256"):
    return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", f"sasl.mechanisms={mech}",
            "-X", f"sasl.username={user}", "-X", f"sasl.password={pw}"]


def _kcat_fails(args, timeout=20, input=None):
    """Runs kcat expecting a failure; returns its stderr."""
    p = subprocess.run(["kcat"] + args, capture_output=True, input=input,
                       timeout=timeout * harness.timeout_mult())
    assert p.returncode != 0, f"kcat {args} succeeded: {p.stdout[-500:]}"
    return p.stderr.decode(errors="replace")


def _metric(url, name, **labels):
    """The value of one sample of /metrics whose labels include these (0 when absent)."""
    status, text, _ = harness.http("GET", url)
    assert status == 200
    for ln in str(text).splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", ln)
        if m and m.group(1) == name and all(f'{k}="{v}"' in (m.group(2) or "")
                                            for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def test_scram_sha256_and_sha512_produce_and_consume_with_kcat():
    ctx = harness.ctx()
    users = _users_file(ctx, {"alice": "alice-password-1"})
    _, boot, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True,
                                   "topics": "sec:2"})
    lines = "".join(f"k{i}\tv{i}\n" for i in range(50)).encode()
    harness.kcat(["-P", "-b", boot, "-t", "sec", "-K", "\t"] + _sasl("alice", "alice-password-1"),
                 input_bytes=lines)
    out = harness.kcat(["-C", "-b", boot, "-t", "sec", "-o", "beginning", "-e", "-q", "-c", "50",
                        "-f", "%s\\n"] + _sasl("alice", "alice-password-1", "SCRAM-SHA-512"))
    assert sorted(out.decode().split()) == sorted(f"v{i}" for i in range(50))
    assert _metric(murl, "bus_broker_sasl_auth_total", mechanism="SCRAM-SHA-256",
                   result="ok") >= 1
    assert _metric(murl, "bus_broker_sasl_auth_total", mechanism="SCRAM-SHA-512",
                   result="ok") >= 1


def test_wrong_password_and_unknown_user_get_a_clean_authentication_error():
    ctx = harness.ctx()
    users = _users_file(ctx, {"alice": "alice-password-1"})
    proc, boot, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True})
    for user, pw, mech in (("alice", "wrong", "SCRAM-SHA-256"),
                           ("alice", "alice-password-2", "SCRAM-SHA-512"),
                           ("mallory", "alice-password-1", "SCRAM-SHA-256")):
        err = _kcat_fails(["-L", "-b", boot, "-m", "3"] + _sasl(user, pw, mech))
        assert "Authentication failed" in err and mech in err, err[-1500:]
    assert _metric(murl, "bus_broker_sasl_auth_total", mechanism="SCRAM-SHA-256",
                   result="failed") >= 2
    assert "failed: invalid credentials" in proc.log()
    assert "failed: unknown user" in proc.log()
    assert "alice-password" not in proc.log(), "passwords are never logged"


def test_client_without_sasl_is_refused_when_sasl_is_required():
    ctx = harness.ctx()
    users = _users_file(ctx, {"alice": "alice-password-1"})
    proc, boot, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True,
                                      "topics": "sec:1"})
    err = _kcat_fails(["-L", "-b", boot, "-m", "3"])
    assert "might require SASL" in err or "Disconnected" in err, err[-1500:]
    assert "before SASL authentication: closing" in proc.log()
    assert _metric(murl, "bus_broker_connections_refused_total", reason="unauthenticated") >= 1
    # Not required (development default): the same client is served as User:ANONYMOUS.
    _, boot2, _ = _start(ctx, **{"sasl.users_file": users, "topics": "open:1"})
    assert 'topic "open"' in harness.kcat(["-L", "-b", boot2]).decode()


def test_plain_only_when_enabled_and_checked_against_the_salted_credentials():
    ctx = harness.ctx()
    users = _users_file(ctx, {"alice": "alice-password-1"})
    _, boot, _ = _start(ctx, **{"sasl.users_file": users, "sasl.required": True})
    err = _kcat_fails(["-L", "-b", boot, "-m", "3"] + _sasl("alice", "alice-password-1",
                                                             "PLAIN"))
    assert "Unsupported SASL mechanism" in err, err[-1500:]
    _, boot2, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True,
                                    "sasl.plain": True, "topics": "p:1"})
    md = harness.kcat(["-L", "-b", boot2] + _sasl("alice", "alice-password-1", "PLAIN"))
    assert 'topic "p"' in md.decode()
    err = _kcat_fails(["-L", "-b", boot2, "-m", "3"] + _sasl("alice", "nope", "PLAIN"))
    assert "Authentication failed" in err, err[-1500:]
    assert _metric(murl, "bus_broker_sasl_auth_total", mechanism="PLAIN", result="ok") >= 1
    assert _metric(murl, "bus_broker_sasl_auth_total", mechanism="PLAIN", result="failed") >= 1


def test_production_requires_sasl_and_does_not_auto_create_topics():
    ctx = harness.ctx()
    # Production without a users file: refused at start, naming the setting.
    cfg = {"listen": f"127.0.0.1:{harness.free_port()}", "data_dir": ctx.path("d0", "x")[:-2],
           "http.listen": ""}
    p = ctx.start("bus-broker", config=cfg, http=False, env={"BUS_ENV": "production"},
                  name="refused")
    harness.wait_for(lambda: not p.alive(), 10, what="production broker without users exits")
    assert p.popen.returncode == 2 and "sasl.users_file" in p.log(), p.log()[-1000:]
    users = _users_file(ctx, {"alice": "alice-password-1"})
    _, boot, _ = _start(ctx, env={"BUS_ENV": "production"}, **{"sasl.users_file": users})
    _kcat_fails(["-L", "-b", boot, "-m", "3"])
    md = harness.kcat(["-L", "-b", boot, "-t", "ghost"] + _sasl("alice", "alice-password-1"))
    assert "Unknown topic" in md.decode() or "0 partitions" in md.decode(), md.decode()
    md = harness.kcat(["-L", "-b", boot] + _sasl("alice", "alice-password-1")).decode()
    assert '"ghost"' not in md, "production: Metadata does not auto-create"


def test_users_file_reloaded_on_sighup_and_a_broken_file_keeps_the_old_users():
    ctx = harness.ctx()
    path = _users_file(ctx, {"alice": "alice-password-1"})
    proc, boot, _ = _start(ctx, **{"sasl.users_file": path, "sasl.required": True,
                                   "topics": "r:1"})
    _kcat_fails(["-L", "-b", boot, "-m", "3"] + _sasl("bob", "bob-password-1"))
    _users_file(ctx, {"alice": "alice-password-1", "bob": "bob-password-1"})
    proc.signal(signal.SIGHUP)
    harness.wait_for(lambda: "users file " + path + ": 2 users" in proc.log(), 10,
                     what="reload with 2 users")
    harness.kcat(["-L", "-b", boot] + _sasl("bob", "bob-password-1"))
    with open(path, "w") as f:
        f.write('{"users": {"bob": {"SCRAM-SHA-256": {"iterations": 10}}}}')
    proc.signal(signal.SIGHUP)
    harness.wait_for(lambda: "keeping the previous users" in proc.log(), 10,
                     what="broken file refused")
    assert "iterations must be" in proc.log()
    harness.kcat(["-L", "-b", boot] + _sasl("bob", "bob-password-1"))
    harness.kcat(["-L", "-b", boot] + _sasl("alice", "alice-password-1"))


# ---- ACLs ----

PASSWORDS = {"admin": "admin-password-1", "writer": "writer-password-1",
             "reader": "reader-password-1", "nobody": "nobody-password-1"}
ACLS = {
    "super_users": ["User:admin"],
    "acls": [
        {"principal": "User:writer", "resource": "topic", "name": "orders", "pattern": "prefixed",
         "operations": ["Write"]},
        {"principal": "User:reader", "resource": "topic", "name": "orders",
         "operations": ["Read"]},
        {"principal": "User:reader", "resource": "group", "name": "g-", "pattern": "prefixed",
         "operations": ["Read"]},
        {"principal": "User:*", "resource": "topic", "name": "secret", "permission": "deny",
         "operations": ["All"]},
        {"principal": "User:*", "resource": "topic", "name": "*", "operations": ["Describe"]},
    ],
}


def _acl_broker(ctx, acls=None, **extra):
    users = _users_file(ctx, PASSWORDS)
    acl_path = ctx.write_json("acl.json", acls or ACLS)
    proc, boot, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True,
                                      "acl.file": acl_path, **extra})
    return proc, boot, murl, acl_path


def _as(user):
    return _sasl(user, PASSWORDS[user])


def _kclient_as(user, *args, timeout=60):
    conf = ";".join(["security.protocol=SASL_PLAINTEXT", "sasl.mechanisms=SCRAM-SHA-256",
                     f"sasl.username={user}", f"sasl.password={PASSWORDS[user]}"])
    p = subprocess.run([harness.bin_path("bus-kclient")] + [str(a) for a in args],
                       capture_output=True, timeout=timeout * harness.timeout_mult(),
                       env=dict(os.environ, KCLIENT_CONF=conf))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_acls_on_create_delete_produce_consume_and_metadata():
    ctx = harness.ctx()
    _, boot, murl, _ = _acl_broker(ctx)
    for user in ("writer", "reader", "nobody"):
        rc, out, err = _kclient_as(user, "create", boot, "orders", 2)
        assert rc == 1 and "TOPIC_AUTHORIZATION_FAILED" in out, (user, out, err)
    assert _kclient_as("admin", "create", boot, "orders", 2)[1].strip() == "OK"
    assert _kclient_as("admin", "create", boot, "secret", 1)[1].strip() == "OK"
    # Write: writer only; reader and nobody get TOPIC_AUTHORIZATION_FAILED.
    harness.kcat(["-P", "-b", boot, "-t", "orders", "-p", "0"] + _as("writer"),
                 input_bytes=b"o1\no2\no3\n")
    for user in ("reader", "nobody"):
        err = _kcat_fails(["-P", "-b", boot, "-t", "orders", "-p", "0"] + _as(user),
                          input=b"x\n")
        assert "Topic authorization failed" in err, (user, err[-1500:])
    # Read: reader only.
    out = harness.kcat(["-C", "-b", boot, "-t", "orders", "-p", "0", "-o", "beginning", "-e",
                        "-q", "-c", "3"] + _as("reader")).decode().split()
    assert out == ["o1", "o2", "o3"]
    err = _kcat_fails(["-C", "-b", boot, "-t", "orders", "-p", "0", "-o", "beginning", "-e",
                       "-c", "1"] + _as("writer"))
    assert "Topic authorization failed" in err, err[-1500:]
    # Metadata of every topic lists what the principal may describe; deny wins over allow.
    md = harness.kcat(["-L", "-b", boot] + _as("nobody")).decode()
    assert 'topic "orders"' in md and '"secret"' not in md, md
    assert '"secret"' in harness.kcat(["-L", "-b", boot] + _as("admin")).decode()
    # Delete and CreatePartitions: admin only.
    rc, out, _ = _kclient_as("writer", "delete", boot, "orders")
    assert rc == 1 and "TOPIC_AUTHORIZATION_FAILED" in out, out
    rc, out, _ = _kclient_as("writer", "partitions", boot, "orders", 4)
    assert rc == 1 and "TOPIC_AUTHORIZATION_FAILED" in out, out
    rc, out, _ = _kclient_as("reader", "describe", boot, "orders")
    assert rc == 1 and "TOPIC_AUTHORIZATION_FAILED" in out, out
    assert _kclient_as("admin", "partitions", boot, "orders", 4)[1].strip() == "OK"
    # Idempotent producers: InitProducerId needs Write on some topic (writer has it, reader
    # not: CLUSTER_AUTHORIZATION_FAILED, fatal for librdkafka).
    rc, out, err = _kclient_as("writer", "produce", boot, "orders", 5)
    assert rc == 0 and "delivered 5 failed 0" in out + err, out + err
    rc, out, err = _kclient_as("reader", "produce", boot, "orders", 3)
    assert "Cluster authorization failed" in err and "delivered 0 failed 3" in out + err, \
        out + err
    assert _kclient_as("admin", "delete", boot, "secret")[1].strip() == "OK"
    assert _metric(murl, "bus_broker_acl_denied_total", operation="Write", resource="topic") >= 2
    assert _metric(murl, "bus_broker_acl_denied_total", operation="Create", resource="topic") >= 3


def test_acls_on_consumer_groups():
    ctx = harness.ctx()
    _, boot, murl, _ = _acl_broker(ctx, topics="orders:2")
    harness.kcat(["-P", "-b", boot, "-t", "orders"] + _as("admin"),
                 input_bytes=b"".join(b"m%d\n" % i for i in range(20)))
    ok = ctx.start("bus-kclient", args=["consume", boot, "g-ok", "orders", "60"], http=False,
                   name="ok", env={"KCLIENT_CONF": ";".join(
                       ["security.protocol=SASL_PLAINTEXT", "sasl.mechanisms=SCRAM-SHA-256",
                        "sasl.username=reader", f"sasl.password={PASSWORDS['reader']}"])})
    harness.wait_for(lambda: ok.log().count("MSG ") >= 20, 30, what="reader consumed in g-ok")
    # Group Read is missing for "other": JoinGroup answers GROUP_AUTHORIZATION_FAILED.
    bad = ctx.start("bus-kclient", args=["consume", boot, "other", "orders", "60"], http=False,
                    name="bad", env={"KCLIENT_CONF": ";".join(
                        ["security.protocol=SASL_PLAINTEXT", "sasl.mechanisms=SCRAM-SHA-256",
                         "sasl.username=reader", f"sasl.password={PASSWORDS['reader']}"])})
    harness.wait_for(lambda: _metric(murl, "bus_broker_acl_denied_total", resource="group") >= 1,
                     30, what="a group request denied")
    harness.wait_for(lambda: "ERR GROUP_AUTHORIZATION_FAILED" in bad.log(), 30,
                     what="the client reports the group authorization failure")
    assert "MSG " not in bad.log()


def test_acl_file_reloaded_on_sighup_and_a_broken_file_keeps_the_old_rules():
    ctx = harness.ctx()
    proc, boot, _, acl_path = _acl_broker(ctx, topics="orders:1")
    err = _kcat_fails(["-P", "-b", boot, "-t", "orders"] + _as("reader"), input=b"x\n")
    assert "Topic authorization failed" in err, err[-1500:]
    rules = json.loads(json.dumps(ACLS))
    rules["acls"].append({"principal": "User:reader", "resource": "topic", "name": "orders",
                          "operations": ["Write"]})
    with open(acl_path, "w") as f:
        json.dump(rules, f)
    proc.signal(signal.SIGHUP)
    n = len(rules["acls"])
    harness.wait_for(lambda: f"ACL file {acl_path}: {n} rules" in proc.log(), 10,
                     what="ACLs reloaded")
    harness.kcat(["-P", "-b", boot, "-t", "orders"] + _as("reader"), input_bytes=b"r1\n")
    for broken, why in (('{"acls": [{"principal": "alice", "resource": "topic", "name": "x", '
                         '"operations": ["Read"]}]}', "principal"),
                        ('{"acls": [{"principal": "User:a", "resource": "topic", "name": "x", '
                         '"operations": ["Fly"]}]}', "unknown operation"),
                        ('{"acls": [', "")):
        with open(acl_path, "w") as f:
            f.write(broken)
        before = proc.log().count("keeping the previous ACLs")
        proc.signal(signal.SIGHUP)
        harness.wait_for(lambda: proc.log().count("keeping the previous ACLs") > before, 10,
                         what="broken ACL file refused")
        assert why in proc.log().split("keeping the previous ACLs")[-1].splitlines()[0]
    harness.kcat(["-P", "-b", boot, "-t", "orders"] + _as("reader"), input_bytes=b"r2\n")
    err = _kcat_fails(["-P", "-b", boot, "-t", "orders"] + _as("nobody"), input=b"x\n")
    assert "Topic authorization failed" in err, "the old rules still deny"
    out = harness.kcat(["-C", "-b", boot, "-t", "orders", "-o", "beginning", "-e", "-q", "-c",
                        "2"] + _as("admin")).decode().split()
    assert out == ["r1", "r2"]


# ---- limits ----

def _kclient(*args):
    p = subprocess.run([harness.bin_path("bus-kclient")] + [str(a) for a in args],
                       capture_output=True, timeout=60 * harness.timeout_mult())
    return p.returncode, p.stdout.decode(errors="replace")


def test_topic_and_partition_limits_answer_kafka_errors_and_the_broker_restarts():
    ctx = harness.ctx()
    data = ctx.path("data", "x")[:-2]
    port = harness.free_port()
    limits = {"max_partitions_per_topic": 50, "max_partitions": 60, "max_topics": 3,
              "default_partitions": 30}

    def start(name):
        cfg = {"listen": f"127.0.0.1:{port}", "data_dir": data, "http.listen": "", **limits}
        proc = ctx.start("bus-broker", config=cfg, http=False, name=name)
        harness.wait_for(lambda: harness.tcp_open(port) or harness._raise_exit(proc), 10,
                         what="broker port")
        return proc, f"127.0.0.1:{port}"

    proc, boot = start("broker-1")
    rc, out = _kclient("create", boot, "huge", 600)
    assert rc == 1 and "INVALID_PARTITIONS" in out and "max_partitions_per_topic" in out, out
    assert _kclient("create", boot, "a", 40) == (0, "OK\n")
    rc, out = _kclient("create", boot, "b", 30)
    assert rc == 1 and "POLICY_VIOLATION" in out and "max_partitions" in out, out
    rc, out = _kclient("partitions", boot, "a", 55)
    assert rc == 1 and "INVALID_PARTITIONS" in out, out
    rc, out = _kclient("partitions", boot, "a", 45)
    assert rc == 0, out
    assert _kclient("create", boot, "c", 1)[0] == 0
    assert _kclient("create", boot, "d", 1)[0] == 0
    rc, out = _kclient("create", boot, "e", 1)
    assert rc == 1 and "POLICY_VIOLATION" in out and "max_topics" in out, out
    # Auto-create past the limits: refused, nothing created.
    md = subprocess.run(["kcat", "-L", "-b", boot, "-t", "auto1"], capture_output=True,
                        timeout=20).stdout.decode()
    assert 'topic "auto1" with 0 partitions: Broker: Policy violation' in md, md
    assert not [d for d in os.listdir(data) if d.startswith(("huge-", "b-", "e-", "auto1-"))]
    assert proc.stop() == 0
    proc, boot = start("broker-2")
    md = harness.kcat(["-L", "-b", boot]).decode()
    assert 'topic "a" with 45 partitions' in md and '"c"' in md and '"d"' in md, md
    assert "huge" not in md and '"b"' not in md


def test_connections_per_address_are_capped_and_refused_ones_counted():
    import socket
    ctx = harness.ctx()
    proc, boot, murl = _start(ctx, max_connections_per_address=4, topics="t:1")
    host, port = boot.split(":")
    # From an address of the test's own (the whole of 127/8 is loopback): a client of another
    # test still reconnecting to a port it once had counts against 127.0.0.1, never against it.
    src = ("127.0.0.45", 0)

    def accepted():
        """A connection the broker has accepted and counted: it answered ApiVersions on it."""
        s = socket.create_connection((host, int(port)), source_address=src)
        s.settimeout(10 * harness.timeout_mult())
        s.sendall(_frame(18, 0, 1, b""))
        assert _read_answer(s) is not None, "ApiVersions answered"
        return s

    held = [accepted() for _ in range(4)]
    try:
        extra = socket.create_connection((host, int(port)), source_address=src)
        extra.settimeout(5 * harness.timeout_mult())
        assert extra.recv(1) == b"", "the 5th connection from 127.0.0.45 is closed at once"
        extra.close()
        assert _metric(murl, "bus_broker_connections_refused_total", reason="per_address") >= 1
        # Another address is not held back by the first one's cap.
        other = socket.create_connection((host, int(port)), source_address=("127.0.0.46", 0))
        other.settimeout(10 * harness.timeout_mult())
        other.sendall(_frame(18, 0, 1, b""))
        assert _read_answer(other) is not None, "127.0.0.46 served"
        other.close()
    finally:
        for s in held:
            s.close()
    # Once they are gone the address is served again.
    harness.wait_for(lambda: _try_accepted(host, port, src), 10, what="127.0.0.45 served again")
    assert 'topic "t"' in harness.kcat(["-L", "-b", boot]).decode()


def _try_accepted(host, port, src):
    import socket
    with socket.create_connection((host, int(port)), source_address=src) as s:
        s.settimeout(5 * harness.timeout_mult())
        try:
            s.sendall(_frame(18, 0, 1, b""))
            return _read_answer(s) is not None
        except OSError:
            return False


def test_unauthenticated_connection_is_closed_after_the_handshake_timeout():
    import socket
    ctx = harness.ctx()
    users = _users_file(ctx, {"alice": "alice-password-1"})
    _, boot, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True,
                                   "sasl.handshake_timeout_ms": 500})
    host, port = boot.split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(10 * harness.timeout_mult())
    try:
        assert s.recv(1) == b"", "closed by the broker"
    finally:
        s.close()
    assert _metric(murl, "bus_broker_connections_refused_total", reason="unauthenticated") >= 1


# ---- a product process through an authenticated broker ----

def test_publisher_publishes_through_a_scram_authenticated_broker_with_its_own_principal():
    ctx = harness.ctx()
    pw = {"publisher": "publisher-password-1", "admin": "admin-password-1"}
    users = _users_file(ctx, pw)
    acls = ctx.write_json("acl.json", {
        "super_users": ["User:admin"],
        "acls": [{"principal": "User:publisher", "resource": "topic", "name": "login",
                  "operations": ["Write"]}]})
    _, boot, murl = _start(ctx, **{"sasl.users_file": users, "sasl.required": True,
                                   "acl.file": acls, "topics": "login:3"})
    root = harness.ROOT
    cfg = {"bootstrap": boot, "bus_config_dir": os.path.join(root, "config", "bus"),
           "bus_schema": os.path.join(root, "config", "schema", "bus.schema.json")}
    env = {"PUBLISHER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "PUBLISHER_KAFKA_SASL_MECHANISMS": "SCRAM-SHA-256",
           "PUBLISHER_KAFKA_SASL_USERNAME": "publisher",
           "PUBLISHER_KAFKA_SASL_PASSWORD": pw["publisher"]}
    pub = ctx.start("bus-publisher", config=cfg, env=env, ready_path="/readyz")
    ev = {"account_id": "acc-sasl", "ip": "203.0.113.9", "ts": "2026-11-25T04:18:31Z"}
    status, body, _ = harness.http("POST", pub.url + "/v1/topics/login/events", ev,
                                   headers={"Authorization": "Bearer dev-login-token"})
    assert status == 202, body
    assert pw["publisher"] not in pub.log(), "the SASL password is redacted in the logs"
    out = harness.kcat(["-C", "-b", boot, "-t", "login", "-p", str(body["partition"]), "-o",
                        str(body["offset"]), "-c", "1", "-e", "-q"] +
                       _sasl("admin", pw["admin"])).decode()
    assert json.loads(out)["account_id"] == "acc-sasl"
    assert _metric(murl, "bus_broker_sasl_auth_total", mechanism="SCRAM-SHA-256",
                   result="ok") >= 1
    # The same publisher with a wrong password never gets a false 202.
    env["PUBLISHER_KAFKA_SASL_PASSWORD"] = "wrong-password"
    bad = ctx.start("bus-publisher", config=cfg, env=env, name="bad-publisher")
    status, body, _ = harness.http("POST", bad.url + "/v1/topics/login/events", ev,
                                   headers={"Authorization": "Bearer dev-login-token"},
                                   timeout=30)
    assert status == 503, (status, body)
    assert harness.http("GET", bad.url + "/readyz")[0] != 200


# Third-party clients (kafkajs, python3-confluent-kafka, python3-kafka, kcat) authenticate with
# SCRAM-SHA-256 and -512, and are refused with a wrong password, in tests/compat/.


# ---- the protocol itself, byte by byte (what no installed client sends: SaslAuthenticate v2,
# errors of a handshake out of order) ----

def _frame(key, ver, corr, body, flexible=False):
    import struct
    cid = b"sec-test"
    hdr = struct.pack(">hhih", key, ver, corr, len(cid)) + cid + (b"\x00" if flexible else b"")
    return struct.pack(">i", len(hdr) + len(body)) + hdr + body


def _read_answer(sock):
    import struct
    buf = b""
    while len(buf) < 4:
        chunk = sock.recv(4 - len(buf))
        if not chunk:
            return None
        buf += chunk
    n = struct.unpack(">i", buf)[0]
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        assert chunk, "connection closed mid-answer"
        body += chunk
    return body[4:]  # without the correlation id


def _compact_bytes(b):
    n, out = len(b) + 1, b""
    while n >= 0x80:
        out += bytes([(n & 0x7f) | 0x80])
        n >>= 7
    return out + bytes([n]) + b


def _uvarint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7f) << shift
        if not c & 0x80:
            return v, i
        shift += 7


def _scram_client_proof(password, client_first_bare, server_first, final_without_proof, hname):
    import base64
    import hashlib
    import hmac
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salt, it = base64.b64decode(attrs["s"]), int(attrs["i"])
    salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, it)
    ckey = hmac.new(salted, b"Client Key", hname).digest()
    stored = hashlib.new(hname, ckey).digest()
    auth = f"{client_first_bare},{server_first},{final_without_proof}".encode()
    sig = hmac.new(stored, auth, hname).digest()
    proof = bytes(a ^ b for a, b in zip(ckey, sig))
    skey = hmac.new(salted, b"Server Key", hname).digest()
    server_sig = base64.b64encode(hmac.new(skey, auth, hname).digest()).decode()
    return base64.b64encode(proof).decode(), server_sig


def test_sasl_authenticate_v2_flexible_encoding_and_handshake_errors_at_the_byte_level():
    import socket
    import struct
    ctx = harness.ctx()
    users = _users_file(ctx, {"alice": "alice-password-1"})
    _, boot, _ = _start(ctx, **{"sasl.users_file": users, "sasl.required": True})
    host, port = boot.split(":")

    def s16(x):
        return struct.pack(">h", len(x)) + x.encode()

    # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the list, then closed.
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(_frame(17, 1, 1, s16("GSSAPI")))
    ans = _read_answer(s)
    err, n = struct.unpack(">hi", ans[:6])
    assert err == 33 and n == 2 and b"SCRAM-SHA-256" in ans and b"SCRAM-SHA-512" in ans
    assert _read_answer(s) is None, "closed after the error"
    s.close()
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE (34) with a message, then closed.
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(_frame(36, 1, 1, struct.pack(">i", 3) + b"abc"))
    ans = _read_answer(s)
    assert struct.unpack(">h", ans[:2])[0] == 34 and b"before SaslHandshake" in ans
    assert _read_answer(s) is None
    s.close()
    # A whole SCRAM-SHA-512 exchange in SaslAuthenticate v2 (flexible: compact bytes, tagged
    # fields, response header v1), then an authenticated Metadata request is served.
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(_frame(17, 1, 1, s16("SCRAM-SHA-512")))
    assert struct.unpack(">h", _read_answer(s)[:2])[0] == 0
    bare = "n=alice,r=clientnonce123"
    first = ("n,," + bare).encode()
    s.sendall(_frame(36, 2, 2, _compact_bytes(first) + b"\x00", flexible=True))
    ans = _read_answer(s)
    assert ans[0] == 0, "response header v1: no tagged fields"
    err = struct.unpack(">h", ans[1:3])[0]
    assert err == 0 and ans[3] == 0, "no error, null message"
    ln, i = _uvarint(ans, 4)
    server_first = ans[i:i + ln - 1].decode()
    assert server_first.startswith("r=clientnonce123") and ",i=4096" in server_first
    nonce = server_first.split(",")[0][2:]
    without = f"c=biws,r={nonce}"
    proof, server_sig = _scram_client_proof("alice-password-1", bare, server_first, without,
                                            "sha512")
    final = f"{without},p={proof}".encode()
    s.sendall(_frame(36, 2, 3, _compact_bytes(final) + b"\x00", flexible=True))
    ans = _read_answer(s)
    assert struct.unpack(">h", ans[1:3])[0] == 0
    ln, i = _uvarint(ans, 4)
    assert ans[i:i + ln - 1].decode() == "v=" + server_sig, "the server proves it knows the key"
    assert struct.unpack(">q", ans[i + ln - 1:i + ln + 7])[0] == 0  # session_lifetime_ms
    s.sendall(_frame(3, 1, 4, struct.pack(">i", -1)))
    ans = _read_answer(s)
    assert ans is not None and struct.unpack(">i", ans[:4])[0] == 1, "one broker in Metadata"
    s.close()
