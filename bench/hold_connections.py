#!/usr/bin/env python3
"""bench/hold_connections.py - holds many connections open against an HTTP server while a
benchmark measures it (bench/publisher.sh, "under attack"). Loopback only.

    hold_connections.py PORT N MODE STATUS_FILE

MODE slowloris: each connection sends a request line, then one header line per second and never
the blank line; a connection the server closes is opened again at once, as an attacker would.
MODE idle: each connection makes one GET /healthz and then sits idle (a keep-alive connection
between requests).

Connections come from 127.0.0.2, 127.0.0.3, ... (500 per address, so a per-client cap of 1024
lets them all in: the bench measures what they cost, not the cap). Writes "OPEN REOPENED" to
STATUS_FILE about once a second; runs until SIGTERM or SIGINT.
"""
import os
import resource
import signal
import socket
import sys
import time

PER_ADDRESS = 500


def source(i):
    return f"127.0.0.{2 + i // PER_ADDRESS}"


def open_one(port, i, mode):
    s = socket.socket()
    try:
        s.bind((source(i), 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        if mode == "idle":
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(4096):
                raise OSError("closed before answering")
        else:
            s.sendall(b"POST /v1/topics/login/events HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        return s
    except OSError:
        s.close()
        raise


def is_closed(s):
    try:
        return s.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main():
    port, n, mode, status_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    socks = [None] * n
    reopened = 0
    k = 0
    while not stop:
        t0 = time.monotonic()
        for i in range(n):
            s = socks[i]
            closed = s is None or is_closed(s)
            if not closed and mode == "slowloris":
                try:
                    s.send(b"X-Slow-%d: 1\r\n" % k)
                except OSError:
                    closed = True
            if closed:
                if s is not None:
                    s.close()
                    reopened += 1
                try:
                    socks[i] = open_one(port, i, mode)
                except OSError:
                    socks[i] = None
            if stop:
                break
        k += 1
        open_now = sum(1 for s in socks if s is not None)
        with open(status_path + ".tmp", "w") as f:
            f.write(f"{open_now} {reopened}\n")
        os.replace(status_path + ".tmp", status_path)
        # Idle connections are only checked every 10 s: the holder must stay idle itself (a
        # recv per connection per second is 10,000 system calls a second on the shared CPUs).
        left = (1.0 if mode == "slowloris" else 10.0) - (time.monotonic() - t0)
        if left > 0 and not stop:
            time.sleep(left)  # pacing: one header line per connection per second (SIGTERM ends it)
    for s in socks:
        if s is not None:
            s.close()


if __name__ == "__main__":
    main()
