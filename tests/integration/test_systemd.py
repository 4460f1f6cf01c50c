"""systemd's Type=notify protocol (docs/ops/README.md): every process tells its service manager
READY=1 once it serves, RELOADING=1 / READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, and pings
WATCHDOG=1 when the unit asks for a watchdog. The test plays the service manager: a datagram
socket named by NOTIFY_SOCKET, as systemd passes it."""
import os
import signal
import socket
import time

import harness



class Manager:
    """The service manager's end of NOTIFY_SOCKET."""

    def __init__(self, ctx):
        self.path = ctx.path("notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.seen = []

    def drain(self):
        while True:
            try:
                self.seen += self.sock.recv(4096).decode().split("\n")
            except socket.timeout:
                return self.seen

    def count(self, state):
        return self.drain().count(state)

    def wait(self, state, n=1, what=None):
        harness.wait_for(lambda: self.count(state) >= n, timeout=15,
                         what=what or f"{state} x{n} (seen {self.seen})")


def test_ready_reload_watchdog_and_stopping_are_told_to_the_service_manager():
    ctx = harness.ctx()
    mgr = Manager(ctx)
    p = ctx.start("gamesim", env={"NOTIFY_SOCKET": mgr.path, "WATCHDOG_USEC": "200000"})
    mgr.wait("READY=1")
    # A watchdog of 200 ms: pings at least every 100 ms, so several within a second.
    mgr.wait("WATCHDOG=1", n=3)
    p.signal(signal.SIGHUP)
    mgr.wait("RELOADING=1")
    mgr.wait("READY=1", n=2, what="READY=1 again after the reload")
    p.signal(signal.SIGTERM)
    mgr.wait("STOPPING=1")
    assert p.popen.wait(timeout=10) == 0
    states = [s for s in mgr.drain() if s and s != "WATCHDOG=1"]
    assert states == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], states


def test_a_service_waiting_for_its_database_is_not_ready():
    ctx = harness.ctx()
    mgr = Manager(ctx)
    closed = harness.free_port()  # nothing listens there
    p = ctx.start("history", http=False, env={
        "NOTIFY_SOCKET": mgr.path, "WATCHDOG_USEC": "200000", "BUS_ENV": "development",
        "HISTORY_LISTEN": f"127.0.0.1:{harness.free_port()}",
        "DATABASE_URL": f"postgresql://bus@127.0.0.1:{closed}/bus?connect_timeout=1"})
    harness.wait_for(lambda: p.log().count("database unavailable") >= 2, timeout=20,
                     what="two failed migration attempts")
    # Alive (the watchdog pings go on) but never ready while the database is away.
    assert mgr.count("WATCHDOG=1") >= 1, mgr.seen
    assert "READY=1" not in mgr.drain(), mgr.seen
    p.signal(signal.SIGTERM)
    assert p.popen.wait(timeout=10) == 0
    assert "STOPPING=1" in mgr.drain(), mgr.seen
