"""The broker's disk fills up (issue 21): the broker answers the failed writes with a retriable
KAFKA_STORAGE_ERROR, starts on the full disk and serves what it has, and takes writes again
when space returns; the publisher answers 503 meanwhile, within produce_timeout_ms, says so in
/readyz, and takes logins again by itself once space is back (it used to refuse every login
until restarted, its idempotent producer's epoch worn out).

The disk is a small tmpfs mounted for the test (needs root; skipped otherwise)."""
import os
import subprocess
import time

import harness
import product

ROOT = harness.ROOT
LOGIN_TOKEN = product.LOGIN_TOKEN


def _mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0:
        raise harness.Skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise harness.Skip(f"cannot mount a tmpfs: {r.stderr.strip()}")


def _fill(path):
    """Fills the file system of path to the last byte; returns the filler's path."""
    filler = os.path.join(path, "filler")
    for bs in ("64k", "512"):
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", f"bs={bs}", "oflag=append",
                        "conv=notrunc"], capture_output=True)
    return filler


def _publish(pub, i):
    body = product.login(f"disk-{i % 20}", "8.8.8.8")
    t0 = time.monotonic()
    st, answer, headers = harness.http("POST", pub.url + "/v1/topics/login/events", body,
                                       headers={"Authorization": "Bearer " + LOGIN_TOKEN},
                                       timeout=60)
    return st, answer, time.monotonic() - t0


def _ready(proc):
    try:
        return harness.http("GET", proc.url + "/readyz", timeout=5)[0] == 200
    except OSError:
        return False


def test_full_disk_then_space_back_publisher_recovers_without_restart():
    ctx = harness.ctx()
    disk = ctx.path("disk", "x")[:-2]
    _mount_tmpfs(disk, "6m")
    try:
        _run(ctx, disk)
    finally:
        for p in reversed(ctx.procs):
            p.stop(timeout=10)
        subprocess.run(["umount", "-l", disk], capture_output=True)


def _run(ctx, disk):
    topics = ",".join(f"{n}:{p}" for n, p in product.bus_topics().items())
    kport = harness.free_port()
    bcfg = {"listen": f"127.0.0.1:{kport}", "data_dir": os.path.join(disk, "broker"),
            "http.listen": f"127.0.0.1:{harness.free_port()}", "topics": topics,
            "segment_bytes": 65536}
    broker = ctx.start("bus-broker", config=bcfg, http=False, name="broker-1")
    harness.wait_for(lambda: harness.tcp_open(kport) or not broker.alive(), 10, what="broker")
    bootstrap = f"127.0.0.1:{kport}"
    produce_timeout_ms = 3000
    pub = ctx.start("bus-publisher", config={"bootstrap": bootstrap,
                                             "produce_timeout_ms": produce_timeout_ms},
                    ready_path="/readyz")
    before = []
    for i in range(20):
        st, answer, _ = _publish(pub, i)
        assert st == 202, (st, answer)
        before.append(answer)

    filler = _fill(disk)
    # Full: the publisher answers 503 within produce_timeout_ms (plus a little), and both say
    # they cannot do their job.
    worst = 0.0
    refused = 0
    for i in range(200):  # what fits in the segment's last page still goes in
        st, answer, took = _publish(pub, 100 + i)
        worst = max(worst, took)
        if st == 503:
            refused += 1
            if refused == 3:
                break
    assert refused > 0, "the publisher kept answering 202 on a full disk"
    assert worst <= produce_timeout_ms / 1000 + 0.5 * harness.timeout_mult(), \
        f"a request was held {worst:.1f} s"
    harness.wait_for(lambda: not _ready(pub), 15, what="the publisher's /readyz failing")
    bhttp = f"http://{bcfg['http.listen']}"
    assert harness.http("GET", bhttp + "/readyz")[0] == 503, "the broker says it is ready"

    # The broker restarts on the full disk and serves what it has.
    assert broker.stop(timeout=15) == 0, broker.log()[-3000:]
    broker = ctx.start("bus-broker", config=bcfg, http=False, name="broker-2")
    harness.wait_for(lambda: harness.tcp_open(kport) or not broker.alive(), 15,
                     what="the broker up on a full disk")
    first = before[0]
    out = harness.kcat(["-C", "-b", bootstrap, "-t", "login", "-p", str(first["partition"]),
                        "-o", str(first["offset"]), "-c", "1", "-e", "-q", "-f", "%h"]).decode()
    assert f"ce-id={first['id']}" in out, out

    # Space back: logins are taken again, by the same publisher process.
    os.unlink(filler)
    t0 = time.monotonic()

    def accepted():
        st, _, _ = _publish(pub, 1000)
        return st == 202
    harness.wait_for(accepted, 60, what="a login accepted again", interval=0.5)
    harness.wait_for(lambda: _ready(pub), 15, what="the publisher ready again")
    print(f"disk full: 503 within {worst:.1f} s (produce_timeout_ms {produce_timeout_ms}); "
          f"accepting again {time.monotonic() - t0:.1f} s after space returned")
    for i in range(20):
        st, answer, _ = _publish(pub, 2000 + i)
        assert st == 202, (st, answer)
    assert pub.alive()
