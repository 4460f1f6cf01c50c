"""`make run` stops when told and keeps running when a process dies (issue 21).

SIGTERM to make run's process group (what `timeout`, CI or a supervisor sends: make and
tools/run.sh both get it, and make sends its own to run.sh too) stops every process it started,
in order, and leaves no process and no port behind — ten times in a row. A process that dies is
started again (Restart=on-failure) instead of stopping the product.

These tests bind the product's fixed ports: run them in a network namespace of their own,
`unshare -n sh -c 'ip link set lo up && make test TESTS=test_make_run_stop ASAN=0'`."""
import os
import signal
import subprocess
import tempfile
import threading
import time

import harness

ASAN = False
# The product's fixed ports and make in the tree: one at a time with the other modules that
# use them (tests/run.py).
SERIAL_GROUP = "make-in-tree"
ROOT = harness.ROOT
PORTS = [8080, 8081, 8101, 8102, 8103, 8104, 8105, 8106, 8109, 9092, 55432]


class MakeRun:
    """`make run` in its own process group, its output collected."""

    def __init__(self, var, rate="2"):
        env = dict(os.environ, RUN_VAR=var, LOGINSIM_RATE=rate)
        self.proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            with self.lock:
                self.lines.append(raw.decode(errors="replace"))

    def text(self):
        with self.lock:
            return "".join(self.lines)

    def wait_running(self):
        def up():
            assert self.proc.poll() is None, "make run exited:\n" + self.text()
            return "The product is running" in self.text()
        harness.wait_for(up, 120 * harness.timeout_mult(), what="make run up",
                         interval=0.2)

    def term_group(self):
        os.killpg(self.proc.pid, signal.SIGTERM)

    def kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def ours(var):
    """Processes of this `make run` still alive: anything whose command line or environment
    names the run's state directory (RUN_VAR, which make hands down to every process run.sh
    starts). Other tests running in parallel start the same binaries, but never with it."""
    left = []
    mark = var.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            raw = open(f"/proc/{pid}/cmdline", "rb").read()
            env = open(f"/proc/{pid}/environ", "rb").read()
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if mark in raw or b"RUN_VAR=" + mark + b"\0" in env + b"\0":
            cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            left.append(f"{pid} {cmd}")
    return left


def require_free_ports():
    busy = [p for p in PORTS if harness.tcp_open(p)]
    if busy:
        raise harness.Skip(f"ports {busy} are in use (run in `unshare -n`, see the module doc)")


def test_make_run_stops_on_sigterm_to_its_group_ten_times():
    require_free_ports()
    with tempfile.TemporaryDirectory() as var:
        os.chmod(var, 0o755)
        for i in range(10):
            run = MakeRun(var)
            try:
                run.wait_running()
                t0 = time.monotonic()
                run.term_group()
                rc = run.proc.wait(timeout=30 * harness.timeout_mult())
                took = time.monotonic() - t0
            finally:
                if run.proc.poll() is None:
                    run.kill_group()
                    run.proc.wait()
            assert took <= 10 * harness.timeout_mult(), \
                f"round {i}: stopped in {took:.1f} s\n{run.text()}"
            # Whatever make's own exit status after a TERM, everything it started is gone.
            harness.wait_for(lambda: not ours(var), 5, what=f"round {i}: no process left "
                             f"({ours(var)})\n{run.text()}")
            left = [p for p in PORTS if harness.tcp_open(p)]
            assert not left, f"round {i}: still listening: {left} (make exit {rc})\n{run.text()}"
            print(f"round {i}: stopped in {took:.1f} s")


def test_make_run_starts_a_dead_process_again():
    require_free_ports()
    with tempfile.TemporaryDirectory() as var:
        os.chmod(var, 0o755)
        run = MakeRun(var, rate="0")
        try:
            run.wait_running()
            pid = _listener_pid(8101)
            assert pid, "nothing listens on 8101"
            os.kill(pid, signal.SIGKILL)
            harness.wait_for(lambda: "starting ipcheck again" in run.text(), 15,
                             what="ipcheck started again")

            def back():
                try:
                    return harness.http("GET", "http://127.0.0.1:8101/readyz")[0] == 200 and \
                        _listener_pid(8101) not in (None, pid)
                except OSError:
                    return False
            harness.wait_for(back, 30, what="ipcheck ready again")
            assert run.proc.poll() is None, run.text()
        finally:
            run.term_group()
            try:
                run.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill_group()
                run.proc.wait()
        harness.wait_for(lambda: not ours(var), 5, what=f"no process left ({ours(var)})")


def _listener_pid(port):
    """The pid of the process listening on 127.0.0.1:port (from /proc/net/tcp), or None."""
    inode = None
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:
            inode = f[9]
            break
    if inode is None:
        return None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    return None
