"""`make run` as a newcomer uses it (tools/run.sh, what `make run` starts after the set-up and
the build): the whole product comes up on its documented ports, a login POSTed with the
development token is answered 202, kcat reads the record back with its id and trace headers
(as the broker's admin principal: the broker requires SASL, and each process connects as its
own), and SIGTERM stops everything. State goes to a temporary RUN_VAR, not the developer's var/."""
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import harness

ASAN = False
# The product's fixed ports and make in the tree: one at a time with the other modules that
# use them (tests/run.py).
SERIAL_GROUP = "make-in-tree"
ROOT = harness.ROOT
# INTERFACES.md: publisher, dispatcher, services, game server stub, broker, PostgreSQL of make run.
PORTS = [8080, 8081, 8101, 8102, 8103, 8104, 8105, 8106, 8109, 9092, 55432]


def test_make_run_publishes_a_login_that_kcat_reads_back():
    busy = [p for p in PORTS if harness.tcp_open(p)]
    if busy:
        raise harness.Skip(f"ports {busy} are in use (is `make run` running?)")
    with tempfile.TemporaryDirectory() as var:
        env = dict(os.environ, RUN_VAR=var, LOGINSIM_RATE="0")
        proc = subprocess.Popen([os.path.join(ROOT, "tools", "run.sh")], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        lines = []
        ready = threading.Event()

        def read():
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                lines.append(line)
                if "The product is running" in line:
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 120 * harness.timeout_mult()
            while not ready.is_set():
                assert proc.poll() is None, "tools/run.sh exited:\n" + "".join(lines)
                assert time.monotonic() < deadline, "not up in time:\n" + "".join(lines)
                ready.wait(0.2)

            trace = "0af7651916cd43dd8448eb211c80319c"
            body = json.dumps({"account_id": "newcomer", "ip": "8.8.8.8",
                               "ts": "2026-12-06T04:00:00Z"}).encode()
            req = urllib.request.Request(
                "http://127.0.0.1:8080/v1/topics/login/events", data=body, method="POST",
                headers={"Authorization": "Bearer dev-login-token",
                         "Content-Type": "application/json",
                         "traceparent": f"00-{trace}-b7ad6b7169203331-01"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 202
                answer = json.loads(r.read())
            # The broker requires SASL: kcat reads as the admin principal (the file the
            # banner names), and is refused without it.
            kcat_conf = os.path.join(var, "broker-sasl", "kcat.conf")
            assert f"kcat -F {kcat_conf}" in "".join(lines)
            out = harness.kcat(["-F", kcat_conf, "-C", "-b", "127.0.0.1:9092", "-t", "login",
                                "-p", str(answer["partition"]), "-o", str(answer["offset"]),
                                "-c", "1", "-e", "-q", "-f", "%h\\n%s"]).decode()
            headers, value = out.split("\n", 1)
            h = dict(kv.split("=", 1) for kv in headers.split(","))
            assert h["ce-id"] == answer["id"], h
            assert h["traceparent"].startswith(f"00-{trace}-"), h
            assert json.loads(value)["account_id"] == "newcomer"
            anon = subprocess.run(["kcat", "-b", "127.0.0.1:9092", "-L", "-m", "2"],
                                  capture_output=True, timeout=30)
            assert anon.returncode != 0, anon.stdout
            # Each process connected as its own principal (config/broker/acl.json).
            with open(os.path.join(var, "log", "bus-broker.log")) as f:
                blog = f.read()
            for user in ("publisher", "dispatcher", "busctl"):
                assert f"authenticated User:{user} from" in blog, user
            # ...and was refused nothing (its writes, groups, offsets and metadata so far).
            with urllib.request.urlopen("http://127.0.0.1:9093/metrics", timeout=10) as r:
                denied = [ln for ln in r.read().decode().splitlines()
                          if ln.startswith("bus_broker_acl_denied_total") and
                          not ln.endswith(" 0")]
            assert not denied, denied
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            reader.join(timeout=5)
        assert rc == 0, "tools/run.sh did not stop cleanly:\n" + "".join(lines)
        left = [p for p in PORTS if harness.tcp_open(p)]
        assert not left, f"still listening after SIGTERM: {left}\n" + "".join(lines)
