"""Shared test harness: real processes on free ports, waiting on conditions, never on time.

Tests are plain functions `test_*()` in tests/integration and tests/e2e. Inside a test:

    ctx = harness.ctx()                      # the running test's context
    b = ctx.broker()                         # the broker under test (mock or embedded)
    pub = ctx.start("bus-publisher", config={...}, env={...}, http=True)
    status, body, headers = harness.http("POST", pub.url + "/v1/topics/login/events", {...})
    harness.wait_for(lambda: ..., timeout=10, what="event delivered")

Every process started through ctx is stopped (SIGTERM, then SIGKILL) and every temp dir removed
when the test ends, pass or fail. Logs of the test's processes are kept in the context and the
tail is printed when the test fails.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_STATE = {"bin_dir": os.path.join(ROOT, "bin"), "mult": 1, "asan": False, "ctx": None}
_SHARED = {}


class Skip(Exception):
    """Raise to skip a test (e.g. a binary not built yet)."""


def configure(bin_dir, timeout_mult=1, asan=False):
    _STATE.update(bin_dir=bin_dir, mult=timeout_mult, asan=asan)


def timeout_mult():
    return _STATE["mult"]


def is_asan():
    return _STATE["asan"]


def bin_path(name):
    return os.path.join(_STATE["bin_dir"], name)


def set_context(ctx):
    _STATE["ctx"] = ctx


def ctx():
    return _STATE["ctx"]


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out by free_port(), so that one run never hands out a port twice, and the blocks
# of ports this process holds (below).
_PORTS = {"given": set(), "blocks": [], "tried": set(), "next": 0}
_PORT_LOW = 10000
_BLOCK = 100
_HELD_BLOCKS = 2
PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "bustest-ports")


def _claim_block(nblocks):
    """Claims a block of _BLOCK ports that no other process using this harness holds (a test
    run, each of tests/run.py's parallel workers, a bench): an exclusive flock on
    PORT_LOCK_DIR/<first port>, released when the process exits or has moved two blocks on. A
    port handed out is bound by its process soon after; by the time a block is released, its
    ports are either bound (the check by binding skips them) or no longer needed."""
    import fcntl
    try:
        os.makedirs(PORT_LOCK_DIR, exist_ok=True)
        os.chmod(PORT_LOCK_DIR, 0o1777)
    except OSError:
        pass
    # Least recently claimed first (a lock file's mtime is its last claim): a block released
    # by one process is the last another takes, so a client a test left reconnecting to its old
    # ports (a librdkafka producer not yet collected) meets no other test's server there.
    first = (os.getpid() * 7919) % nblocks

    def last_claimed(b):
        try:
            return os.stat(os.path.join(PORT_LOCK_DIR, str(_PORT_LOW + b * _BLOCK))).st_mtime
        except OSError:
            return 0.0
    order = sorted(range(nblocks), key=lambda b: (last_claimed(b), (b - first) % nblocks))
    for b in order:
        if b in _PORTS["tried"]:
            continue
        try:
            fd = os.open(os.path.join(PORT_LOCK_DIR, str(_PORT_LOW + b * _BLOCK)),
                         os.O_CREAT | os.O_RDWR, 0o666)
        except OSError:
            fd = None  # no lock dir: the check by binding alone, as before
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            try:
                os.utime(fd)  # claimed now
            except OSError:
                pass
        _PORTS["tried"].add(b)
        _PORTS["blocks"].append((b, fd))
        while len(_PORTS["blocks"]) > _HELD_BLOCKS:
            _, old = _PORTS["blocks"].pop(0)
            if old is not None:
                os.close(old)
        _PORTS["next"] = 0
        return b
    return None


def forget_ports():
    """In a forked child (a worker of tests/run.py): drops the parent's blocks and ports, so
    that the child claims blocks of its own."""
    for _, fd in _PORTS["blocks"]:
        if fd is not None:
            os.close(fd)
    _PORTS.update(given=set(), blocks=[], tried=set(), next=0)


def free_port(exclude=()):
    """A free port for a process the test starts later (never one of exclude).

    Taken below the kernel's ephemeral range (net.ipv4.ip_local_port_range): bind(0) and
    connect() never hand those out, so nothing (a mock broker, a test endpoint on port 0, an
    outgoing connection) can take the port between now and the moment the process binds it.
    Never the same port twice in one run; checked free by binding it; and taken from a block of
    ports this process holds (_claim_block), so that two runs, two parallel workers of one run or
    a bench on the same machine never pick the same port in the time between the check and the
    process's own bind."""
    high = _ephemeral_low()
    if high - _PORT_LOW < 1000:  # an unusual range: fall back on the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    nblocks = (high - _PORT_LOW) // _BLOCK
    for _ in range(2):
        while True:
            if not _PORTS["blocks"] or _PORTS["next"] >= _BLOCK:
                if _claim_block(nblocks) is None:
                    break
            block = _PORTS["blocks"][-1][0]
            port = _PORT_LOW + block * _BLOCK + _PORTS["next"]
            _PORTS["next"] += 1
            if port in _PORTS["given"] or port in exclude:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _PORTS["given"].add(port)
            return port
        _PORTS["tried"] = {b for b, _ in _PORTS["blocks"]}  # every block tried: once more
    raise RuntimeError("no free port left below the ephemeral range")


def one_broker(fn):
    """Marks a test of a module with BROKERS = ["mock", "embedded"] as broker-independent (a
    browser test, a docs check, an HTTP-server behaviour): it runs once, with the embedded
    broker, instead of once per broker."""
    fn.brokers = ["embedded"]
    return fn


def release_only(fn):
    """Marks a test that the ASan pass skips (as a module's ASAN = False does for all its
    tests): one whose C paths other tests already drive under the sanitizers (a browser or
    load test), or that runs no product binary. docs/testing.md lists what runs sanitized."""
    fn.asan = False
    return fn


def wait_for(cond, timeout=10.0, what="condition", interval=0.02):
    """Polls cond() until it returns a truthy value, which is returned. Raises AssertionError
    naming `what` when timeout (stretched under sanitizers) runs out."""
    deadline = time.monotonic() + timeout * _STATE["mult"]
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the condition may fail while a process starts
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" +
                                 (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


def http(method, url, body=None, headers=None, timeout=10.0, raw=None):
    """One HTTP request. body: a JSON-able value (sent as JSON) or None; raw: bytes sent as is.
    Returns (status, parsed JSON body or text or None, headers dict lower-cased)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout * _STATE["mult"]) as r:
            status, payload, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, payload, hdrs = e.code, e.read(), e.headers
    text = payload.decode(errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return status, parsed, {k.lower(): v for k, v in hdrs.items()}


def _listens(pid, port):
    """True when process pid holds the listening TCP socket on port (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            pass
    return False


class Proc:
    """A process started by a test context."""

    def __init__(self, name, popen, log_path, port=None):
        self.name, self.popen, self.log_path, self.port = name, popen, log_path, port
        self.url = f"http://127.0.0.1:{port}" if port else None

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.alive():
            self.popen.kill()
        self.popen.wait()

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit code (SIGKILL after timeout)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout * _STATE["mult"])
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_lines(self):
        """Parsed JSON log lines (lines that are not JSON are skipped)."""
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


# Contexts not cleaned up yet (a test's, a module's): cleanup_all() stops them.
_LIVE = set()


def cleanup_all():
    """Stops every context's processes and the shared resources: a runner's worker that is told
    to stop (SIGTERM, SIGINT) leaves no process and no PostgreSQL cluster behind."""
    for c in list(_LIVE):
        try:
            c.cleanup()
        except Exception:
            pass
    shutdown_shared()


class Context:
    """Everything one test started; cleaned up by the runner."""

    def __init__(self, name, broker=None):
        _LIVE.add(self)
        self.name = name
        self.broker_kind = broker or os.environ.get("TEST_BROKER", "mock")
        self.tmp = tempfile.mkdtemp(prefix="bustest-")
        self.procs = []
        self.servers = []
        self.kcat_sasl = []  # bootstraps of SASL brokers harness.kcat knows credentials for
        self._broker = None

    def path(self, *parts):
        p = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write_json(self, rel, value):
        p = self.path(rel)
        with open(p, "w") as f:
            json.dump(value, f)
        return p

    def start(self, binary, args=(), config=None, env=None, http=True, port=None,
              port_key="listen", wait=True, ready_path="/healthz", name=None):
        """Starts bin/<binary>. config: a dict written to a JSON file and passed as --config.
        env: variables added to the test run's environment (None removes one); BUS_ENV is
        development unless env sets it.
        http=True: a free port is put into config[port_key] as "127.0.0.1:<port>" (unless
        the config already has it) and the process is waited on until GET ready_path answers
        200. Returns a Proc."""
        path = bin_path(binary)
        if not os.path.exists(path):
            raise Skip(f"{binary} not built")
        config = dict(config or {})
        if http:
            if port_key not in config:
                port = port or free_port()
                config[port_key] = f"127.0.0.1:{port}"
            else:
                port = int(str(config[port_key]).rsplit(":", 1)[1])
        argv = [path] + list(args)
        if config:
            argv += ["--config", self.write_json(f"{name or binary}-{len(self.procs)}.json",
                                                 config)]
        full_env = dict(os.environ)
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        full_env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        # Development mode (docs/security.md) unless the test says otherwise; env values of
        # None remove a variable (env={"BUS_ENV": None}: the binary's default, production).
        full_env.setdefault("BUS_ENV", "development")
        full_env.update(env or {})
        full_env = {k: v for k, v in full_env.items() if v is not None}
        log_path = self.path("logs", f"{name or binary}-{len(self.procs)}.log")
        logf = open(log_path, "ab")
        popen = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=full_env,
                                 cwd=ROOT, start_new_session=True)
        logf.close()
        proc = Proc(name or binary, popen, log_path, port if http else None)
        self.procs.append(proc)
        if http and wait:
            self.wait_http(proc, ready_path)
        return proc

    def wait_http(self, proc, path="/healthz", timeout=15.0):
        def up():
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                                     + proc.log()[-3000:])
            try:
                if http("GET", proc.url + path, timeout=2)[0] != 200:
                    return False
            except (OSError, urllib.error.URLError):
                return False
            # Every process answers /healthz: make sure the one answering is ours, and not
            # another that holds the port (ours then exits, unable to bind it).
            return _listens(proc.popen.pid, proc.port)
        wait_for(up, timeout, what=f"{proc.name} {path}")

    def broker(self, kind=None, topics=None):
        """Starts (once per test) the broker under test and returns an object with
        .bootstrap ("127.0.0.1:port"), .proc and .kind. topics: optional {name: partitions}
        created up front where the broker needs it (the mock answers no CreateTopics)."""
        if self._broker is None:
            self._broker = start_broker(self, kind or self.broker_kind, topics=topics)
        return self._broker

    def serve(self, handler_fn):
        """Starts an HTTP endpoint on a free port; handler_fn(method, path, headers, body_bytes)
        returns (status, body_bytes_or_json, headers_dict). Returns (url_base, server)."""
        srv = _serve(handler_fn)
        self.servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", srv

    def log_tail(self):
        out = []
        for p in self.procs:
            out.append(f"--- log of {p.name} (exit {p.popen.poll()}) ---\n" + p.log()[-3000:])
        return "\n".join(out)

    def cleanup(self):
        _LIVE.discard(self)
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop(timeout=5)
            except Exception as e:  # keep cleaning
                errors.append(repr(e))
            try:
                os.killpg(p.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for s in self.servers:
            s.shutdown()
            s.server_close()
        for bootstrap in self.kcat_sasl:  # the port may serve another broker next
            _KCAT_SASL.pop(bootstrap, None)
        if _STATE["asan"]:
            for p in self.procs:
                log = p.log()
                if "ERROR: AddressSanitizer" in log or "runtime error:" in log or \
                        "ERROR: LeakSanitizer" in log:
                    errors.append(f"sanitizer report in {p.name}:\n{log[-4000:]}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("\n".join(errors))


def _serve(handler_fn):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out, out_headers = handler_fn(self.command, self.path, headers, body)
            if out is None:
                data = b""
            elif isinstance(out, (bytes, bytearray)):
                data = bytes(out)
            else:
                data = json.dumps(out).encode()
            self.send_response(status)
            for k, v in (out_headers or {}).items():
                self.send_header(k, v)
            if data or status != 204:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_POST = do_GET = do_PUT = do_DELETE = _any

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class Broker:
    def __init__(self, kind, bootstrap, proc, users=None, admin=None):
        self.kind, self.bootstrap, self.proc = kind, bootstrap, proc
        self.users = users or {}  # SASL user -> password (start_broker's sasl_users)
        self.admin = admin        # the user whose credentials harness.kcat adds (a super user)
        self.metrics_url = None   # the embedded broker's GET /metrics

    def kafka_conf(self, user):
        """librdkafka's SASL settings for user ({} when the broker has no SASL users)."""
        if not self.users:
            return {}
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": user, "sasl.password": self.users[user]}

    def kafka_env(self, prefix, user):
        """The same as a process's PREFIX_KAFKA_* environment (its kafka.* pass-through)."""
        return {prefix + "_KAFKA_" + k.upper().replace(".", "_"): v
                for k, v in self.kafka_conf(user).items()}


# bootstrap -> kcat's -X arguments of that broker's admin user (harness.kcat adds them).
_KCAT_SASL = {}


def scram_users_file(context, users, iterations=4096):
    """A sasl.users_file for {user: password}, made by `bus-broker --scram-user` (documented)."""
    entries = {}
    for name, pw in users.items():
        p = subprocess.run([bin_path("bus-broker"), "--scram-user", name, str(iterations)],
                           input=(pw + "\n").encode(), capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        entries.update(json.loads(p.stdout))
    return context.write_json("broker-users.json", {"users": entries})


def start_broker(context, kind, topics=None, sasl_users=None, acl_file=None, admin=None):
    """mock: bin/bus-mock hosting librdkafka's mock cluster; embedded: bin/bus-broker with its
    data in the test's temp dir. topics: optional {name: partitions} to create up front.
    sasl_users ({user: password}, embedded only): SASL/SCRAM required, with acl_file's rules;
    admin: the user harness.kcat then authenticates as on this broker (a super user)."""
    if kind == "mock":
        bfile = context.path("mock.bootstrap")
        targs = []
        for name, parts in (topics or {}).items():
            targs += ["--topic", f"{name}:{parts}"]
        proc = context.start("bus-mock", args=["--bootstrap-file", bfile] + targs, http=False)
        wait_for(lambda: os.path.exists(bfile) and open(bfile).read().strip(), 10,
                 what="mock broker bootstrap file")
        return Broker(kind, open(bfile).read().strip(), proc)
    if kind == "embedded":
        port, http_port = free_port(), free_port()
        cfg = {"listen": f"127.0.0.1:{port}", "data_dir": context.path("broker-data", "x")[:-2],
               "http.listen": f"127.0.0.1:{http_port}"}
        if topics:
            cfg["topics"] = ",".join(f"{name}:{parts}" for name, parts in topics.items())
        if sasl_users:
            cfg.update({"sasl.users_file": scram_users_file(context, sasl_users),
                        "sasl.required": True})
        if acl_file:
            cfg["acl.file"] = acl_file
        proc = context.start("bus-broker", config=cfg, http=False)
        wait_for(lambda: tcp_open(port) or (_raise_exit(proc)), 10, what="broker port")
        broker = Broker(kind, f"127.0.0.1:{port}", proc, sasl_users, admin)
        broker.metrics_url = f"http://127.0.0.1:{http_port}/metrics"
        if admin:
            _KCAT_SASL[broker.bootstrap] = [a for k, v in broker.kafka_conf(admin).items()
                                            for a in ("-X", f"{k}={v}")]
            context.kcat_sasl.append(broker.bootstrap)
        return broker
    raise ValueError(kind)


def _raise_exit(proc):
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
    return False


def tcp_open(port):
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def kcat(args, input_bytes=None, timeout=20.0):
    """Runs kcat with args; returns stdout bytes. Raises on a non-zero exit. On a broker started
    with an admin user (start_broker), kcat authenticates as that user unless args already
    carry SASL settings."""
    if not shutil.which("kcat"):
        raise Skip("kcat not installed")
    args = list(args)
    if "-b" in args and not any(str(a).startswith("sasl.") for a in args):
        args += _KCAT_SASL.get(args[args.index("-b") + 1], [])
    p = subprocess.run(["kcat"] + list(args), input=input_bytes, capture_output=True,
                       timeout=timeout * _STATE["mult"])
    if p.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} failed: {p.stderr.decode()[-2000:]}")
    return p.stdout


def kcat_consume(bootstrap, topic, count, timeout=20.0):
    """Reads `count` messages of topic from the beginning; returns a list of dicts with
    key, value (bytes), headers (dict), partition, offset."""
    fmt = "%p\\t%o\\t%k\\t%h\\t%S\\n%s\\n"
    out = kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", str(count), "-e",
                "-q", "-f", fmt], timeout=timeout)
    msgs = []
    lines = out.split(b"\n")
    i = 0
    while i + 1 < len(lines) and len(msgs) < count:
        meta = lines[i].decode(errors="replace").split("\t")
        if len(meta) < 5:
            i += 1
            continue
        size = int(meta[4])
        # The value may contain newlines: take `size` bytes after the meta line.
        start = sum(len(x) + 1 for x in lines[:i + 1])
        value = out[start:start + size]
        rest = out[start + size + 1:]
        headers = {}
        for kv in meta[3].split(","):
            if "=" in kv:
                k, v = kv.split("=", 1)
                headers[k] = v
        msgs.append({"partition": int(meta[0]), "offset": int(meta[1]), "key": meta[2],
                     "headers": headers, "value": value})
        out = rest
        lines = out.split(b"\n")
        i = 0
    return msgs


class ModuleFixture:
    """Processes shared by the tests of one module (the whole product, say) instead of one
    start-up per test: setup(ctx) runs on first use in a context of its own and returns what the
    tests get; teardown() stops it (make it the module's teardown_module, which tests/run.py
    calls after the module's last test). A set-up that failed fails every test that asks for it,
    with the processes' logs, without trying again.

        _P = harness.ModuleFixture("e2e/test_product", lambda ctx: product.start(ctx))
        teardown_module = _P.teardown

        @_P.test
        def test_x(p): ...          # p: what setup returned; failures carry p.log_tail()"""

    def __init__(self, name, setup, check=None):
        # check(value), when given, runs at teardown before the processes stop (a check over
        # everything the module's tests did, e.g. no request denied by the broker's ACLs); its
        # failure fails the module's teardown.
        self.name, self.setup, self.check = name, setup, check
        self.ctx = self.value = self.error = None

    def get(self):
        if self.error is not None:
            raise self.error
        if self.ctx is None:
            self.ctx = Context(self.name + ":module")
            try:
                self.value = self.setup(self.ctx)
            except BaseException as e:
                self.error = e if isinstance(e, Skip) else AssertionError(
                    f"{self.name}: module set-up failed: {e!r}\n{self.ctx.log_tail()}")
                raise self.error
        return self.value

    def teardown(self):
        ctx, value, check = self.ctx, self.value, self.check
        self.ctx = self.value = self.error = None
        try:
            if check is not None and value is not None:
                check(value)
        finally:
            if ctx is not None:
                ctx.cleanup()

    def test(self, fn):
        """Decorates test_x(value) into test_x(), the shared value passed in; an assertion that
        fails carries the value's log_tail() when it has one."""
        import functools

        @functools.wraps(fn)
        def run():
            value = self.get()
            try:
                fn(value)
            except AssertionError as e:
                tail = getattr(value, "log_tail", None)
                if tail is None:
                    raise
                raise AssertionError(f"{e}\n{tail()}") from e
        return run


def shared(name, factory):
    """A resource shared by every test of the run (e.g. one PostgreSQL cluster), created on
    first use by factory() and closed by shutdown_shared() (factory returns (value, closer))."""
    if name not in _SHARED:
        _SHARED[name] = factory()
    return _SHARED[name][0]


def shutdown_shared():
    for name, (value, closer) in list(_SHARED.items()):
        try:
            closer()
        except Exception:
            pass
        del _SHARED[name]


BATCH_TYPE = "application/cloudevents-batch+json"
# The (event id -> timestamps) this run already signed: a receiver refuses a repeated
# (webhook-id, webhook-timestamp) as a replay, and the dispatcher never signs one twice.
_SIGNED = {}
_SIGNED_LOCK = threading.Lock()


def _fresh_timestamp(event_id):
    """The Unix time nearest to now not yet used for event_id (within the receivers' ±5 min)."""
    now = int(time.time())
    with _SIGNED_LOCK:
        used = _SIGNED.setdefault(event_id, set())
        for d in range(250):
            for ts in (now + d, now - d):
                if ts not in used:
                    used.add(ts)
                    return ts
    raise AssertionError(f"event id {event_id} delivered more than 500 times in 5 minutes")


def webhook_signature(secret, event_id, timestamp, body):
    """Standard Webhooks (docs/bus.md "Signatures"): "v1,<base64 HMAC-SHA256 of
    id.timestamp.body>" per key of secret (several separated by spaces); a key written
    "whsec_<base64>" is the decoded bytes, any other the text's bytes."""
    import base64
    import hashlib
    import hmac
    out = []
    for key in secret.split():
        raw = base64.b64decode(key[6:]) if key.startswith("whsec_") else key.encode()
        mac = hmac.new(raw, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256)
        out.append("v1," + base64.b64encode(mac.digest()).decode())
    return " ".join(out)


def delivery_verified(secret, headers, body, tolerance_s=300):
    """True when headers (lower-cased names) sign body per Standard Webhooks with one of
    secret's keys and a timestamp within tolerance_s of now: what a receiver checks."""
    import hmac as _hmac
    try:
        ts = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    event_id = headers.get("webhook-id")
    if not event_id or abs(time.time() - ts) > tolerance_s:
        return False
    want = set(webhook_signature(secret, event_id, ts, body).split())
    got = headers.get("webhook-signature", "").split()
    return any(_hmac.compare_digest(g, w) for g in got for w in want)


def delivery_headers(secret, body, event_id, topic=None, extra=None, batch=False,
                     timestamp=None):
    """The headers the dispatcher puts on a delivery of body (bytes) with this event id: ce-*
    (a single delivery) or the batch Content-Type (batch=True; event_id is then the request's
    id) and, when secret is set, the Standard Webhooks signature (webhook-id, webhook-timestamp:
    a fresh one per call unless given, webhook-signature). Every test that POSTs a delivery to
    a service builds its headers here, so a change of the signing scheme is made once."""
    if batch:
        headers = {"Content-Type": BATCH_TYPE}
    else:
        headers = {"Content-Type": "application/json", "ce-id": event_id, "ce-specversion": "1.0"}
        if topic:
            headers["ce-type"] = topic
    if secret:
        ts = timestamp if timestamp is not None else _fresh_timestamp(event_id)
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(ts)
        headers["webhook-signature"] = webhook_signature(secret, event_id, ts, body)
    if extra:
        headers.update(extra)
    return headers
