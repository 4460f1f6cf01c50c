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


def _kcat_fails(args, timeout=20):
    """Runs kcat expecting a failure; returns its stderr."""
    p = subprocess.run(["kcat"] + args, capture_output=True, timeout=timeout * harness.timeout_mult())
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
